from __future__ import annotations

import json
from collections.abc import AsyncIterator, Iterator
from typing import Any

import httpx
import pytest

from botbridge.channel import SenderContext, WebhookRequest
from botbridge.clock import FakeClock
from botbridge.http import RetryPolicy
from botbridge.models import Sender
from botbridge_sinch import SinchChannel
from botbridge_sinch.testing import FakeSinch

from .sdk_oracle import assert_sdk_accepts_send

WEBHOOK_URL = "https://bb.example.com/v1/webhooks/sinch/snd-1"
FAST_RETRY = RetryPolicy(attempts=3, base=0.0, cap=0.0)


class Claims:
    """An in-memory `SenderContext.claim`: True the first time a key is seen."""

    def __init__(self) -> None:
        self.keys: dict[str, float] = {}

    async def __call__(self, key: str, ttl: float) -> bool:
        if key in self.keys:
            return False
        self.keys[key] = ttl
        return True


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def fake(clock: FakeClock) -> Iterator[FakeSinch]:
    fake = FakeSinch(clock=clock)
    yield fake
    # Every request the fake accepted in the test is one the official SDK's models accept.
    for record in fake.sent:
        assert_sdk_accepts_send(record["body"])


@pytest.fixture
async def http(fake: FakeSinch) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=fake.app)) as client:
        yield client


@pytest.fixture
def channel(http: httpx.AsyncClient, clock: FakeClock) -> SinchChannel:
    return SinchChannel(http, clock, retry=FAST_RETRY)


def credentials_json(fake: FakeSinch, **override: str) -> str:
    data = {
        "project_id": fake.project_id,
        "app_id": fake.app_id,
        "key_id": fake.key_id,
        "key_secret": fake.key_secret,
        **override,
    }
    return json.dumps(data)


def make_sender(fake: FakeSinch, claims: Claims | None = None, **config: Any) -> SenderContext:
    return SenderContext(
        sender=Sender(id="snd-1", account_id="acct", channel="sinch", address="+46709876543", config=config),
        credentials=credentials_json(fake),
        webhook_secret=fake.webhook_secret,
        webhook_url=WEBHOOK_URL,
        claim=claims or Claims(),
    )


@pytest.fixture
def sender(fake: FakeSinch) -> SenderContext:
    return make_sender(fake)


def signed(
    fake: FakeSinch, sender: SenderContext, body: bytes, secret: str | None = None, age: float = 0.0, **kw: Any
) -> WebhookRequest:
    timestamp = kw.pop("timestamp", int(fake.clock.now() - age))
    headers = fake.sign(body, sender.webhook_secret if secret is None else secret, timestamp=timestamp, **kw)
    return WebhookRequest("POST", sender.webhook_url, headers, body)
