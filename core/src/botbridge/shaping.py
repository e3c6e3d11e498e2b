"""Shaping replies for the channel: encoding, length limits, several messages per turn.

Pure functions the engine calls after the bot and before a send (issue 15,
"Shaping replies for the channel"). Nothing here does I/O or keeps state.

The API
-------
`segments(text) -> int`
    The number of SMS a text costs (GSM-7: 160 alone / 153 per segment,
    extension characters `^{}\\[~]|€` count two septets; UCS-2: 70 / 67 in
    UTF-16 code units, an emoji outside the BMP counts two and is never split
    across segments). `encoding(text)` says which of the two; both come from
    `botbridge.sms`, whose `fragments_count` is the same count.

`smart_encode(text) -> str`
    Replaces typographic look-alikes (curly quotes, dashes, ellipsis,
    non-breaking and other Unicode spaces, zero-width characters, see
    `LOOKALIKES`) by their GSM-7 equivalents, only when that makes the whole
    text GSM-7 and costs no more segments. A GSM-7 text is returned as it is;
    so is a text with a real non-GSM character (Chinese, an emoji, …).

`Limit(max_segments=None, max_chars=None)`
    A channel's limit per message: in SMS segments (`Limit.sms(10)`), in
    characters (code points: `Limit.chars(4096)` for WhatsApp, 2000 for
    Messenger) or both (`Limit.sms(10, max_chars=1600)`). `limit.fits(text)`.

`split(text, limit) -> list[str]`
    A text that fits is returned as it is (`[]` for a blank one). A longer one
    is cut into parts that each fit, in order, none empty: at a paragraph
    break, else a line break, else the end of a sentence, else between words
    (and between CJK ideographs), preferring the strongest boundary in the
    second half of the room a part has. A word is cut only when it is longer
    than a part on its own (never between a character and its combining mark
    or inside an emoji ZWJ sequence when avoidable). Only the whitespace at
    the ends and at the split points is dropped: joining the parts with that
    whitespace gives back the text.

`merge(texts, limit) -> list[str]`
    Several messages of one turn as few parts as the limit allows: in order,
    each stripped of surrounding whitespace, blank ones dropped, joined by a
    blank line while the result fits; a message too long on its own is split
    first (its parts are not re-joined with each other).

`Shaping` and `shape(texts, shaping) -> list[str]`
    The settings of one channel and the whole step: smart encoding (per
    message, then per part when a part alone can become GSM-7 and still
    fits), then merge or split. `Shaping.sms()` has the SMS defaults
    (`max_segments=10`, `smart_encoding=True`, `merge_replies=True`);
    `Shaping.rich(4096)` sends each message as it is, split only when longer
    than the channel allows.

The engine's step, after the bot
--------------------------------
`shaping_for(sender_config, capabilities)` is a sender's `config.shaping`
(`ShapingConfig`) over its channel's defaults, and `shape_replies(replies,
shaping, capabilities)` the messages to send for one turn: what the channel
can only show as text (options, media on a text-only channel) is rendered as
text first, with options numbered on across the turn, so that it is merged
and split like the rest; a message keeping buttons or media is sent on its
own, its text split before it if too long.
"""

from __future__ import annotations

import unicodedata
from bisect import bisect_right
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from botbridge.channel import Capabilities, config_section
from botbridge.derived import Derived
from botbridge.models import Reply, Sender
from botbridge.render import as_text
from botbridge.sms import GSM7_PART, GSM7_SINGLE, Encoding, encoding, is_gsm7, segments

__all__ = [
    "LOOKALIKES",
    "SEPARATOR",
    "Encoding",
    "Limit",
    "Shaping",
    "ShapingConfig",
    "encoding",
    "for_sender",
    "is_gsm7",
    "merge",
    "segments",
    "shape",
    "shape_replies",
    "shaping_for",
    "smart_encode",
    "split",
    "validate",
]

SEPARATOR = "\n\n"  # between merged messages

# Typographic look-alikes and their GSM-7 equivalents.
LOOKALIKES: Mapping[str, str] = {
    **dict.fromkeys("‘’‚‛′`´ʼ‹›", "'"),
    **dict.fromkeys("“”„‟″«»", '"'),
    **dict.fromkeys("‐‑‒–—―−⁃﹘﹣－•", "-"),
    "…": "...",
    "⁄": "/",
    "∕": "/",
    "ˆ": "^",
    "˜": "~",
    # non-breaking and other Unicode spaces, and tabs
    **dict.fromkeys("\t\u00a0\u1680\u2000\u2001\u2002\u2003\u2004\u2005\u2006\u2007\u2008\u2009\u200a", " "),
    **dict.fromkeys("\u202f\u205f\u3000", " "),
    **dict.fromkeys("\u2028\u2029\x85", "\n"),
    # invisible: zero-width spaces and joiners, word joiner, byte order mark, soft hyphen
    **dict.fromkeys("\u200b\u200c\u200d\u2060\ufeff\u00ad", ""),
    # full-width ASCII punctuation and letters (！ → !, Ａ → A), where GSM-7 has them
    **{chr(code + 0xFEE0): chr(code) for code in range(0x21, 0x7F) if is_gsm7(chr(code))},
}
_TABLE = str.maketrans(dict(LOOKALIKES))


def smart_encode(text: str) -> str:
    """`text` with its typographic look-alikes made GSM-7, when that makes all of it GSM-7."""
    if is_gsm7(text):
        return text
    candidate = text.translate(_TABLE)
    if not is_gsm7(candidate) or segments(candidate) > segments(text):
        return text  # a real non-GSM character, or a text of ellipses that would cost more
    return candidate


@dataclass(frozen=True, slots=True)
class Limit:
    """The most one message may hold on a channel: SMS segments, characters (code points), or both."""

    max_segments: int | None = None
    max_chars: int | None = None

    def __post_init__(self) -> None:
        if self.max_segments is None and self.max_chars is None:
            raise ValueError("a Limit needs max_segments or max_chars")
        for name in ("max_segments", "max_chars"):
            value = getattr(self, name)
            if value is not None and value < 1:
                raise ValueError(f"{name} must be at least 1, not {value}")

    @classmethod
    def sms(cls, max_segments: int = 10, *, max_chars: int | None = None) -> Limit:
        return cls(max_segments=max_segments, max_chars=max_chars)

    @classmethod
    def chars(cls, max_chars: int) -> Limit:
        return cls(max_chars=max_chars)

    def fits(self, text: str) -> bool:
        if self.max_chars is not None and len(text) > self.max_chars:
            return False
        return self.max_segments is None or segments(text) <= self.max_segments


def _longest_fit(limit: Limit, text: str, start: int) -> int:
    """The largest `end` such that `text[start:end]` fits (always more than `start`)."""
    high = len(text)
    if limit.max_chars is not None:
        high = min(high, start + limit.max_chars)
    if limit.max_segments is not None:  # no encoding holds more characters than this
        room = GSM7_SINGLE if limit.max_segments == 1 else GSM7_PART * limit.max_segments
        high = min(high, start + room)
    if limit.fits(text[start:high]):
        return high
    low = start + 1  # one character always fits, and segments only grow with the text
    while high - low > 1:
        middle = (low + high) // 2
        if limit.fits(text[start:middle]):
            low = middle
        else:
            high = middle
    return low


# Kinds of boundary, weakest first.
_WORD, _SENTENCE, _LINE, _PARAGRAPH = range(4)
_NON_BREAKING = frozenset("\u00a0\u2007\u202f")
_LINE_BREAKS = frozenset("\n\r\x0b\x0c\x85\u2028\u2029")
_TERMINATORS = frozenset(".!?…‼⁇⁈⁉。！？")
_CJK_TERMINATORS = frozenset("。！？")
_CJK_PAUSES = frozenset("、，；：")
_CLOSERS = frozenset("\"')]}’”»›」』）】")
_ZWJ = "\u200d"


def _breaking(char: str) -> bool:
    return char.isspace() and char not in _NON_BREAKING


def _strip(text: str) -> str:
    """`text` without the breaking whitespace at its ends."""
    start, end = 0, len(text)
    while start < end and _breaking(text[start]):
        start += 1
    while end > start and _breaking(text[end - 1]):
        end -= 1
    return text[start:end]


def _ideographic(char: str) -> bool:
    code = ord(char)
    return (
        0x3040 <= code <= 0x30FF  # kana
        or 0x3400 <= code <= 0x4DBF
        or 0x4E00 <= code <= 0x9FFF
        or 0xF900 <= code <= 0xFAFF
        or 0x20000 <= code <= 0x3134F
    )


def _ends_sentence(text: str, end: int) -> bool:
    index = end - 1
    while index >= 0 and text[index] in _CLOSERS:
        index -= 1
    return index >= 0 and text[index] in _TERMINATORS


def _boundaries(text: str) -> list[tuple[int, int, int]]:
    """Where `text` (stripped) may be split: (end of a part, start of the next, kind), by position."""
    found: list[tuple[int, int, int]] = []
    length = len(text)
    index = 0
    while index < length:
        char = text[index]
        if _breaking(char):
            end = index
            while end < length and _breaking(text[end]):
                end += 1
            run = text[index:end].replace("\r\n", "\n")
            lines = sum(c in _LINE_BREAKS for c in run)
            if lines >= 2:
                kind = _PARAGRAPH
            elif lines:
                kind = _LINE
            else:
                kind = _SENTENCE if _ends_sentence(text, index) else _WORD
            if index > 0 and end < length:
                found.append((index, end, kind))
            index = end
            continue
        if index > 0 and not _breaking(text[index - 1]):  # boundaries without a space: CJK
            before = text[index - 1]
            if before in _CJK_TERMINATORS and char not in _CLOSERS and char not in _TERMINATORS:
                found.append((index, index, _SENTENCE))
            elif (_ideographic(before) or before in _CJK_PAUSES) and _ideographic(char):
                found.append((index, index, _WORD))
        index += 1
    return found


def _choose(candidates: Sequence[tuple[int, int, int]], start: int, stop: int) -> tuple[int, int, int] | None:
    """The strongest boundary in the second half of the room, the latest one of that kind; else the latest."""
    if not candidates:
        return None
    best: tuple[int, int, int] | None = None
    for candidate in candidates:
        if 2 * candidate[0] >= start + stop and (best is None or candidate[2] >= best[2]):
            best = candidate
    return best or candidates[-1]


def _joins(char: str) -> bool:
    """Whether `char` belongs to the character before it (combining mark, variation selector, skin tone)."""
    code = ord(char)
    return (
        unicodedata.category(char).startswith("M")
        or char == _ZWJ
        or 0xFE00 <= code <= 0xFE0F
        or 0x1F3FB <= code <= 0x1F3FF
        or 0xE0020 <= code <= 0xE007F
    )


def _hard_cut(text: str, start: int, stop: int) -> int:
    """Where to cut a word longer than a part: `stop`, or a little before it to keep a grapheme whole."""
    cut = stop
    while cut - 1 > start and (_joins(text[cut]) or text[cut - 1] == _ZWJ):
        cut -= 1
    return cut if not (_joins(text[cut]) or text[cut - 1] == _ZWJ) else stop


def split(text: str, limit: Limit) -> list[str]:
    """`text` in parts that each fit `limit`, cut at the strongest boundary available (see the module)."""
    if text.isspace() or not text:
        return []
    if limit.fits(text):
        return [text]
    body = _strip(text)
    boundaries = _boundaries(body)
    ends = [boundary[0] for boundary in boundaries]
    parts: list[str] = []
    start = 0
    while start < len(body):
        stop = _longest_fit(limit, body, start)
        if stop >= len(body):
            end = next_start = len(body)
        else:
            chosen = _choose(boundaries[bisect_right(ends, start) : bisect_right(ends, stop)], start, stop)
            if chosen is None:  # one word longer than a part
                end = next_start = _hard_cut(body, start, stop)
            else:
                end, next_start, _ = chosen
        if not body[start:end].isspace():  # a run of non-breaking spaces alone is no part
            parts.append(body[start:end])
        start = next_start
    return parts


def merge(texts: Iterable[str], limit: Limit) -> list[str]:
    """The messages of one turn as few parts as `limit` allows, in order, joined by a blank line."""
    parts: list[str] = []
    current: str | None = None
    for text in texts:
        for index, piece in enumerate(split(_strip(text), limit)):
            if current is not None and index == 0:
                joined = current + SEPARATOR + piece
                if limit.fits(joined):
                    current = joined
                    continue
            if current is not None:
                parts.append(current)
            current = piece
    if current is not None:
        parts.append(current)
    return parts


@dataclass(frozen=True, slots=True)
class Shaping:
    """How one channel's replies are shaped: its limit, smart encoding, merging a turn's messages."""

    limit: Limit
    smart_encoding: bool = False
    merge_replies: bool = False

    @classmethod
    def sms(
        cls,
        *,
        max_segments: int = 10,
        max_chars: int | None = None,
        smart_encoding: bool = True,
        merge_replies: bool = True,
    ) -> Shaping:
        """The SMS defaults: at most 10 segments, smart encoding and merging on."""
        return cls(Limit.sms(max_segments, max_chars=max_chars), smart_encoding, merge_replies)

    @classmethod
    def rich(cls, max_chars: int, *, merge_replies: bool = False) -> Shaping:
        """A channel limited in characters (WhatsApp 4096, Messenger 2000): messages sent as they are."""
        return cls(Limit.chars(max_chars), smart_encoding=False, merge_replies=merge_replies)


def shape(texts: Sequence[str], shaping: Shaping) -> list[str]:
    """The texts to send, in order, for the bot's messages of one turn."""
    if shaping.smart_encoding:
        texts = [smart_encode(text) for text in texts]
    if shaping.merge_replies:
        parts = merge(texts, shaping.limit)
    else:
        parts = [part for text in texts for part in split(text, shaping.limit)]
    if shaping.smart_encoding:  # a part without the message's emoji may become GSM-7 on its own
        parts = [_encode_part(part, shaping.limit) for part in parts]
    return [part for part in parts if part and not part.isspace()]  # zero-width characters alone are nothing


def _encode_part(part: str, limit: Limit) -> str:
    encoded = smart_encode(part)
    return encoded if limit.fits(encoded) else part


# --- the engine's step, after the bot ----------------------------------------


class ShapingConfig(BaseModel):
    """A sender's `config.shaping`; what is left out follows the channel."""

    model_config = ConfigDict(extra="forbid")

    max_segments: int | None = Field(default=None, ge=1, le=30, description="SMS: segments per message (10)")
    smart_encoding: bool | None = Field(default=None, description="SMS: typographic look-alikes made GSM-7 (on)")
    merge_replies: bool | None = Field(default=None, description="a turn's messages joined where they fit (SMS: on)")


def validate(sender_config: dict[str, Any]) -> dict[str, Any]:
    """Check `config.shaping` when a sender is saved."""
    return config_section(sender_config, "shaping", ShapingConfig, exclude_none=True)


def shaping_for(sender_config: Mapping[str, object], capabilities: Capabilities) -> Shaping:
    """How a sender's replies are shaped: its `config.shaping` over the channel's defaults."""
    raw = sender_config.get("shaping")
    config = ShapingConfig.model_validate(raw) if isinstance(raw, dict) else ShapingConfig()
    if capabilities.sms:
        return Shaping.sms(
            max_segments=config.max_segments or 10,
            max_chars=capabilities.max_text_length,
            smart_encoding=config.smart_encoding is not False,
            merge_replies=config.merge_replies is not False,
        )
    return Shaping.rich(capabilities.max_text_length, merge_replies=bool(config.merge_replies))


_shapings = Derived()


def for_sender(sender: Sender, capabilities: Capabilities) -> Shaping:
    """`shaping_for` a sender's config, worked out once per version of the sender."""
    key = (sender.id, sender.updated_at, capabilities.sms, capabilities.max_text_length)
    return _shapings.get(key, lambda: shaping_for(sender.config, capabilities))


def shape_replies(replies: Sequence[Reply], shaping: Shaping, capabilities: Capabilities) -> list[tuple[Reply, int]]:
    """The messages to send for one turn, each with the number its options start from."""
    out: list[tuple[Reply, int]] = []
    texts: list[str] = []  # text-only messages waiting to be merged
    waiting: list[tuple[Reply, int]] = []  # and what they were

    def flush() -> None:
        parts = shape(texts, shaping)
        if len(waiting) == 1 and parts == texts:
            out.append(waiting[0])  # sent as the bot made it: its record keeps its options and media
        else:
            out.extend((Reply(text=part), 1) for part in parts)
        texts.clear()
        waiting.clear()

    option_start = 1
    for reply in replies:
        if not (reply.text or reply.media or reply.options):
            continue
        rich = (reply.options and capabilities.options) or (reply.media and capabilities.media)
        if not rich:
            texts.append(as_text(reply, media_as_links=True, option_start=option_start))
            waiting.append((reply, option_start))
        else:
            flush()
            parts = shape([reply.text], Shaping(shaping.limit, shaping.smart_encoding)) if reply.text else []
            out.extend((Reply(text=part), 1) for part in parts[:-1])
            last = reply.model_copy(update={"text": parts[-1] if parts else ""})
            if not capabilities.options and last.options:
                last = last.model_copy(
                    update={"text": as_text(last, media_as_links=False, option_start=option_start), "options": []}
                )
            out.append((last, option_start))
        option_start += len(reply.options)
    flush()
    return out
