"""Parsing JSON that comes from outside: bounded, and every refusal names where.

`json.loads` alone answers a 5,000-digit number with a ValueError from
Python's int-string limit, `NaN`/`Infinity` with floats nothing downstream
expects, and deep nesting with a RecursionError (or, nested just below the
interpreter's limit, with a structure that later recursive code trips on).
Every body the API reads and every webhook a plugin parses goes through
`loads`, so each of these is one clear refusal instead of a 500.
"""

from __future__ import annotations

import json
import math
from typing import Any

MAX_DEPTH = 64
MAX_NUMBER_LENGTH = 100  # characters of one JSON number


class JSONRefused(ValueError):
    """Not JSON we take; `field` is the dotted path of the offending value ("body" for the whole)."""

    def __init__(self, field: str, reason: str) -> None:
        super().__init__(f"{field}: {reason}")
        self.field = field
        self.reason = reason


class _Refused:
    __slots__ = ("reason",)

    def __init__(self, reason: str) -> None:
        self.reason = reason


def _int(text: str) -> int | _Refused:
    if len(text) > MAX_NUMBER_LENGTH:
        return _Refused(f"number longer than {MAX_NUMBER_LENGTH} characters")
    return int(text)


def _float(text: str) -> float | _Refused:
    if len(text) > MAX_NUMBER_LENGTH:
        return _Refused(f"number longer than {MAX_NUMBER_LENGTH} characters")
    value = float(text)
    return value if math.isfinite(value) else _Refused("number out of range")


def _constant(text: str) -> _Refused:
    return _Refused(f"{text} is not a JSON number")


def _path(prefix: str, part: object) -> str:
    return f"{prefix}.{part}" if prefix else str(part)


def _check(data: Any, prefix: str) -> None:
    # Iterative, so checking a deep structure cannot itself recurse too far.
    stack: list[tuple[Any, str, int]] = [(data, prefix, 0)]
    while stack:
        value, path, depth = stack.pop()
        if isinstance(value, _Refused):
            raise JSONRefused(path or "body", value.reason)
        if isinstance(value, dict | list):
            if depth >= MAX_DEPTH:
                raise JSONRefused(path or "body", f"nested deeper than {MAX_DEPTH} levels")
            items = value.items() if isinstance(value, dict) else enumerate(value)
            stack.extend((item, _path(path, key), depth + 1) for key, item in items)


def _too_deep_under(raw: bytes | str) -> str | None:
    """The top-level key under which `raw` nests too deeply (scanned only after json gave up)."""
    text = raw.decode("utf-8", "replace") if isinstance(raw, bytes) else raw
    depth, key, in_string, escaped = 0, None, False, False
    current: list[str] = []
    for char in text:
        if in_string:
            if escaped:
                escaped = False
            elif char == "\\":
                escaped = True
            elif char == '"':
                in_string = False
                if depth == 1:
                    key = "".join(current)
            elif depth == 1:
                current.append(char)
        elif char == '"':
            in_string, current = True, []
        elif char in "[{":
            depth += 1
            if depth > MAX_DEPTH:
                return key
        elif char in "]}":
            depth -= 1
    return None


def _parse(raw: bytes | str, prefix: str) -> Any:
    try:
        data = json.loads(raw, parse_int=_int, parse_float=_float, parse_constant=_constant)
    except RecursionError:
        under = _too_deep_under(raw)
        field = _path(prefix, under) if under else prefix
        raise JSONRefused(field or "body", f"nested deeper than {MAX_DEPTH} levels") from None
    _check(data, prefix)
    return data


def loads(raw: bytes | str) -> Any:
    """Parse a request body; raise `JSONRefused` naming the field for bad or unbounded JSON."""
    try:
        return _parse(raw, "")
    except (UnicodeDecodeError, json.JSONDecodeError):
        raise JSONRefused("body", "not valid JSON") from None


def check_json_text(text: str, field: str) -> None:
    """Refuse a string field holding unbounded JSON, before a plugin parses it.

    Text that is not JSON passes: the plugin says what it expected.
    """
    if text.lstrip().startswith(("{", "[")):
        try:
            _parse(text, field)
        except json.JSONDecodeError:
            pass
