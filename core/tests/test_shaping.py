"""Shaping replies for the channel: GSM-7 / UCS-2 segments, smart encoding, split and merge."""

from __future__ import annotations

import asyncio
import math
from collections.abc import AsyncIterator
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from botbridge import sms
from botbridge.shaping import (
    LOOKALIKES,
    SEPARATOR,
    Limit,
    Shaping,
    encoding,
    is_gsm7,
    merge,
    segments,
    shape,
    smart_encode,
    split,
)

from .test_engine import World, make_world

EMOJI = "😀"  # outside the BMP: two UTF-16 code units


# --- the GSM-7 table and segment counts -----------------------------------------------------------


def test_gsm7_alphabet_edges() -> None:
    assert is_gsm7(sms.GSM7_BASIC.replace("\x1b", "") + "^{}\\[~]|€\f")
    assert encoding("Hello @ £5 {ok} ¿ñ? Ç ¤ §") == "GSM-7"
    for char in ["\x1b", "`", "ç", "á", "’", "“", "—", "…", "\u00a0", "\t", "€\u0301", "中", "ą", EMOJI]:
        assert encoding(char) == "UCS-2", char
    assert encoding("") == "GSM-7"


@pytest.mark.parametrize(
    ("text", "count"),
    [
        ("", 1),
        ("a" * 160, 1),
        ("a" * 161, 2),
        *[("a" * (153 * k), k) for k in range(2, 11)],
        *[("a" * (153 * k + 1), k + 1) for k in range(2, 11)],
        ("é" * 160, 1),  # é is in GSM-7
        ("€" * 80, 1),  # extension characters take two septets
        ("€" * 81, 2),
        ("a" * 158 + "{", 1),  # 160 septets
        ("a" * 159 + "{", 2),  # 161
        ("a" * 152 + "€" + "a" * 152, 3),  # 306 septets, but the € cannot straddle segments 1 and 2
        ("a" * 151 + "€" + "a" * 153, 2),
        ("ą" * 70, 1),  # UCS-2
        ("ą" * 71, 2),
        ("a" * 70, 1),
        ("a" * 69 + "ą" + "a", 2),  # one non-GSM character makes the whole text UCS-2
        ("ą" * 134, 2),
        ("ą" * 135, 3),
        *[("ą" * (67 * k), k) for k in range(2, 11)],
        *[("ą" * (67 * k + 1), k + 1) for k in range(2, 11)],
        (EMOJI * 35, 1),  # two UTF-16 units each
        (EMOJI * 36, 2),
        ("a" * 69 + EMOJI, 2),  # 71 units
        ("ą" * 66 + EMOJI + "ą" * 66, 3),  # 134 units, but the emoji is never split across segments
        ("ą" * 65 + EMOJI + "ą" * 67, 2),
    ],
)
def test_segment_boundaries(text: str, count: int) -> None:
    assert segments(text) == count
    assert sms.fragments_count(text) == count  # what the events report


def _units(text: str) -> int:
    if is_gsm7(text):
        return sum(2 if c in sms.GSM7_EXTENDED else 1 for c in text)
    return len(text.encode("utf-16-le")) // 2


TEXT = st.lists(
    st.sampled_from(
        [
            *"abcxyz019 .,!?;\n\t{}[]^~|€éñ@",
            "\r\n",
            "\u00a0",
            "ą",
            "中",
            "文",
            "。",
            EMOJI,
            "\u0301",
            "\u200d",
            "’",
            "…",
        ]
    ),
    max_size=700,
).map("".join)
ANY_TEXT = st.one_of(TEXT, st.text(max_size=400))


@given(ANY_TEXT, ANY_TEXT)
def test_segments_counts_units_and_only_grows(text: str, more: str) -> None:
    count = segments(text)
    assert count == sms.fragments_count(text)
    single, part = (160, 153) if is_gsm7(text) else (70, 67)
    units = _units(text)
    if units <= single:
        assert count == 1
    else:  # at most one unit lost per segment to a two-unit character that did not fit
        assert math.ceil(units / part) <= count <= math.ceil(units / (part - 1))
    assert segments(text + more) >= count


# --- smart encoding -------------------------------------------------------------------------------


def test_smart_encoding_examples() -> None:
    assert smart_encode("It’s “fine” — really… ‘ok’ „so“ 1–2") == 'It\'s "fine" - really... \'ok\' "so" 1-2'
    assert smart_encode("10\u00a0km\u202fnow\u2009!\u200b") == "10 km now !"
    assert smart_encode("It’s 😀") == "It’s 😀"  # a real non-GSM character: nothing to gain, nothing changed
    assert smart_encode("“你好”") == "“你好”"
    assert smart_encode("It's {fine} €5") == "It's {fine} €5"
    assert smart_encode("…" * 70) == "…" * 70  # one UCS-2 segment, not three GSM-7 ones


def test_a_long_reply_with_one_apostrophe_goes_out_as_gsm7_at_word_boundaries() -> None:
    words = [f"word{i}" for i in range(1, 101)]
    text = "We’re sorry: " + " ".join(words)
    assert len(text) == 704 and encoding(text) == "UCS-2" and segments(text) == 11
    parts = shape([text], Shaping.sms(max_segments=2))
    assert len(parts) == 3
    assert all(encoding(part) == "GSM-7" and segments(part) <= 2 for part in parts)
    assert " ".join(parts) == text.replace("’", "'")


LOOKALIKE = st.sampled_from(sorted(set(LOOKALIKES) - {"…"}))
GSM_CHAR = st.sampled_from(sorted(set(sms.GSM7_BASIC + sms.GSM7_EXTENDED) - {"\x1b"}))


@given(st.text(GSM_CHAR, max_size=300))
def test_smart_encoding_never_changes_a_gsm7_text(text: str) -> None:
    assert smart_encode(text) == text


@given(st.lists(st.one_of(LOOKALIKE, GSM_CHAR), max_size=300).map("".join))
def test_smart_encoding_makes_typographic_text_gsm7(text: str) -> None:
    encoded = smart_encode(text)
    assert is_gsm7(encoded)
    assert segments(encoded) <= segments(text)


@given(ANY_TEXT)
def test_smart_encoding_is_all_or_nothing_and_idempotent(text: str) -> None:
    encoded = smart_encode(text)
    assert encoded == text or (is_gsm7(encoded) and encoded == text.translate(str.maketrans(dict(LOOKALIKES))))
    assert segments(encoded) <= segments(text)
    assert smart_encode(encoded) == encoded


# --- split ----------------------------------------------------------------------------------------


def test_limit_needs_a_positive_bound() -> None:
    with pytest.raises(ValueError):
        Limit()
    with pytest.raises(ValueError):
        Limit.sms(0)
    with pytest.raises(ValueError):
        Limit.chars(0)
    assert Limit.sms() == Limit(max_segments=10)
    assert Limit.sms(2, max_chars=300).fits("a" * 300) and not Limit.sms(1, max_chars=300).fits("a" * 161)


def test_split_examples() -> None:
    assert split("", Limit.sms()) == [] and split(" \n ", Limit.sms()) == []
    assert split(" fits as it is\n", Limit.sms()) == [" fits as it is\n"]
    limit = Limit.chars(30)
    # a sentence end in the second half of the room wins over a later word boundary
    assert split("This is one sentence. And here is the next one.", limit) == [
        "This is one sentence.",
        "And here is the next one.",
    ]
    assert split("First paragraph here.\n\nSecond one is here, a bit longer.", limit) == [
        "First paragraph here.",
        "Second one is here, a bit",
        "longer.",
    ]
    assert split("abc " + "x" * 70, limit) == ["abc", "x" * 30, "x" * 30, "x" * 10]  # a word longer than a part
    assert split("a" * 29 + "e\u0301" + "b", limit) == ["a" * 29, "e\u0301b"]  # an accent stays on its letter
    assert split("中文很长。" * 10, Limit.chars(12)) == ["中文很长。中文很长。", "中文很长。中文很长。"] * 2 + [
        "中文很长。中文很长。"
    ]
    assert split("no\u00a0break here", Limit.chars(9)) == ["no\u00a0break", "here"]


def test_split_never_splits_an_emoji_across_sms_segments() -> None:
    text = ("ą" * 66 + EMOJI) * 4
    parts = split(text, Limit.sms(1))
    assert all(segments(part) == 1 for part in parts)
    assert "".join(parts) == text


LIMIT = st.one_of(
    st.builds(Limit.sms, st.integers(1, 4)),
    st.builds(Limit.chars, st.integers(1, 400)),
    st.builds(Limit.sms, st.integers(1, 4), max_chars=st.integers(1, 400)),
)


def assert_pieces_of(text: str, parts: list[str]) -> None:
    """The parts are the text, in order, less some whitespace at its ends and between parts."""
    position = 0
    for part in parts:
        assert part
        while not text.startswith(part, position):
            assert position < len(text) and text[position].isspace(), (text, parts)
            position += 1
        position += len(part)
    assert all(char.isspace() for char in text[position:])


@given(ANY_TEXT, LIMIT)
def test_split_fits_keeps_everything_in_order(text: str, limit: Limit) -> None:
    parts = split(text, limit)
    assert all(limit.fits(part) for part in parts)
    assert_pieces_of(text, parts)
    assert bool(parts) == any(not char.isspace() for char in text)
    if limit.fits(text) and parts:
        assert parts == [text]
    for part in parts:  # idempotent
        assert split(part, limit) == [part]


WORD = st.lists(st.sampled_from([*"abcdefghij", "é", "€", "’", EMOJI, "e\u0301"]), min_size=1, max_size=6).map("".join)
GAP = st.sampled_from([" ", "  ", "\n", "\n\n", ". ", "! ", "? ", ", ", "\t"])


@st.composite
def prose(draw: st.DrawFn) -> str:
    words = draw(st.lists(WORD, min_size=1, max_size=120))
    text = words[0]
    for word in words[1:]:
        text += draw(GAP) + word
    return text


@given(prose(), st.one_of(st.builds(Limit.sms, st.integers(1, 4)), st.builds(Limit.chars, st.integers(12, 300))))
def test_split_never_cuts_a_word_that_fits(text: str, limit: Limit) -> None:
    parts = split(text, limit)
    assert [word for part in parts for word in part.split()] == text.split()
    assert all(limit.fits(part) for part in parts)


# --- merge and the whole step ---------------------------------------------------------------------


def test_merge_examples() -> None:
    limit = Limit.sms(1)
    assert merge(["Hello!", "  ", "How can I help?\n", "Pick one:\n1. Billing\n2. Sales"], limit) == [
        "Hello!\n\nHow can I help?\n\nPick one:\n1. Billing\n2. Sales"
    ]
    long = " ".join(["word"] * 40)  # 199 characters: two parts of its own, the second joined with what follows
    assert merge(["Hi.", long, "Bye."], limit) == [
        "Hi.",  # "Hi." and the first part of `long` do not fit together
        " ".join(["word"] * 32),
        " ".join(["word"] * 8) + "\n\nBye.",
    ]
    assert merge(["a" * 100, "b" * 100, "c" * 50], limit) == ["a" * 100, "b" * 100 + SEPARATOR + "c" * 50]
    assert merge([], limit) == [] and merge(["", " "], limit) == []


def test_shaping_defaults() -> None:
    shaping = Shaping.sms()
    assert shaping.limit == Limit(max_segments=10) and shaping.smart_encoding and shaping.merge_replies
    rich = Shaping.rich(4096)
    assert rich.limit == Limit.chars(4096) and not rich.smart_encoding and not rich.merge_replies
    three = ["Thanks — we’ve got it.", "Your ticket is #42.", "Anything else?"]
    assert shape(three, shaping) == ["Thanks - we've got it.\n\nYour ticket is #42.\n\nAnything else?"]
    assert shape(three, rich) == three
    assert shape([EMOJI + " " + "x" * 64 + " It’s here."], Shaping.sms(max_segments=1)) == [
        EMOJI + " " + "x" * 64,
        "It's here.",  # the part without the emoji goes out as GSM-7
    ]


def _visible(texts: list[str]) -> str:
    return "".join(char for text in texts for char in text if not char.isspace())


@given(st.lists(ANY_TEXT, max_size=6), LIMIT)
def test_merge_fits_keeps_everything_in_order(texts: list[str], limit: Limit) -> None:
    parts = merge(texts, limit)
    assert all(part and limit.fits(part) for part in parts)
    assert _visible(parts) == _visible(texts)
    assert len(parts) <= sum(len(split(text, limit)) for text in texts)


@given(st.lists(prose(), max_size=6), st.builds(Limit.sms, st.integers(1, 3)))
def test_merge_keeps_words_and_order(texts: list[str], limit: Limit) -> None:
    parts = merge(texts, limit)
    assert [word for part in parts for word in part.split()] == [word for text in texts for word in text.split()]


@given(st.lists(ANY_TEXT, max_size=8), LIMIT)
def test_merge_of_texts_that_fit_is_idempotent(texts: list[str], limit: Limit) -> None:
    fitting = [part for text in texts for part in split(text, limit)]
    merged = merge(fitting, limit)
    assert len(merged) <= len(fitting)
    assert merge(merged, limit) == merged


@given(st.lists(ANY_TEXT, max_size=5), LIMIT, st.booleans(), st.booleans())
def test_shape_fits(texts: list[str], limit: Limit, smart: bool, merged: bool) -> None:
    parts = shape(texts, Shaping(limit, smart_encoding=smart, merge_replies=merged))
    assert all(part and limit.fits(part) for part in parts)


# --- the engine's step: what a turn's replies become on the channel ------------------------------


@pytest.fixture
async def world(tmp_path: Any) -> AsyncIterator[World]:
    async with make_world(tmp_path) as w:
        yield w


def sent(world: World) -> list[str]:
    return [m["text"] for m in world.channel.outbox]


@pytest.mark.anyio
async def test_a_long_typographic_reply_goes_as_gsm7_parts_split_between_words(world: World) -> None:
    limit = {"config": {"shaping": {"max_segments": 2}}}
    assert (await world.client.patch(f"/v1/senders/{world.sender_id}", json=limit)).status_code == 200
    world.rt.cache.clear()
    text = "It’s " + " ".join(f"word{i}" for i in range(120))  # about 700 characters, one curly apostrophe
    await world.mo("say:" + text)
    await world.until(lambda: len(sent(world)) >= 3)
    await asyncio.wait_for(world.rt.engine.idle(), 10)
    parts = sent(world)
    assert all(is_gsm7(p) and segments(p) <= 2 for p in parts)
    assert " ".join(parts) == text.replace("’", "'")  # in order, nothing lost, cut only between words
    messages = (await world.client.get("/v1/messages")).json()["items"]
    assert sorted(m["text"] for m in messages) == sorted(parts)


@pytest.mark.anyio
async def test_a_turns_messages_are_merged_into_one_sms(world: World) -> None:
    await world.mo("say:Hello!|I can help with bills.|What do you need?")
    await world.until(lambda: len(sent(world)) == 1)
    await asyncio.wait_for(world.rt.engine.idle(), 10)
    assert sent(world) == ["Hello!\n\nI can help with bills.\n\nWhat do you need?"]
    bad = {"config": {"shaping": {"max_segments": 0}}}
    refused = await world.client.patch(f"/v1/senders/{world.sender_id}", json=bad)
    assert refused.status_code == 422 and "config.shaping.max_segments" in refused.text
