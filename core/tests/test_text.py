"""SMS fragments and numbered options."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from botbridge.models import Media, Option, Reply
from botbridge.render import as_text, match_option, numbered
from botbridge.sms import fragments_count, is_gsm7, split


def test_fragment_boundaries() -> None:
    assert fragments_count("") == 1
    assert fragments_count("a" * 160) == 1
    assert fragments_count("a" * 161) == 2
    assert fragments_count("a" * 306) == 2
    assert fragments_count("a" * 307) == 3
    assert fragments_count("é" * 160) == 1  # é is in GSM-7
    assert fragments_count("ą" * 70) == 1  # UCS-2
    assert fragments_count("ą" * 71) == 2
    assert fragments_count("ą" * 134) == 2
    assert fragments_count("ą" * 135) == 3
    assert fragments_count("{" * 80) == 1  # extension characters take two septets
    assert fragments_count("{" * 81) == 2
    assert fragments_count("😀" * 35) == 1  # two UTF-16 units each
    assert fragments_count("😀" * 36) == 2


def test_gsm7_detection() -> None:
    assert is_gsm7("Hello @ £5 {ok}")
    assert not is_gsm7("Привет")
    assert not is_gsm7("smile 😀")


@given(st.text(max_size=500))
def test_split_keeps_every_character_and_respects_sizes(text: str) -> None:
    size = 153 if is_gsm7(text) else 67
    parts = split(text, part_size=size)
    assert "".join(parts) == text
    for part in parts:
        units = sum(2 if (c in "^{}\\[~]|€\f" and is_gsm7(text)) or ord(c) > 0xFFFF else 1 for c in part)
        assert units <= size
    if len(text) > 0:
        assert fragments_count(text) >= 1


OPTIONS = [Option(label="Billing", value="billing"), Option(label="Sales", value="sales-dept")]


def test_numbered_rendering() -> None:
    reply = Reply(text="How can we help?", options=OPTIONS, media=[Media(url="https://x/img.png", caption="Map")])
    assert numbered(OPTIONS) == "1. Billing\n2. Sales"
    assert as_text(reply) == "How can we help?\n1. Billing\n2. Sales\nReply with a number.\nMap: https://x/img.png"


def test_match_option() -> None:
    assert match_option("2", OPTIONS) == OPTIONS[1]
    assert match_option(" 1. ", OPTIONS) == OPTIONS[0]
    assert match_option("#2", OPTIONS) == OPTIONS[1]
    assert match_option("sales", OPTIONS) == OPTIONS[1]
    assert match_option("3", OPTIONS) is None
    assert match_option("0", OPTIONS) is None
    assert match_option("2 please", OPTIONS) is None
    assert match_option("2", []) is None


@given(st.text(max_size=30), st.lists(st.text(min_size=1, max_size=10), max_size=5))
def test_match_option_never_invents(text: str, labels: list[str]) -> None:
    options = [Option(label=label, value=f"v{i}") for i, label in enumerate(labels)]
    picked = match_option(text, options)
    assert picked is None or picked in options
