"""The one outbound HTTP client the host owns and every plugin receives.

Its transport was chosen by measurement: on this project's reference
machine httpx's default transport spent most of its CPU re-checking pooled
connections and relayed ~150 messages/s, where the same code over the
aiohttp transport relayed ~500. Plugins never build clients of their own.

Every request through it obeys the outbound-URL policy (botbridge.outbound):
`GuardedTransport` refuses a bad scheme, credentials in the URL and IP
literals before anything is sent, and each transport's resolver checks every
address a name resolves to at connect time, then connects only to those
addresses. A refusal is an `OutboundRefused`, a `httpx.ConnectError`.
"""

from __future__ import annotations

import logging
import random
import socket
import ssl
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from http.cookiejar import CookieJar, DefaultCookiePolicy
from typing import Any

import httpcore
import httpx

from botbridge.clock import Clock
from botbridge.errors import CredentialsInvalid, ProviderError, tenant_text
from botbridge.outbound import OutboundPolicy, UnsafeURL
from botbridge.settings import Settings

USER_AGENT = "botbridge/0.1"
logger = logging.getLogger("botbridge.provider")


class OutboundRefused(httpx.ConnectError):
    """The outbound-URL policy refused the request's URL or address."""


class GuardedTransport(httpx.AsyncBaseTransport):
    def __init__(self, inner: httpx.AsyncBaseTransport, policy: OutboundPolicy) -> None:
        self.inner = inner
        self.policy = policy

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        try:
            if request.url.userinfo:
                raise UnsafeURL("must not carry credentials")
            self.policy.check_literal(str(request.url))
            return await self.inner.handle_async_request(request)
        except UnsafeURL as exc:
            raise OutboundRefused(f"refused {request.url.host!r}: {exc}", request=request) from None

    async def aclose(self) -> None:
        await self.inner.aclose()


class _GuardedBackend(httpcore.AsyncNetworkBackend):
    """httpcore's network backend, connecting only to addresses the policy allows."""

    def __init__(self, policy: OutboundPolicy) -> None:
        self.policy = policy
        self.inner = httpcore.AnyIOBackend()

    async def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,  # noqa: ASYNC109 (httpcore's interface)
        local_address: str | None = None,
        socket_options: Iterable[Any] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        try:
            addresses = await self.policy.resolve(host, port)
        except OSError as exc:  # a name that does not resolve: nothing was sent
            raise httpcore.ConnectError(f"DNS lookup of {host!r} failed: {exc}") from exc
        last: Exception | None = None
        for _, address in addresses:
            try:
                return await self.inner.connect_tcp(address, port, timeout, local_address, socket_options)
            except (httpcore.ConnectError, httpcore.ConnectTimeout) as exc:
                last = exc
        assert last is not None
        raise last

    async def connect_unix_socket(
        self,
        path: str,
        timeout: float | None = None,  # noqa: ASYNC109 (httpcore's interface)
        socket_options: Iterable[Any] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        raise UnsafeURL("unix sockets are not outbound URLs")

    async def sleep(self, seconds: float) -> None:
        await self.inner.sleep(seconds)


def _aiohttp_session(policy: OutboundPolicy, limits: httpx.Limits, ssl_context: ssl.SSLContext) -> Any:
    import aiohttp
    from aiohttp.abc import AbstractResolver, ResolveResult

    class GuardedResolver(AbstractResolver):
        async def resolve(self, host: str, port: int = 0, family: int = socket.AF_INET) -> list[ResolveResult]:
            flags = socket.AI_NUMERICHOST | socket.AI_NUMERICSERV
            return [
                ResolveResult(hostname=host, host=address, port=port, family=found, proto=0, flags=flags)
                for found, address in await policy.resolve(host, port)
                if family in (socket.AF_UNSPEC, found)
            ]

        async def close(self) -> None:
            return None

    def make() -> aiohttp.ClientSession:
        connector = aiohttp.TCPConnector(
            keepalive_timeout=limits.keepalive_expiry,
            ssl=ssl_context,
            limit=limits.max_connections or 0,
            resolver=GuardedResolver(),
        )
        # No cookie jar: the session serves every tenant (see `_no_cookies`).
        return aiohttp.ClientSession(connector=connector, cookie_jar=aiohttp.DummyCookieJar())

    return make


def _no_cookies() -> CookieJar:
    """A jar that refuses every cookie.

    The shared client serves every tenant: a cookie one tenant's provider
    call received (a load balancer's affinity, a session) would otherwise go
    out with the next tenant's call to the same host. Providers' APIs here
    authenticate each request by its headers; none needs a cookie back.
    """
    return CookieJar(policy=DefaultCookiePolicy(allowed_domains=[]))


def create_http_client(settings: Settings | None = None, policy: OutboundPolicy | None = None) -> httpx.AsyncClient:
    settings = settings or Settings()
    policy = policy or OutboundPolicy.from_settings(settings)
    limits = httpx.Limits(
        max_connections=settings.http_max_connections,
        max_keepalive_connections=settings.http_max_connections,
        keepalive_expiry=30.0,
    )
    timeout = httpx.Timeout(settings.http_timeout, connect=5.0)
    transport: httpx.AsyncBaseTransport
    if settings.http_transport == "aiohttp":
        from httpx_aiohttp import AiohttpTransport

        ssl_context = httpx.create_ssl_context(trust_env=False)
        transport = AiohttpTransport(
            limits=limits, trust_env=False, client=_aiohttp_session(policy, limits, ssl_context)
        )
    else:
        transport = httpx.AsyncHTTPTransport(limits=limits, trust_env=False)
        # httpx has no public way to give its pool a network backend: the
        # pool is rebuilt with the same limits and the guarded backend.
        transport._pool = httpcore.AsyncConnectionPool(
            ssl_context=httpx.create_ssl_context(trust_env=False),
            max_connections=limits.max_connections,
            max_keepalive_connections=limits.max_keepalive_connections,
            keepalive_expiry=limits.keepalive_expiry,
            network_backend=_GuardedBackend(policy),
        )
    return httpx.AsyncClient(
        transport=GuardedTransport(transport, policy),
        timeout=timeout,
        headers={"user-agent": USER_AGENT},
        trust_env=False,
        follow_redirects=False,
        cookies=_no_cookies(),
    )


# --- calling provider APIs -------------------------------------------------

RETRYABLE_STATUS = frozenset({408, 425, 429, 500, 502, 503, 504})
# Answers that prove the provider did not act on the request: it was refused
# before being processed (rate limited, "too early"). Every other retryable
# failure may come after the provider acted on it.
NOT_PROCESSED_STATUS = frozenset({425, 429})


@dataclass(frozen=True)
class RetryPolicy:
    """Bounded exponential backoff with full jitter; honours Retry-After up to `cap`.

    `idempotent=False` is for a call that changes something at the provider
    (a bot turn, a send): a failure after which the provider may have acted
    (a 5xx, a read timeout, a dropped connection) is then raised at once with
    `outcome_unknown=True` instead of being repeated. Only failures that
    prove the request was not processed (no connection made, 425, 429) are
    retried.
    """

    attempts: int = 3
    base: float = 0.25
    cap: float = 8.0
    idempotent: bool = True
    # A provider's own "refused, try again" statuses, e.g. Lex's 409
    # ConflictException (another call on the session is in progress).
    not_processed: frozenset[int] = frozenset()

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


def never_sent(exc: httpx.HTTPError) -> bool:
    """Whether a transport failure happened before any byte of the request left.

    The aiohttp transport maps every aiohttp connection error, a refused
    connection and a server closing it mid-answer alike, to
    `ConnectTimeout`; only the aiohttp error it wraps tells them apart
    (`ClientConnectorError`: refused, DNS, TLS set-up).
    """
    cause = exc.__cause__
    if cause is not None and type(cause).__module__.startswith("aiohttp"):
        from aiohttp import ClientConnectorError

        return isinstance(cause, ClientConnectorError)
    return isinstance(exc, httpx.ConnectError | httpx.PoolTimeout)


DEBUG_BODY_LIMIT = 65536  # the debug log gets the whole body of any sane error answer
_CODE_KEYS = ("error_code", "errorCode", "code", "status", "__type", "type")
_TEXT_KEYS = ("error_description", "message", "Message", "description", "detail", "title")


def _first_text(data: dict[str, Any], keys: tuple[str, ...]) -> str | None:
    """The first non-empty string under `keys`, else the first integer (Google's `code` repeats the status)."""
    texts = [v for k in keys if isinstance(v := data.get(k), str) and v.strip()]
    numbers = [str(v) for k in keys if isinstance(v := data.get(k), int) and not isinstance(v, bool)]
    found = texts or numbers
    return found[0] if found else None


def provider_detail(response: httpx.Response) -> tuple[str | None, str]:
    """(error code, description) of a provider's error answer, bounded for tenants.

    Read from the usual JSON shapes (`{"error": {"code", "message"}}`,
    OAuth's `error`/`error_description`, `{"code", "message"}`) and AWS's
    error-type header; a text/plain body is its own description; anything
    else (an HTML error page, a proxy's answer) gives none.
    """
    code = response.headers.get("x-amzn-errortype", "").split(":", 1)[0].strip() or None
    text: str | None = None
    try:
        body = response.json() if response.content else None
    except (ValueError, RecursionError):
        body = None
        if response.headers.get("content-type", "").startswith("text/plain"):
            text = response.text[:DEBUG_BODY_LIMIT]
    if isinstance(body, dict):
        error = body.get("error")
        for source in (error, body) if isinstance(error, dict) else (body,):
            code = code or _first_text(source, _CODE_KEYS)
            text = text or _first_text(source, _TEXT_KEYS)
        if isinstance(error, str):
            code = code or error
    if code is not None:
        code = tenant_text(code.rsplit("#", 1)[-1], 64)
    return code or None, tenant_text(text or "")


def error_for(
    response: httpx.Response,
    what: str,
    *,
    error: type[ProviderError] = ProviderError,
    credentials_error: type[ProviderError] = CredentialsInvalid,
) -> ProviderError:
    """The error a failed provider response stands for (never echoes secrets).

    401/403 → `credentials_error`; 408/429/5xx → retryable `error`; other
    4xx → non-retryable `error`. A retryable answer other than 425/429 is
    `outcome_unknown`: the provider may have acted before failing. Of the
    body only the provider's error code and a bounded one-line description
    are kept (a tenant reads them); the body itself goes to the debug log.
    """
    status = response.status_code
    code, description = provider_detail(response)
    if response.content:
        logger.debug("%s answered %s: %s", what, status, response.text[:DEBUG_BODY_LIMIT])
    message = f"{what} answered {status}" + (f" ({code})" if code else "") + (f": {description}" if description else "")
    if status in (401, 403):
        return credentials_error(message, status_code=status, provider_code=code)
    retryable = status in RETRYABLE_STATUS
    return error(
        message,
        status_code=status,
        provider_code=code,
        retryable=retryable,
        retry_after=retry_after_seconds(response),
        outcome_unknown=retryable and status not in NOT_PROCESSED_STATUS,
    )


def _chain(exc: BaseException) -> list[BaseException]:
    found: list[BaseException] = []
    link: BaseException | None = exc
    while link is not None and link not in found:
        found.append(link)
        link = link.__cause__ or link.__context__
    return found


# aiohttp's errors by name: the aiohttp transport is optional (BOTBRIDGE_HTTP_TRANSPORT=httpx)
_TLS_ERRORS = ("ClientConnectorCertificateError", "ClientConnectorSSLError", "ClientSSLError")


def describe_failure(exc: BaseException) -> str:
    """What went wrong on the wire, in the words an operator acts on.

    Both transports wrap the real cause (the aiohttp one reports even a DNS
    failure as a `ConnectTimeout`): the chain of causes says what it was.
    """
    chain = _chain(exc)
    for link in chain:
        name = type(link).__name__
        if isinstance(link, socket.gaierror) or name == "ClientConnectorDNSError" or "DNS lookup" in str(link):
            return "DNS lookup failed"
        if isinstance(link, ConnectionRefusedError):
            return "connection refused"
        if isinstance(link, ssl.SSLError) or name in _TLS_ERRORS:
            return "TLS handshake failed"
        if isinstance(link, ConnectionResetError):
            return "connection reset"
        if name == "ServerDisconnectedError" or isinstance(link, httpx.RemoteProtocolError):
            return "the server closed the connection"
    if isinstance(exc, httpx.ConnectTimeout):
        return "connecting timed out"
    if isinstance(exc, httpx.ReadTimeout):
        return "timed out waiting for the answer"
    if isinstance(exc, httpx.WriteTimeout):
        return "timed out sending the request"
    if isinstance(exc, httpx.PoolTimeout):
        return "timed out waiting for a free connection"
    if isinstance(exc, httpx.TimeoutException):
        return "timed out"
    return f"transport error ({type(exc).__name__})"


def transport_error(exc: httpx.HTTPError, what: str, *, error: type[ProviderError] = ProviderError) -> ProviderError:
    """The error a timeout or transport failure stands for; `outcome_unknown` unless nothing was sent."""
    message = f"{what} failed: {describe_failure(exc)}"
    failure = error(message, retryable=True, outcome_unknown=not never_sent(exc))
    failure.__cause__ = exc
    return failure


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

    Transport errors and timeouts count as retryable failures. A call that is
    not idempotent is never repeated after a failure whose outcome is
    unknown: that error is raised at once. Raises the mapped `ProviderError`
    after the last attempt.
    """
    last: ProviderError | None = None
    for attempt in range(policy.attempts):
        if attempt and last is not None:
            await clock.sleep(policy.delay(attempt - 1, last.retry_after))
        try:
            response = await send()
        except OutboundRefused as exc:
            # the same URL will be refused again: a person must change it
            raise error(f"{what} not called: {exc}", retryable=False) from exc
        except (httpx.TimeoutException, httpx.TransportError) as exc:
            last = transport_error(exc, what, error=error)
        else:
            if response.is_success:
                return response
            last = error_for(response, what, error=error, credentials_error=credentials_error)
            if response.status_code in policy.not_processed:
                last.retryable, last.outcome_unknown = True, False
        if not last.retryable or (last.outcome_unknown and not policy.idempotent):
            raise last
    assert last is not None
    raise last
