from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest

from botbridge import BotSession, Connector, Conversation, FakeClock
from botbridge.http import RetryPolicy
from botbridge_lex import LexBot
from botbridge_lex.testing import FAKE_BASE_URL, FakeLex, fake_credentials

# No waiting in tests: every backoff is zero seconds.
NO_WAIT = RetryPolicy(attempts=3, base=0.0, cap=0.0)


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def fake(clock: FakeClock) -> FakeLex:
    return FakeLex(clock=clock)


@pytest.fixture
async def http(fake: FakeLex) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=fake.app), base_url=FAKE_BASE_URL) as client:
        yield client


@pytest.fixture
def bot(http: httpx.AsyncClient, clock: FakeClock) -> LexBot:
    return LexBot(http, clock, retry_policy=NO_WAIT)


def make_session(credentials: str | None = None, api: str = "v2", **config: object) -> BotSession:
    connector = Connector(
        account_id="acct",
        type="AMAZON_LEX",
        sender_id="sender-1",
        config={"base_url": FAKE_BASE_URL, **config},
    )
    conversation = Conversation(
        sender_id="sender-1", contact="+15551234567", connector_id=connector.id, opened_at=0.0, last_mo_at=0.0
    )
    return BotSession(connector=connector, credentials=credentials or fake_credentials(api), conversation=conversation)
