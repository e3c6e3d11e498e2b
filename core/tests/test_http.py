from __future__ import annotations

import httpx
import pytest

from botbridge.errors import BotCredentialsInvalid, BotError, CredentialsInvalid, ProviderError
from botbridge.http import RetryPolicy, call_with_retry, create_http_client
from botbridge.settings import Settings

pytestmark = pytest.mark.anyio


class RecordingClock:
    def __init__(self) -> None:
        self.slept: list[float] = []

    def now(self) -> float:
        return 0.0

    async def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)


def scripted(*answers: int | Exception, headers: dict[str, str] | None = None) -> tuple[httpx.AsyncClient, list[int]]:
    calls: list[int] = []
    queue = list(answers)

    def handler(request: httpx.Request) -> httpx.Response:
        calls.append(1)
        answer = queue.pop(0)
        if isinstance(answer, Exception):
            raise answer
        return httpx.Response(answer, headers=headers or {}, json={"n": len(calls)})

    return httpx.AsyncClient(transport=httpx.MockTransport(handler), base_url="http://p"), calls


async def test_retries_then_succeeds() -> None:
    client, calls = scripted(503, httpx.ConnectError("down"), 200)
    clock = RecordingClock()
    response = await call_with_retry(
        lambda: client.get("/"), "bot", clock=clock, policy=RetryPolicy(attempts=3, base=1)
    )
    assert response.json() == {"n": 3}
    assert len(calls) == 3 and len(clock.slept) == 2
    assert all(0 <= s <= 2 for s in clock.slept)


async def test_retry_after_is_honoured_within_the_cap() -> None:
    client, _ = scripted(429, 200, headers={"retry-after": "3"})
    clock = RecordingClock()
    await call_with_retry(lambda: client.get("/"), "bot", clock=clock, policy=RetryPolicy(attempts=2, cap=10))
    assert clock.slept == [3.0]
    client, _ = scripted(429, 200, headers={"retry-after": "3600"})
    clock = RecordingClock()
    await call_with_retry(lambda: client.get("/"), "bot", clock=clock, policy=RetryPolicy(attempts=2, cap=10))
    assert clock.slept == [10.0]


async def test_credentials_failures_are_not_retried() -> None:
    client, calls = scripted(401, 200)
    with pytest.raises(BotCredentialsInvalid):
        await call_with_retry(
            lambda: client.get("/"),
            "bot",
            clock=RecordingClock(),
            error=BotError,
            credentials_error=BotCredentialsInvalid,
        )
    assert len(calls) == 1


async def test_other_client_errors_are_final() -> None:
    client, calls = scripted(400, 200)
    with pytest.raises(ProviderError) as caught:
        await call_with_retry(lambda: client.get("/"), "bot", clock=RecordingClock())
    assert not caught.value.retryable and caught.value.status_code == 400
    assert len(calls) == 1


async def test_exhausted_retries_raise_a_retryable_error() -> None:
    client, calls = scripted(500, 502, 504)
    with pytest.raises(ProviderError) as caught:
        await call_with_retry(lambda: client.get("/"), "bot", clock=RecordingClock(), policy=RetryPolicy(attempts=3))
    assert caught.value.retryable and len(calls) == 3
    assert not isinstance(caught.value, CredentialsInvalid)


async def test_timeouts_are_retryable() -> None:
    client, _ = scripted(httpx.ReadTimeout("slow"), httpx.ReadTimeout("slow"))
    with pytest.raises(ProviderError, match="timed out") as caught:
        await call_with_retry(lambda: client.get("/"), "bot", clock=RecordingClock(), policy=RetryPolicy(attempts=2))
    assert caught.value.retryable


@pytest.mark.parametrize("transport", ["aiohttp", "httpx"])
async def test_shared_client_transports(transport: str) -> None:
    client = create_http_client(Settings(http_transport=transport))  # type: ignore[arg-type]
    try:
        assert client.timeout.read == 20.0
        assert client.headers["user-agent"].startswith("botbridge/")
    finally:
        await client.aclose()
