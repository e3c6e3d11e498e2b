from __future__ import annotations

import json
from collections.abc import AsyncIterator, Callable
from typing import Any

import httpx
import pytest
from cryptography.hazmat.primitives.asymmetric import rsa

from botbridge import BotSession, Connector, Conversation, FakeClock
from botbridge.http import RetryPolicy
from botbridge_dialogflow import DialogflowBackend
from botbridge_dialogflow.testing import FakeDialogflow, generate_key, service_account_info

PROJECT = "demo-agent-4711"
EMAIL = f"connector@{PROJECT}.iam.gserviceaccount.com"
FAST_RETRIES = RetryPolicy(attempts=3, base=0.0, cap=0.0)


@pytest.fixture(scope="session")
def key() -> rsa.RSAPrivateKey:
    return generate_key()


@pytest.fixture(scope="session")
def other_key() -> rsa.RSAPrivateKey:
    return generate_key()


@pytest.fixture
def account(key: rsa.RSAPrivateKey) -> dict[str, str]:
    return service_account_info(key, project_id=PROJECT, client_email=EMAIL, private_key_id="key-1")


@pytest.fixture
def credentials(account: dict[str, str]) -> str:
    return json.dumps(account)


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def fake(clock: FakeClock, account: dict[str, str]) -> FakeDialogflow:
    fake = FakeDialogflow(clock)
    fake.register(account)
    return fake


@pytest.fixture
async def http(fake: FakeDialogflow) -> AsyncIterator[httpx.AsyncClient]:
    # Every host (Google's token URL, regional API hosts) reaches the fake in-process.
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=fake.app)) as client:
        yield client


@pytest.fixture
async def backend(http: httpx.AsyncClient, clock: FakeClock) -> AsyncIterator[DialogflowBackend]:
    bot = DialogflowBackend(http, clock, retry_policy=FAST_RETRIES)
    yield bot
    await bot.aclose()


@pytest.fixture
def make_session(credentials: str, clock: FakeClock) -> Callable[..., BotSession]:
    valid = credentials

    def make(credentials: str | None = None, config: dict[str, Any] | None = None) -> BotSession:
        connector = Connector(account_id="acct", type="GOOGLE_DIALOG_FLOW", sender_id="sender-1", config=config or {})
        conversation = Conversation(
            sender_id="sender-1",
            contact="+15551234567",
            connector_id=connector.id,
            opened_at=clock.now(),
            last_mo_at=clock.now(),
        )
        return BotSession(
            connector=connector,
            credentials=valid if credentials is None else credentials,
            conversation=conversation,
        )

    return make
