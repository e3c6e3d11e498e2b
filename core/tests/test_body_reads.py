"""Body reads are bounded in time as well as size; a client that leaves is not an error."""

from __future__ import annotations

import asyncio
import logging
import socket
import time
from typing import Any

import pytest

from botbridge.clock import FakeClock
from botbridge.host import create_app
from botbridge.loopback import serve_app
from botbridge.settings import Settings
from botbridge.testing import running

from .conftest import KEY_A, make_plugins

pytestmark = pytest.mark.anyio
TIMEOUT = 0.3


def make_app() -> Any:
    settings = Settings(
        store="memory://",
        api_keys=f"acct-a:{KEY_A}",  # type: ignore[arg-type]
        secret_key="test-secret-key-0123456789",  # type: ignore[arg-type]
        body_timeout=TIMEOUT,
    )
    return create_app(settings, plugins=make_plugins(), clock=FakeClock())


async def call(app: Any, messages: list[dict[str, Any]], *, then_hang: bool) -> list[dict[str, Any]]:
    """One POST /v1/senders straight through ASGI, the body arriving as `messages`."""
    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "POST",
        "scheme": "http",
        "path": "/v1/senders",
        "raw_path": b"/v1/senders",
        "query_string": b"",
        "headers": [
            (b"host", b"botbridge.test"),
            (b"content-type", b"application/json"),
            (b"content-length", b"100"),
            (b"authorization", f"Bearer {KEY_A}".encode()),
        ],
        "client": ("127.0.0.1", 5000),
        "server": ("botbridge.test", 80),
    }
    pending = list(messages)
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        if pending:
            return pending.pop(0)
        if then_hang:
            await asyncio.Event().wait()
        return {"type": "http.disconnect"}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    await app(scope, receive, send)
    return sent


async def test_a_body_that_stops_arriving_is_answered_408_within_the_timeout() -> None:
    app = make_app()
    async with running(app):
        started = time.monotonic()
        sent = await asyncio.wait_for(
            call(app, [{"type": "http.request", "body": b"{}", "more_body": True}], then_hang=True), 5
        )
        assert time.monotonic() - started < TIMEOUT + 1
    assert sent[0]["status"] == 408
    assert b"request_timeout" in sent[1]["body"]
    assert "botbridge_body_timeouts_total 1.0" in app.state.runtime.metrics.render({}).decode()


async def test_a_client_that_disconnects_mid_body_is_counted_and_logged_in_one_short_line(
    caplog: pytest.LogCaptureFixture,
) -> None:
    app = make_app()
    async with running(app):
        with caplog.at_level(logging.DEBUG):
            for _ in range(3):
                await call(app, [{"type": "http.request", "body": b"{", "more_body": True}], then_hang=False)
    assert [r.levelno for r in caplog.records if "disconnect" in r.getMessage().lower()] == [logging.INFO] * 3
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING or r.exc_info]
    assert "botbridge_client_disconnects_total 3.0" in app.state.runtime.metrics.render({}).decode()


def raw_request(url: str, head: bytes, body: bytes, *, read: bool) -> bytes:
    host, port = url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=5) as sock:
        sock.sendall(head + body)
        if not read:
            return b""
        sock.settimeout(TIMEOUT + 3)
        return sock.recv(4096)


HEAD = (
    b"POST /v1/senders HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
    b"Authorization: Bearer " + KEY_A.encode() + b"\r\nContent-Length: 100\r\n\r\n"
)


async def test_under_uvicorn_a_short_body_gets_408_and_a_disconnect_no_traceback(
    caplog: pytest.LogCaptureFixture,
) -> None:
    with caplog.at_level(logging.INFO), serve_app(make_app(), lifespan="on") as url:
        started = time.monotonic()
        answer = await asyncio.to_thread(raw_request, url, HEAD, b"{}", read=True)
        assert answer.startswith(b"HTTP/1.1 408"), answer
        assert time.monotonic() - started < TIMEOUT + 2
        await asyncio.to_thread(raw_request, url, HEAD, b"{", read=False)  # and gone
        await asyncio.sleep(0.3)
    messages = [r.getMessage() for r in caplog.records]
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR or r.exc_info], messages
    assert sum("client disconnected" in m for m in messages) == 1, messages
