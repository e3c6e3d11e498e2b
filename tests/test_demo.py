"""`botbridge demo`, the README's run command, as a newcomer runs it."""

from __future__ import annotations

import subprocess
import sys

import pytest


def demo(*args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "botbridge.cli", "demo", *args],
        input=stdin,
        capture_output=True,
        text=True,
        timeout=120,
    )


@pytest.mark.parametrize(("channel", "bot"), [("scg", "directline"), ("sinch", "lex"), ("bird", "dialogflow")])
def test_demo_runs_a_conversation_and_shows_the_events(channel: str, bot: str) -> None:
    result = demo("--channel", channel, "--bot", bot)
    assert result.returncode == 0, result.stdout + result.stderr
    out = result.stdout
    assert "📱 +14085551212 → Hi there!" in out
    assert "🤖 bot → echo: Hi there!" in out
    assert "1. Billing" in out and "2. Sales" in out
    assert "echo: sales" in out  # "2" reached the bot as the option's value
    assert out.count("mo_message_received") == 3
    assert out.count("message_request_state_change") >= 3  # one per reply; a bot may send several
    assert "gave up" not in out
    assert out.count("message_state_change") == out.count("message_request_state_change")  # each reply delivered
    assert "→ DELIVERED" in out
    assert 'credentials":"…"' in out  # the curl lines never show a secret


def test_interactive_demo_reads_the_phone_user() -> None:
    result = demo("--channel", "sinch", "--bot", "lex", "--interactive", stdin="hello from a person\n\n")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "🤖 bot → echo: hello from a person" in result.stdout


def test_unknown_fake_is_a_clear_error() -> None:
    result = demo("--channel", "pigeon")
    assert result.returncode == 2
    assert "installed fakes" in result.stderr
