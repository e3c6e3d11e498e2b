"""Opaque, time-ordered ids.

22 characters of base62, like the ids SCG hands out. The first 8 characters
encode the creation time in milliseconds, so sorting ids sorts by creation
time; that is what list pagination relies on.
"""

from __future__ import annotations

import secrets
import time

ALPHABET = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
LENGTH = 22
_TIME_CHARS = 8


def _encode(number: int, width: int) -> str:
    chars = []
    for _ in range(width):
        number, rest = divmod(number, 62)
        chars.append(ALPHABET[rest])
    return "".join(reversed(chars))


def new_id(now: float | None = None) -> str:
    millis = int((time.time() if now is None else now) * 1000)
    random_part = secrets.randbits(84)  # 14 base62 chars hold ~83.4 bits
    return _encode(millis, _TIME_CHARS) + _encode(random_part % 62**14, LENGTH - _TIME_CHARS)
