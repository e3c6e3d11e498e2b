from __future__ import annotations

import logging
import socket
import unicodedata
from typing import Any

import httpx
import pytest
from hypothesis import given
from hypothesis import strategies as st

from botbridge.errors import BotCredentialsInvalid, BotError, CredentialsInvalid, ProviderError, tenant_text
from botbridge.http import OutboundRefused, RetryPolicy, call_with_retry, create_http_client, error_for
from botbridge.outbound import OutboundPolicy
from botbridge.settings import Settings
from botbridge.testing.canary import Canary

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


@pytest.mark.parametrize("transport", ["aiohttp", "httpx"])
async def test_the_shared_client_keeps_no_cookie_a_provider_set_for_the_next_tenants_call(transport: str) -> None:
    # One client serves every tenant: a cookie one tenant's provider call
    # received (a load balancer's affinity, a session) must not ride along on
    # another tenant's call to the same host.
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import JSONResponse
    from starlette.routing import Route

    from botbridge.loopback import serve_app

    async def endpoint(request: Request) -> JSONResponse:
        response = JSONResponse({"cookie": request.headers.get("cookie")})
        response.set_cookie("ARRAffinity", "tenant-a-session", path="/")
        return response

    client = create_http_client(Settings(http_transport=transport))  # type: ignore[arg-type]
    try:
        with serve_app(Starlette(routes=[Route("/", endpoint, methods=["POST"])])) as url:
            first = await client.post(url + "/", headers={"authorization": "Bearer tenant-a"})
            assert first.headers["set-cookie"].startswith("ARRAffinity=")
            second = await client.post(url + "/", headers={"authorization": "Bearer tenant-b"})
            assert second.json() == {"cookie": None}
            assert not client.cookies
    finally:
        await client.aclose()


# --- calls that are not idempotent -------------------------------------------

ONCE = RetryPolicy(attempts=3, base=0.0, idempotent=False)


@pytest.mark.parametrize("status", [500, 502, 503, 504, 408])
async def test_a_call_that_is_not_idempotent_is_not_repeated_after_an_ambiguous_answer(status: int) -> None:
    client, calls = scripted(status, 200)
    with pytest.raises(ProviderError) as caught:
        await call_with_retry(lambda: client.post("/"), "bot", clock=RecordingClock(), policy=ONCE)
    assert len(calls) == 1
    assert caught.value.outcome_unknown and not caught.value.safe_to_retry
    assert caught.value.status_code == status


@pytest.mark.parametrize(
    "failure", [httpx.ReadTimeout("slow"), httpx.WriteTimeout("slow"), httpx.RemoteProtocolError("closed")]
)
async def test_a_failure_after_sending_leaves_the_outcome_unknown(failure: Exception) -> None:
    client, calls = scripted(failure, 200)
    with pytest.raises(ProviderError) as caught:
        await call_with_retry(lambda: client.post("/"), "bot", clock=RecordingClock(), policy=ONCE)
    assert len(calls) == 1 and caught.value.outcome_unknown


async def test_failures_that_prove_nothing_was_processed_are_retried_even_when_not_idempotent() -> None:
    client, calls = scripted(429, httpx.ConnectError("refused"), 425, 200)
    policy = RetryPolicy(attempts=4, base=0.0, idempotent=False)
    response = await call_with_retry(lambda: client.post("/"), "bot", clock=RecordingClock(), policy=policy)
    assert response.status_code == 200 and len(calls) == 4


async def test_idempotent_calls_are_still_retried_after_ambiguous_failures() -> None:
    client, calls = scripted(502, httpx.ReadTimeout("slow"), 200)
    await call_with_retry(lambda: client.get("/"), "bot", clock=RecordingClock(), policy=RetryPolicy(base=0.0))
    assert len(calls) == 3


def test_only_retryable_failures_can_be_safe_to_retry() -> None:
    assert ProviderError("429", retryable=True).safe_to_retry
    assert not ProviderError("400").safe_to_retry
    assert not ProviderError("502", retryable=True, outcome_unknown=True).safe_to_retry


async def _closing_server() -> tuple[Any, int]:
    """A server that reads the request, then closes the connection without answering."""
    import asyncio

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    return server, server.sockets[0].getsockname()[1]


@pytest.mark.parametrize("transport", ["aiohttp", "httpx"])
async def test_the_shared_client_tells_a_refused_connection_from_a_dropped_one(transport: str) -> None:
    import socket

    client = create_http_client(Settings(http_transport=transport))  # type: ignore[arg-type]
    with socket.socket() as probe:  # a port nobody listens on
        probe.bind(("127.0.0.1", 0))
        free = probe.getsockname()[1]
    server, port = await _closing_server()
    try:
        with pytest.raises(ProviderError) as refused:
            await call_with_retry(
                lambda: client.post(f"http://127.0.0.1:{free}/"), "bot", clock=RecordingClock(), policy=ONCE
            )
        assert not refused.value.outcome_unknown
        with pytest.raises(ProviderError) as dropped:
            await call_with_retry(
                lambda: client.post(f"http://127.0.0.1:{port}/", content=b"turn"),
                "bot",
                clock=RecordingClock(),
                policy=ONCE,
            )
        assert dropped.value.outcome_unknown
    finally:
        server.close()
        await client.aclose()


# --- the outbound-URL policy inside the shared client ------------------------


def resolving(table: dict[str, list[str]]):  # type: ignore[no-untyped-def]
    """A resolver stub: each name answers its addresses in turn, the last one thereafter."""
    calls: dict[str, int] = {}

    async def resolve(host: str, port: int) -> list[tuple[int, str]]:
        answers = table[host]
        index = min(calls.get(host, 0), len(answers) - 1)
        calls[host] = calls.get(host, 0) + 1
        address = answers[index]
        return [(socket.AF_INET6 if ":" in address else socket.AF_INET, address)]

    return resolve


TRANSPORTS = pytest.mark.parametrize("transport", ["aiohttp", "httpx"])


@TRANSPORTS
@pytest.mark.outbound_policy
async def test_the_shared_client_refuses_private_addresses_without_connecting(transport: str) -> None:
    policy = OutboundPolicy(
        resolver=resolving({"canary.test": ["127.0.0.1"], "localhost": ["::1"], "meta.test": ["169.254.169.254"]})
    )
    async with Canary() as canary:
        client = create_http_client(Settings(http_transport=transport), policy)  # type: ignore[arg-type]
        urls = [
            f"http://127.0.0.1:{canary.port}/",
            f"http://localhost:{canary.port}/",
            f"http://canary.test:{canary.port}/",
            "http://meta.test/latest/meta-data/",
            f"http://[::ffff:127.0.0.1]:{canary.port}/",
            f"http://[::7f00:1]:{canary.port}/",
            f"http://user:pw@example.com:{canary.port}/",
            f"http://[::1]:{canary.port}/",
        ]
        try:
            for url in urls:
                with pytest.raises(OutboundRefused):
                    await client.get(url)
        finally:
            await client.aclose()
        assert canary.hits == 0


@TRANSPORTS
@pytest.mark.outbound_policy
async def test_a_name_that_rebinds_to_loopback_after_the_check_is_refused_at_connect(transport: str) -> None:
    policy = OutboundPolicy(resolver=resolving({"rebind.test": ["93.184.215.14", "127.0.0.1"]}))
    async with Canary() as canary:
        url = f"http://rebind.test:{canary.port}/"
        await policy.check_url(url)  # what a create-time check saw: a public address
        client = create_http_client(Settings(http_transport=transport), policy)  # type: ignore[arg-type]
        try:
            with pytest.raises(OutboundRefused):
                await client.get(url)
        finally:
            await client.aclose()
        assert canary.hits == 0


@TRANSPORTS
@pytest.mark.outbound_policy
async def test_the_allow_list_lets_named_hosts_and_networks_through(transport: str) -> None:
    settings = Settings(http_transport=transport, outbound_allow="127.0.0.1/32,fake.local")  # type: ignore[arg-type]
    policy = OutboundPolicy.from_settings(settings, resolving({"fake.local": ["127.0.0.1"]}))
    async with Canary() as canary:
        client = create_http_client(settings, policy)
        try:
            assert (await client.get(f"http://127.0.0.1:{canary.port}/")).status_code == 200
            assert (await client.get(f"http://fake.local:{canary.port}/")).status_code == 200
            if canary.has_ipv6:
                with pytest.raises(OutboundRefused):
                    await client.get(f"http://[::1]:{canary.port}/")
        finally:
            await client.aclose()
        assert canary.hits == 2


@pytest.mark.outbound_policy
def test_the_old_webhook_setting_still_lifts_the_policy(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BOTBRIDGE_ALLOW_PRIVATE_WEBHOOK_URLS", "true")
    assert OutboundPolicy.from_settings(Settings()).allow_private
    monkeypatch.delenv("BOTBRIDGE_ALLOW_PRIVATE_WEBHOOK_URLS")
    assert not OutboundPolicy.from_settings(Settings()).allow_private
    monkeypatch.setenv("BOTBRIDGE_ALLOW_PRIVATE_URLS", "1")
    assert OutboundPolicy.from_settings(Settings()).allow_private


@pytest.mark.outbound_policy
def test_a_bad_allow_list_stops_the_host_at_start() -> None:
    with pytest.raises(ValueError, match="BOTBRIDGE_OUTBOUND_ALLOW"):
        Settings(outbound_allow="10.0.0.0/99")


async def test_a_refused_url_is_not_retried() -> None:
    client, calls = scripted(OutboundRefused("refused 127.0.0.1"), 200)
    with pytest.raises(ProviderError, match="not called") as caught:
        await call_with_retry(lambda: client.get("/"), "bot", clock=RecordingClock())
    assert not caught.value.retryable and len(calls) == 1


# --- what a tenant sees of a provider's error answer --------------------------


def answered(status: int, **kwargs: Any) -> httpx.Response:
    return httpx.Response(status, request=httpx.Request("POST", "https://provider.test/x"), **kwargs)


@pytest.mark.parametrize(
    ("response", "message"),
    [
        (
            answered(400, json={"error_code": "INVALID_MSISDN", "message": "bad\nnumber"}),
            "P answered 400 (INVALID_MSISDN): bad number",
        ),
        (
            answered(400, json={"error": {"code": 400, "message": "Agent has no fr", "status": "INVALID_ARGUMENT"}}),
            "P answered 400 (INVALID_ARGUMENT): Agent has no fr",
        ),
        (
            answered(400, json={"error": "invalid_grant", "error_description": "Bad JWT"}),
            "P answered 400 (invalid_grant): Bad JWT",
        ),
        (answered(404, text="no such route", headers={"content-type": "text/plain"}), "P answered 404: no such route"),
        (answered(502, html="<html><body>INTERNAL-ONLY-DATA</body></html>"), "P answered 502"),
        (answered(400, json=["INTERNAL-ONLY-DATA"]), "P answered 400"),
        (
            answered(400, json={"message": "m"}, headers={"x-amzn-errortype": "ValidationException:http://x"}),
            "P answered 400 (ValidationException): m",
        ),
    ],
)
def test_error_for_keeps_the_code_and_a_short_description(response: httpx.Response, message: str) -> None:
    assert str(error_for(response, "P")) == message


def test_error_for_bounds_the_description_and_logs_the_body_for_the_operator(caplog: pytest.LogCaptureFixture) -> None:
    body = "first\r\n\x1b[2J" + "y" * 5000 + "INTERNAL-ONLY-DATA"
    with caplog.at_level(logging.DEBUG, logger="botbridge.provider"):
        error = error_for(answered(400, json={"code": "E1", "message": body}), "SCG message_requests")
    text = str(error)
    assert error.provider_code == "E1" and error.status_code == 400
    assert text.startswith("SCG message_requests answered 400 (E1): first [2Jyyy")
    assert len(text) < 300 and "INTERNAL-ONLY-DATA" not in text and "\x1b" not in text
    assert any("INTERNAL-ONLY-DATA" in r.getMessage() for r in caplog.records if r.levelno == logging.DEBUG)


@given(st.text(), st.integers(min_value=1, max_value=400))
def test_tenant_text_is_one_bounded_line_without_control_characters(text: str, limit: int) -> None:
    line = tenant_text(text, limit)
    assert len(line) <= limit
    assert not any(unicodedata.category(c)[0] == "C" for c in line)
    assert line == line.strip() and "  " not in line
    if len(" ".join(text.split())) <= limit and text.isprintable():
        assert line == " ".join(text.split())


@TRANSPORTS
@pytest.mark.outbound_policy
async def test_a_redirect_a_plugin_follows_is_checked_at_each_hop(transport: str) -> None:
    import asyncio

    async with Canary() as canary:

        async def redirect(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            await reader.readuntil(b"\r\n\r\n")
            location = f"http://localhost:{canary.port}/"
            writer.write(f"HTTP/1.1 302 Found\r\nlocation: {location}\r\ncontent-length: 0\r\n\r\n".encode())
            await writer.drain()
            writer.close()

        server = await asyncio.start_server(redirect, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        settings = Settings(http_transport=transport, outbound_allow="redirector.test")  # type: ignore[arg-type]
        names = resolving({"redirector.test": ["127.0.0.1"], "localhost": ["127.0.0.1"]})
        client = create_http_client(settings, OutboundPolicy.from_settings(settings, names))
        try:
            first = await client.get(f"http://redirector.test:{port}/")
            assert first.status_code == 302  # the shared client itself never follows
            with pytest.raises(OutboundRefused):
                await client.get(f"http://redirector.test:{port}/", follow_redirects=True)
        finally:
            await client.aclose()
            server.close()
        assert canary.hits == 0


async def test_a_providers_own_refusals_are_retried_when_declared_not_processed() -> None:
    client, calls = scripted(409, 409, 200)
    policy = RetryPolicy(attempts=3, base=0.0, idempotent=False, not_processed=frozenset({409}))
    await call_with_retry(lambda: client.post("/"), "bot", clock=RecordingClock(), policy=policy)
    assert len(calls) == 3
    client, calls = scripted(409, 200)
    with pytest.raises(ProviderError):  # undeclared, a 409 is final
        await call_with_retry(lambda: client.post("/"), "bot", clock=RecordingClock(), policy=ONCE)
    assert len(calls) == 1


@pytest.mark.parametrize("transport", ["aiohttp", "httpx"])
async def test_transport_failures_say_what_happened(transport: str) -> None:
    """A DNS failure, a refused connection and a failed TLS handshake are told apart (not all 'timed out')."""
    from botbridge.http import describe_failure, never_sent, transport_error

    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    closed_port = listener.getsockname()[1]
    listener.close()  # nothing listens there now
    plain = socket.socket()
    plain.bind(("127.0.0.1", 0))
    plain.listen()
    settings = Settings(store="memory://", allow_private_urls=True, http_transport=transport, http_timeout=3)
    client = create_http_client(settings)
    try:
        cases = {
            f"http://127.0.0.1:{closed_port}/": "connection refused",
            "http://no-such-host.invalid/": "DNS lookup failed",
            f"https://127.0.0.1:{plain.getsockname()[1]}/": "",  # a plain socket that never speaks TLS
        }
        for url, expected in cases.items():
            with pytest.raises(httpx.HTTPError) as caught:
                await client.get(url, timeout=httpx.Timeout(3.0, connect=1.0, read=1.0))
            said = describe_failure(caught.value)
            if expected:
                assert said == expected, (url, said)
                assert never_sent(caught.value), url  # nothing left: safe to retry any call
                assert transport_error(caught.value, "Lex RecognizeText").args[0] == f"Lex RecognizeText failed: {said}"
            else:
                assert said in ("TLS handshake failed", "connecting timed out", "connection reset"), said
    finally:
        plain.close()
        await client.aclose()
