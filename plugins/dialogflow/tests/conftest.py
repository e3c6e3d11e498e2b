from __future__ import annotations

import functools
import json
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest
from cryptography.hazmat.primitives.asymmetric import rsa

from botbridge import BotSession, Connector, Conversation, FakeClock
from botbridge.http import RetryPolicy
from botbridge_dialogflow import DialogflowBackend
from botbridge_dialogflow.testing import FakeDialogflow, generate_key, service_account_info

from . import oracle

PROJECT = "demo-agent-4711"
EMAIL = f"connector@{PROJECT}.iam.gserviceaccount.com"
FAST_RETRIES = RetryPolicy(attempts=3, base=0.0, cap=0.0)
CRAFTED = "crafted_requests"


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        f"{CRAFTED}: the test posts its own (often invalid) bodies to the fake; "
        "the discovery oracle checks only the fake's answers",
    )


@dataclass
class Oracle:
    """Every fake a test creates, so its exchanges are held against the discovery documents."""

    check_requests: bool
    fakes: list[FakeDialogflow] = field(default_factory=list)

    def problems(self) -> list[str]:
        return [
            problem
            for fake in self.fakes
            for exchange in fake.exchanges
            for problem in oracle.check_exchange(exchange, request=self.check_requests)
        ]


@pytest.fixture(autouse=True)
def discovery_oracle(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> Iterator[Oracle]:
    """After each test: every detectIntent the plugin sent, and every answer, fits Google's definition.

    Fakes are also built inside tests (a regional agent, the loopback server):
    wrapping the constructor catches them all, so no test can forget to opt in.
    """
    watch = Oracle(check_requests=request.node.get_closest_marker(CRAFTED) is None)
    original = FakeDialogflow.__init__

    @functools.wraps(original)
    def init(self: FakeDialogflow, *args: Any, **kwargs: Any) -> None:
        original(self, *args, **kwargs)
        watch.fakes.append(self)

    monkeypatch.setattr(FakeDialogflow, "__init__", init)
    yield watch
    found = watch.problems()
    if found:
        pytest.fail("Not what Google's discovery document allows:\n" + "\n".join(found[:20]), pytrace=False)


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
