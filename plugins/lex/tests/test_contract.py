"""The core bot-backend contract, for both credential styles (V2 and legacy V1)."""

from __future__ import annotations

import httpx
import pytest

from botbridge import BotSession, FakeClock
from botbridge.testing import BotBackendContract, BotHarness
from botbridge_lex import LexBot
from botbridge_lex.testing import OPTIONS_TRIGGER, FakeLex, fake_credentials

from .conftest import NO_WAIT, make_session


def _harness(api: str, fake: FakeLex, http: httpx.AsyncClient, clock: FakeClock) -> BotHarness:
    def session(credentials: str | None = None) -> BotSession:
        return make_session(credentials or fake_credentials(api), api)

    return BotHarness(
        bot=LexBot(http, clock, retry_policy=NO_WAIT),
        session=session,
        valid_credentials=fake_credentials(api),
        refused_credentials=fake_credentials(api, secret="the-wrong-secret-for-this-key-id"),
        expected_echo=lambda text: f"echo: {text}",
        options_trigger=OPTIONS_TRIGGER,
        backend_session_id=lambda s: s.state["session_id"],
        fail_next=fake.fail_next,
        schedule_late=None,
    )


class TestLexV2Contract(BotBackendContract):
    @pytest.fixture
    def harness(self, fake: FakeLex, http: httpx.AsyncClient, clock: FakeClock) -> BotHarness:
        return _harness("v2", fake, http, clock)


class TestLexV1Contract(BotBackendContract):
    @pytest.fixture
    def harness(self, fake: FakeLex, http: httpx.AsyncClient, clock: FakeClock) -> BotHarness:
        return _harness("v1", fake, http, clock)
