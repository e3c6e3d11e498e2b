"""Serve ASGI apps on loopback from a thread (fakes for the demo and end-to-end tests)."""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from collections.abc import Iterator
from typing import Any, Literal

import uvicorn


def free_port() -> int:
    """A loopback port free now (another process may take it before you bind it: prefer `listening_socket`)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def listening_socket() -> socket.socket:
    """A socket bound to a free loopback port and kept: nothing else can take the port before it serves."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    return sock


@contextlib.contextmanager
def serve_app(
    app: Any,
    *,
    port: int | None = None,
    sock: socket.socket | None = None,
    lifespan: Literal["on", "off"] = "off",
) -> Iterator[str]:
    """Serve `app` on 127.0.0.1 in a background thread; yield its base URL.

    On `sock` (from `listening_socket`, when the URL must be known first), on
    `port`, or by default on a socket of its own bound before it serves.
    """
    if sock is None and port is None:
        sock = listening_socket()
    if sock is not None:
        port = int(sock.getsockname()[1])
    config = uvicorn.Config(app, host="127.0.0.1", port=port or 0, log_level="warning", lifespan=lifespan)
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]} if sock else {}, daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + 10
        while not server.started:
            if time.monotonic() > deadline or not thread.is_alive():
                raise RuntimeError(f"server on port {port} did not start")
            time.sleep(0.01)
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=10)
        if sock is not None:
            sock.close()
