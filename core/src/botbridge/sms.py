"""SMS text rules: the GSM-7 alphabet, fragment counts and splitting.

GSM-7 fits 160 characters in one SMS and 153 per part of a longer one;
anything outside it is sent as UCS-2: 70 single, 67 per part (counted in
UTF-16 code units, so an emoji takes two). Extension characters (`{}[]~\\|^€`)
take two GSM-7 septets.
"""

from __future__ import annotations

GSM7_BASIC = (
    "@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞ\x1bÆæßÉ !\"#¤%&'()*+,-./0123456789:;<=>?"
    "¡ABCDEFGHIJKLMNOPQRSTUVWXYZÄÖÑÜ§¿abcdefghijklmnopqrstuvwxyzäöñüà"
)
GSM7_EXTENDED = "^{}\\[~]|€\f"
_BASIC = frozenset(GSM7_BASIC) - {"\x1b"}
_EXTENDED = frozenset(GSM7_EXTENDED)


def is_gsm7(text: str) -> bool:
    return all(c in _BASIC or c in _EXTENDED for c in text)


def _units(text: str) -> list[int]:
    """Size of each character in the encoding the text would be sent in."""
    if is_gsm7(text):
        return [2 if c in _EXTENDED else 1 for c in text]
    return [2 if ord(c) > 0xFFFF else 1 for c in text]


def fragments_count(text: str) -> int:
    if not text:
        return 1
    gsm = is_gsm7(text)
    single, part = (160, 153) if gsm else (70, 67)
    total = sum(_units(text))
    if total <= single:
        return 1
    return len(split(text, part_size=part))


def split(text: str, *, part_size: int) -> list[str]:
    """Split into parts of at most `part_size` units, never inside a character."""
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
