"""Reading JSON that someone else stored: a value this process cannot decode fails its job alone.

PostgreSQL's json and jsonb accept what Python's reader refuses: nesting deeper
than its recursion allows, integers past its digit limit. Such a value, written
by SQL or another producer, becomes an ``Undecodable`` marker instead
of an exception that would fail a whole batch of claimed jobs or a page.
"""

from __future__ import annotations

import json
from typing import Any

from psycopg.types.json import JsonbLoader, JsonLoader

from queuer.payload.serialization import Undecodable


def decode_arguments(text: str) -> Any:
    try:
        return json.loads(text)
    except (ValueError, RecursionError) as exc:
        return Undecodable.because(exc)


class _Tolerant:
    """A loader that turns what Python cannot decode into an Undecodable marker."""

    def load(self, data: Any) -> Any:
        try:
            return super().load(data)  # type: ignore[misc]
        except (ValueError, RecursionError) as exc:
            return Undecodable.because(exc)


class TolerantJsonLoader(_Tolerant, JsonLoader):
    pass


class TolerantJsonbLoader(_Tolerant, JsonbLoader):
    pass
