"""The bot backend contract: what every `botbridge.BotBackend` must do.

A plugin's test subclasses `BotBackendContract` and provides a `harness`
fixture yielding a `BotHarness`: the backend wired to the plugin's strict
fake, whose scripted bot answers `expected_echo(text)` to plain text and
offers options when it gets `options_trigger`.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import anyio
import pytest

from botbridge.bot import BotBackend, BotSession
from botbridge.errors import BotCredentialsInvalid, BotError, ConfigInvalid
from botbridge.models import InboundMessage, Reply


@dataclass
class BotHarness:
    bot: BotBackend
    # session(credentials=None): a BotSession for a fresh conversation with
    # valid credentials (or the given ones)
    session: Callable[..., BotSession]
    valid_credentials: str
    # credentials well-formed but refused by the fake (wrong secret or key)
    refused_credentials: str
    expected_echo: Callable[[str], str]
    # text that makes the scripted bot answer with options
    # [("Billing", "billing"), ("Sales", "sales")] (labels as shown, values as sent back)
    options_trigger: str
    # the backend's own session id for a session (a new one after close+open)
    backend_session_id: Callable[[BotSession], str]
    # make the fake answer the next call with this HTTP status
    fail_next: Callable[[int], None]
    # schedule_late(session, text): the fake bot sends `text` on its own later
    schedule_late: Callable[[BotSession, str], Awaitable[None]] | None = None


def inbound(session: BotSession, text: str, n: int = 0) -> InboundMessage:
    return InboundMessage(
        channel="test",
        sender_id=session.conversation.sender_id,
        provider_message_id=f"m{n}-{text}",
        contact=session.contact,
        text=text,
    )


@pytest.mark.anyio
class BotBackendContract:
    """Subclass and provide a `harness` fixture returning a BotHarness."""

    async def _turn(self, harness: BotHarness, session: BotSession, text: str) -> list[Reply]:
        return await harness.bot.send(session, inbound(session, text))

    async def test_valid_credentials_pass_validation(self, harness: BotHarness) -> None:
        harness.bot.validate_credentials(harness.valid_credentials, {})

    async def test_garbage_credentials_fail_validation(self, harness: BotHarness) -> None:
        for garbage in ("", "{", '{"x": 1}'):
            with pytest.raises(ConfigInvalid) as caught:
                harness.bot.validate_credentials(garbage, {})
            assert caught.value.status_code == 422

    async def test_three_turns(self, harness: BotHarness) -> None:
        session = harness.session()
        await harness.bot.open(session)
        for text in ("hello", "second turn", "third"):
            replies = await self._turn(harness, session, text)
            assert harness.expected_echo(text) in [r.text for r in replies]
        await harness.bot.close(session)

    async def test_state_is_plain_json(self, harness: BotHarness) -> None:
        import json

        session = harness.session()
        await harness.bot.open(session)
        await self._turn(harness, session, "hello")
        assert json.loads(json.dumps(session.state)) == session.state
        await harness.bot.close(session)

    async def test_options_become_reply_options(self, harness: BotHarness) -> None:
        session = harness.session()
        await harness.bot.open(session)
        replies = await self._turn(harness, session, harness.options_trigger)
        options = [o for r in replies for o in r.options]
        assert [(o.label, o.value) for o in options] == [("Billing", "billing"), ("Sales", "sales")]
        await harness.bot.close(session)

    async def test_new_conversation_gets_new_backend_session(self, harness: BotHarness) -> None:
        first = harness.session()
        await harness.bot.open(first)
        await self._turn(harness, first, "hello")
        await harness.bot.close(first)
        second = harness.session()
        await harness.bot.open(second)
        await self._turn(harness, second, "hello")
        assert harness.backend_session_id(first) != harness.backend_session_id(second)
        await harness.bot.close(second)

    async def test_refused_credentials_raise_credentials_invalid(self, harness: BotHarness) -> None:
        session = harness.session(credentials=harness.refused_credentials)
        with pytest.raises(BotCredentialsInvalid):
            await harness.bot.open(session)
            await self._turn(harness, session, "hello")

    async def test_server_error_is_retryable_bot_error(self, harness: BotHarness) -> None:
        session = harness.session()
        await harness.bot.open(session)
        for _ in range(10):  # more than any sane retry budget
            harness.fail_next(503)
        with pytest.raises(BotError) as caught:
            await self._turn(harness, session, "hello")
        assert caught.value.retryable
        assert not isinstance(caught.value, BotCredentialsInvalid)

    async def test_late_replies_reach_the_callback(self, harness: BotHarness) -> None:
        if harness.schedule_late is None:
            pytest.skip("this backend has no asynchronous replies")
        received: list[Reply] = []
        arrived = anyio.Event()
        session = harness.session()

        async def deliver(replies: list[Reply]) -> None:
            received.extend(replies)
            if "a thought, later" in [r.text for r in received]:
                arrived.set()

        session.deliver_late = deliver
        await harness.bot.open(session)
        await self._turn(harness, session, "hello")
        await harness.schedule_late(session, "a thought, later")
        with anyio.fail_after(10):
            await arrived.wait()
        await harness.bot.close(session)
