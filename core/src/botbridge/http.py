"""The one outbound HTTP client the host owns and every plugin receives.

Its transport was chosen by measurement: on this project's reference
machine httpx's default transport spent most of its CPU re-checking pooled
connections and relayed ~150 messages/s, where the same code over the
aiohttp transport relayed ~500. Plugins never build clients of their own.
"""

from __future__ import annotations

import random
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import httpx

from botbridge.clock import Clock
from botbridge.errors import CredentialsInvalid, ProviderError
from botbridge.settings import Settings

USER_AGENT = "botbridge/0.1"


def create_http_client(settings: Settings | None = None) -> httpx.AsyncClient:
    settings = settings or Settings()
    limits = httpx.Limits(
        max_connections=settings.http_max_connections,
        max_keepalive_connections=settings.http_max_connections,
        keepalive_expiry=30.0,
    )
    timeout = httpx.Timeout(settings.http_timeout, connect=5.0)
    transport: httpx.AsyncBaseTransport
    if settings.http_transport == "aiohttp":
        from httpx_aiohttp import AiohttpTransport

        transport = AiohttpTransport(limits=limits, trust_env=False)
    else:
        transport = httpx.AsyncHTTPTransport(limits=limits, trust_env=False)
    return httpx.AsyncClient(
        transport=transport,
        timeout=timeout,
        headers={"user-agent": USER_AGENT},
        trust_env=False,
        follow_redirects=False,
    )


# --- calling provider APIs -------------------------------------------------

RETRYABLE_STATUS = frozenset({408, 425, 429, 500, 502, 503, 504})


@dataclass(frozen=True)
class RetryPolicy:
    """Bounded exponential backoff with full jitter; honours Retry-After up to `cap`."""

    attempts: int = 3
    base: float = 0.25
    cap: float = 8.0

    def delay(self, attempt: int, retry_after: float | None = None) -> float:
        if retry_after is not None:
            return min(self.cap, max(0.0, retry_after))
        return random.uniform(0, min(self.cap, self.base * 2**attempt))


def retry_after_seconds(response: httpx.Response) -> float | None:
    value = response.headers.get("retry-after")
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        return None


def error_for(
    response: httpx.Response,
    what: str,
    *,
    error: type[ProviderError] = ProviderError,
    credentials_error: type[ProviderError] = CredentialsInvalid,
) -> ProviderError:
    """The error a failed provider response stands for (never echoes secrets).

    401/403 → `credentials_error`; 408/429/5xx → retryable `error`; other
    4xx → non-retryable `error`. The provider's own message is kept short.
    """
    status = response.status_code
    detail = response.text[:300].replace("\n", " ") if response.content else ""
    message = f"{what} answered {status}" + (f": {detail}" if detail else "")
    if status in (401, 403):
        return credentials_error(message, status_code=status)
    return error(
        message,
        status_code=status,
        retryable=status in RETRYABLE_STATUS,
        retry_after=retry_after_seconds(response),
    )


async def call_with_retry(
    send: Callable[[], Awaitable[httpx.Response]],
    what: str,
    *,
    clock: Clock,
    policy: RetryPolicy = RetryPolicy(),
    error: type[ProviderError] = ProviderError,
    credentials_error: type[ProviderError] = CredentialsInvalid,
) -> httpx.Response:
    """Call `send()` until a 2xx or a final failure; return the 2xx response.

    Transport errors and timeouts count as retryable failures. Raises the
    mapped `ProviderError` after the last attempt.
    """
    last: ProviderError | None = None
    for attempt in range(policy.attempts):
        if attempt and last is not None:
            await clock.sleep(policy.delay(attempt - 1, last.retry_after))
        try:
            response = await send()
        except httpx.TimeoutException as exc:
            last = error(f"{what} timed out", retryable=True)
            last.__cause__ = exc
            continue
        except httpx.TransportError as exc:
            last = error(f"{what} unreachable: {type(exc).__name__}", retryable=True)
            last.__cause__ = exc
            continue
        if response.is_success:
            return response
        last = error_for(response, what, error=error, credentials_error=credentials_error)
        if not last.retryable:
            raise last
    assert last is not None
    raise last
