"""JSON for parameters and results: compact, strict, with errors that say what to fix."""

from __future__ import annotations

import json
import re
import sys
from typing import Any

# A NUL in a JSON string is written \u0000; an escaped backslash before "u0000" is not one.
_ESCAPED_NUL = re.compile(r"(?<!\\)(?:\\\\)*\\u0000")

_encoder = json.JSONEncoder(separators=(",", ":"), allow_nan=False, ensure_ascii=False)

MAX_NESTING = 100
"""How deeply arguments and results may nest (lists and objects): far beyond real data, far below what any JSON reader's
recursion (Python's, a web page's) survives.
"""
# What changes the depth in JSON text, and strings, which are skipped whole.
_STRUCTURE = re.compile(r'"(?:[^"\\]|\\.)*"|[\[\]{}]')


class Undecodable:
    """A stored JSON value this process cannot decode (written by SQL or another producer:
    nested past Python's recursion, or an integer past its digit limit); ``reason`` says why."""

    __slots__ = ("reason",)

    def __init__(self, reason: str) -> None:
        self.reason = reason

    @classmethod
    def because(cls, exc: BaseException) -> Undecodable:
        return cls(f"{type(exc).__name__}: {str(exc)[:200]}")

    def __repr__(self) -> str:
        return f"<not decodable: {self.reason}>"


def to_json(value: Any, what: str) -> str:
    """Serialize ``value`` or raise TypeError naming ``what`` could not be stored."""
    if value is None:
        return "null"  # what most tasks return: no encoder for it
    try:
        text = _encoder.encode(value)
    except RecursionError:
        text = ""
    except ValueError as exc:
        if "integer string conversion" in str(exc):
            raise ValueError(
                f"{what} holds an integer of more than {sys.get_int_max_str_digits():,} digits, which no JSON "
                "reader of Python's will decode; pass it as a string"
            ) from None
        raise TypeError(
            f"{what} is not JSON-serializable ({exc}); pass only dicts, lists, str, "
            "int, float (finite), bool and None, or convert the value first"
        ) from None
    except TypeError as exc:
        raise TypeError(
            f"{what} is not JSON-serializable ({exc}); pass only dicts, lists, str, "
            "int, float (finite), bool and None, or convert the value first"
        ) from None
    if not text or nesting(text) > MAX_NESTING:
        raise ValueError(f"{what} nests lists and objects more than {MAX_NESTING} levels deep; flatten it")
    return text


def nesting(text: str) -> int:
    """How deeply lists and objects nest in JSON text (0 for a scalar)."""
    if text.count("[") + text.count("{") <= MAX_NESTING:
        return 0  # cannot be deeper than the limit: the common case costs two counts
    depth = deepest = 0
    for match in _STRUCTURE.finditer(text):
        token = match.group()
        if token in "[{":
            depth += 1
            deepest = max(deepest, depth)
        elif token in "]}":
            depth -= 1
    return deepest


def storable_size(text: str, what: str) -> int:
    """UTF-8 size of JSON text PostgreSQL's jsonb can store; ValueError for what it cannot."""
    if "\\u0000" in text and _ESCAPED_NUL.search(text):
        raise ValueError(f"{what} contains a NUL character (\\x00), which PostgreSQL cannot store in jsonb")
    try:
        return len(text.encode("utf-8"))
    except UnicodeEncodeError:
        raise ValueError(f"{what} contains a lone surrogate, which is not valid Unicode text") from None



MAX_ERROR_CHARS = 64_000
"""Error texts (messages and tracebacks) are stored and shown up to this many characters."""


def cap_error(text: str) -> str:
    """``text`` cut to MAX_ERROR_CHARS, keeping its start and its end (where a traceback's cause is)."""
    if len(text) <= MAX_ERROR_CHARS:
        return text
    keep = MAX_ERROR_CHARS // 2
    return f"{text[:keep]}\n[... {len(text) - 2 * keep:,} characters cut ...]\n{text[-keep:]}"
