from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from botbridge.channel import SenderContext, WebhookRequest
from botbridge.clock import FakeClock
from botbridge.http import RetryPolicy
from botbridge.models import Sender
from botbridge_bird import BirdChannel
from botbridge_bird.testing import BirdFake, compact

ACCESS_KEY = "bird-test-access-key"
SIGNING_KEY = "bird-signing-key-for-tests-0123456789"
WEBHOOK_URL = "https://bridge.example.com/v1/webhooks/bird/sender-1"
API_BASE = "https://api.bird.test"
FAST = RetryPolicy(attempts=3, base=0.0, cap=0.0)


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def fake(clock: FakeClock) -> BirdFake:
    bird = BirdFake(access_key=ACCESS_KEY, clock=clock)
    bird.add_channel("sms", "+3197010250000")
    return bird


@pytest.fixture
def channel_id(fake: BirdFake) -> str:
    return next(iter(fake.channels))


@pytest.fixture
async def api(fake: BirdFake) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=fake.app), base_url=API_BASE) as client:
        yield client


@pytest.fixture
def channel(api: httpx.AsyncClient, clock: FakeClock) -> BirdChannel:
    instance = BirdChannel(api, clock)
    instance.retry_policy = FAST
    return instance


def make_sender(
    fake: BirdFake,
    *,
    config: dict[str, Any] | None = None,
    credentials: str = ACCESS_KEY,
    secret: str = SIGNING_KEY,
    webhook_url: str = WEBHOOK_URL,
    state: str = "active",
) -> SenderContext:
    claimed: set[str] = set()

    async def claim(key: str, ttl: float) -> bool:
        if key in claimed:
            return False
        claimed.add(key)
        return True

    base = {
        "workspace_id": fake.workspace_id,
        "organization_id": fake.organization_id,
        "channel_type": "sms",
        "base_url": API_BASE,
    }
    if fake.channels:
        base["channel_id"] = next(iter(fake.channels))
    return SenderContext(
        sender=Sender(
            id="sender-1",
            account_id="acct",
            channel="bird",
            address="+3197010250000",
            config={**base, **(config or {})},
            state=state,
        ),
        credentials=credentials,
        webhook_secret=secret,
        webhook_url=webhook_url,
        claim=claim,
    )


@pytest.fixture
def sender(fake: BirdFake) -> SenderContext:
    return make_sender(fake)


def signed(
    fake: BirdFake, event: dict[str, Any] | bytes, *, key: str = SIGNING_KEY, age: float = 0.0, url: str = WEBHOOK_URL
) -> WebhookRequest:
    body = event if isinstance(event, bytes) else compact(event)
    headers = fake.signed_headers(body, url, key, fake.now() - age)
    return WebhookRequest("POST", url, headers, body)
