from __future__ import annotations

from collections.abc import AsyncIterator, Iterable, Iterator

import httpx
import pytest

from botbridge import BotSession, Connector, Conversation, FakeClock
from botbridge.http import RetryPolicy
from botbridge_lex import LexBot
from botbridge_lex.model import check_request, response_errors
from botbridge_lex.testing import FAKE_BASE_URL, Exchange, FakeLex, fake_credentials

# No waiting in tests: every backoff is zero seconds.
NO_WAIT = RetryPolicy(attempts=3, base=0.0, cap=0.0)
INVALID_REQUESTS = "invalid_lex_requests"


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        f"{INVALID_REQUESTS}: the test sends requests Lex's model refuses, on purpose (the fake must refuse them)",
    )


def model_problems(exchanges: Iterable[Exchange], *, requests_may_be_invalid: bool = False) -> list[str]:
    """What botocore's service models find wrong in what reached the fake and what it answered.

    - every request must be valid, unless the test sends invalid ones on purpose;
    - the fake must never accept a request the model refuses;
    - every answer must fit the output shape (or its modelled error's shape).
    """
    problems: list[str] = []
    for index, exchange in enumerate(exchanges):
        where = f"#{index} {exchange.method} {exchange.target} -> {exchange.status}"
        check = check_request(exchange.api, exchange.method, exchange.target, exchange.headers, exchange.body)
        if check.api and exchange.status < 400:
            problems.append(f"{where}: the fake accepted what the model refuses: {check.api}")
        if check.errors and not requests_may_be_invalid:
            problems.append(f"{where}: request breaks the model: {check.errors}")
        if exchange.api is not None:
            answer = response_errors(exchange.api, exchange.status, exchange.response_headers, exchange.response_body)
            if answer:
                problems.append(f"{where}: answer breaks the model: {answer}")
    return problems


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def fake(clock: FakeClock, request: pytest.FixtureRequest) -> Iterator[FakeLex]:
    """The fake; at teardown, everything it saw and answered is checked against botocore's models."""
    fake = FakeLex(clock=clock)
    yield fake
    invalid_ok = request.node.get_closest_marker(INVALID_REQUESTS) is not None
    problems = model_problems(fake.exchanges, requests_may_be_invalid=invalid_ok)
    assert not problems, "\n".join(problems)


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
