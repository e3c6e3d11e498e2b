"""SMS text rules: the GSM-7 alphabet, the encoding of a text and its segment count.

A text made only of characters of the GSM-7 default alphabet (3GPP TS 23.038,
with its extension table) is sent as GSM-7: 160 septets in one SMS, 153 per
segment of a longer one. Extension characters (`^{}\\[~]|€` and form feed) are
an escape plus a character, so they take two septets and are never split
across segments. Anything else is sent as UCS-2: 70 units alone, 67 per
segment, counted in UTF-16 code units, so a character outside the BMP (most
emoji) takes two and is never split across segments either.

`segments` is the real count of SMS a text costs; `fragments_count` is the
same function under the name the events use. Policy (smart encoding, splitting
a reply at word boundaries, merging replies) lives in `botbridge.shaping`.
"""

from __future__ import annotations

from typing import Literal

GSM7_BASIC = (
    "@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞ\x1bÆæßÉ !\"#¤%&'()*+,-./0123456789:;<=>?"
    "¡ABCDEFGHIJKLMNOPQRSTUVWXYZÄÖÑÜ§¿abcdefghijklmnopqrstuvwxyzäöñüà"
)
GSM7_EXTENDED = "^{}\\[~]|€\f"
_BASIC = frozenset(GSM7_BASIC) - {"\x1b"}  # the escape itself is not a character one can send
_EXTENDED = frozenset(GSM7_EXTENDED)
_GSM7 = _BASIC | _EXTENDED

Encoding = Literal["GSM-7", "UCS-2"]

GSM7_SINGLE, GSM7_PART = 160, 153  # septets
UCS2_SINGLE, UCS2_PART = 70, 67  # UTF-16 code units


def is_gsm7(text: str) -> bool:
    """Whether every character of `text` is in the GSM-7 default alphabet or its extension table."""
    return _GSM7.issuperset(text)


def encoding(text: str) -> Encoding:
    """The encoding `text` is sent in: GSM-7 when it can be, else UCS-2."""
    return "GSM-7" if is_gsm7(text) else "UCS-2"


def _units(text: str) -> list[int]:
    """Size of each character in the encoding the text would be sent in."""
    if is_gsm7(text):
        return [2 if c in _EXTENDED else 1 for c in text]
    return [2 if ord(c) > 0xFFFF else 1 for c in text]


def segments(text: str) -> int:
    """How many SMS `text` is sent as (an empty text is still one message)."""
    gsm = is_gsm7(text)
    single, part = (GSM7_SINGLE, GSM7_PART) if gsm else (UCS2_SINGLE, UCS2_PART)
    units = _units(text)
    if sum(units) <= single:
        return 1
    count, used = 1, 0
    for size in units:  # a two-unit character never straddles two segments
        if used + size > part:
            count, used = count + 1, 0
        used += size
    return count


def fragments_count(text: str) -> int:
    """The segment count of `text` (the name used by events); equal to `segments(text)`."""
    return segments(text)


def split(text: str, *, part_size: int) -> list[str]:
    """Split into parts of at most `part_size` units, never inside a character.

    A raw split that ignores words; `botbridge.shaping.split` is the one for replies.
    """
    parts: list[str] = []
    current: list[str] = []
    used = 0
    for char, size in zip(text, _units(text), strict=True):
        if used + size > part_size:
            parts.append("".join(current))
            current, used = [], 0
        current.append(char)
        used += size
    if current or not parts:
        parts.append("".join(current))
    return parts


def truncate(text: str, limit: int) -> tuple[str, bool]:
    """At most `limit` characters, and whether anything was cut."""
    return (text, False) if len(text) <= limit else (text[:limit], True)
