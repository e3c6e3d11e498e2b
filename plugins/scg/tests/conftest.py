from __future__ import annotations

import base64
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import httpx
import pytest

from botbridge.channel import SenderContext, WebhookRequest
from botbridge.clock import FakeClock
from botbridge.http import RetryPolicy
from botbridge.models import Sender
from botbridge_scg import ScgChannel
from botbridge_scg.testing import FakeScg, iso_now

T0 = 1_700_000_000.0


def basic(user: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


@dataclass(frozen=True)
class Consts:
    token: str = "scg-test-token-0001"
    expired_token: str = "scg-expired-token-01"
    secret: str = "ess-webhook-secret-0123456789"
    address: str = "+15550001111"
    base_url: str = "http://scg.fake"
    sender_from: str = "channel:DJm-vHcnSBKbeK4b2FAOLQ"


@pytest.fixture
def consts() -> Consts:
    return Consts()


@pytest.fixture
def fake(consts: Consts) -> FakeScg:
    return FakeScg(
        tokens={consts.token},
        expired_tokens={consts.expired_token},
        now=T0,
    )


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(T0)


@pytest.fixture
def http(fake: FakeScg, consts: Consts) -> httpx.AsyncClient:
    # In-process transport: nothing to close.
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=fake.app), base_url=consts.base_url)


@pytest.fixture
def channel(http: httpx.AsyncClient, clock: FakeClock) -> ScgChannel:
    channel = ScgChannel(http, clock)
    channel.retry_policy = RetryPolicy(attempts=3, base=0.0, cap=0.0)
    return channel


@pytest.fixture
def make_sender(consts: Consts) -> Callable[..., SenderContext]:
    def make(
        config: dict[str, Any] | None = None,
        *,
        secret: str | None = None,
        credentials: str | None = None,
        address: str | None = None,
    ) -> SenderContext:
        claimed: set[str] = set()

        async def claim(key: str, ttl: float) -> bool:
            if key in claimed:
                return False
            claimed.add(key)
            return True

        sender = Sender(
            account_id="acct",
            channel="scg",
            address=address or consts.address,
            config={"base_url": consts.base_url, "from": consts.sender_from, **(config or {})},
        )
        return SenderContext(
            sender=sender,
            credentials=consts.token if credentials is None else credentials,
            webhook_secret=consts.secret if secret is None else secret,
            webhook_url=f"https://botbridge.example/v1/webhooks/scg/{sender.id}",
            claim=claim,
        )

    return make


@pytest.fixture
def ess_request(consts: Consts) -> Callable[..., WebhookRequest]:
    """A webhook request as ESS delivers it with a Basic delivery configuration."""

    def build(
        body: bytes,
        *,
        url: str = "https://botbridge.example/x",
        secret: str | None = None,
        age: float = 0.0,
        **extra: str,
    ) -> WebhookRequest:
        headers = {
            "authorization": basic("syniverse", consts.secret if secret is None else secret),
            "content-type": "application/json; charset=UTF-8",
            "x-ess-event-key": "+15551230001,",
            "x-ess-event-timestamp": iso_now(T0 - age),
            **{k.lower(): v for k, v in extra.items()},
        }
        return WebhookRequest("POST", url, headers, body)

    return build
