"""JSON for parameters and results: compact, strict, with errors that say what to fix."""

from __future__ import annotations

import json
import re
from typing import Any

# A NUL in a JSON string is written \u0000; an escaped backslash before "u0000" is not one.
_ESCAPED_NUL = re.compile(r"(?<!\\)(?:\\\\)*\\u0000")

_encoder = json.JSONEncoder(separators=(",", ":"), allow_nan=False, ensure_ascii=False)


def to_json(value: Any, what: str) -> str:
    """Serialize ``value`` or raise TypeError naming ``what`` could not be stored."""
    if value is None:
        return "null"  # what most tasks return: no encoder for it
    try:
        return _encoder.encode(value)
    except (TypeError, ValueError, RecursionError) as exc:
        raise TypeError(
            f"{what} is not JSON-serializable ({exc}); pass only dicts, lists, str, "
            "int, float (finite), bool and None, or convert the value first"
        ) from None


def storable_size(text: str, what: str) -> int:
    """UTF-8 size of JSON text PostgreSQL's jsonb can store; ValueError for what it cannot."""
    if "\\u0000" in text and _ESCAPED_NUL.search(text):
        raise ValueError(f"{what} contains a NUL character (\\x00), which PostgreSQL cannot store in jsonb")
    try:
        return len(text.encode("utf-8"))
    except UnicodeEncodeError:
        raise ValueError(f"{what} contains a lone surrogate, which is not valid Unicode text") from None

