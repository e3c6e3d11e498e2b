"""Helpers for tests that need a real PostgreSQL: find it once, give each test its own schema, drop it.

The server is `BOTBRIDGE_TEST_POSTGRES_URL` (default
`postgresql://postgres@127.0.0.1:5432/test`). Tests never touch another
schema: each one works in `bbtest_<uuid>` and drops exactly that afterwards.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import os
import socket
import threading
import uuid
from urllib.parse import urlsplit, urlunsplit

import asyncpg

DEFAULT_TEST_URL = "postgresql://postgres@127.0.0.1:5432/test"


def postgres_test_url() -> str:
    return os.environ.get("BOTBRIDGE_TEST_POSTGRES_URL", DEFAULT_TEST_URL)


async def _run(url: str, sql: str, *args: object) -> object:
    conn = await asyncpg.connect(url, timeout=2.0)
    try:
        return await conn.fetchval(sql, *args)
    finally:
        await conn.close()


def run_sql(url: str, sql: str, *args: object) -> object:
    """One statement on a connection of its own (from synchronous fixtures)."""
    return asyncio.run(_run(url, sql, *args))


@functools.cache
def unavailable_reason(url: str) -> str | None:
    """None when a PostgreSQL answers at `url`, else why not (asked once per process)."""
    try:
        run_sql(url, "SELECT 1")
    except (OSError, TimeoutError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
        return (
            f"no PostgreSQL answers at {url} ({type(exc).__name__}); set BOTBRIDGE_TEST_POSTGRES_URL to run these tests"
        )
    return None


def unique_schema() -> str:
    return f"bbtest_{uuid.uuid4().hex}"


def store_url(url: str, schema: str) -> str:
    separator = "&" if "?" in url else "?"
    return f"{url}{separator}schema={schema}"


def drop_schema(url: str, schema: str) -> None:
    run_sql(url, f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')


async def terminate_sessions(url: str, application_name: str) -> int:
    """End the server sessions of one store instance (what a network cut or a failover does to it)."""
    conn = await asyncpg.connect(url, timeout=2.0)
    try:
        return int(
            await conn.fetchval(
                "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity WHERE application_name = $1",
                application_name,
            )
        )
    finally:
        await conn.close()


class CuttableProxy:
    """A TCP proxy of a test's own in front of the PostgreSQL: stop it to make the server unreachable.

    Stopping closes the listening socket and aborts every connection through
    it, as a network cut does; starting listens on the same port again. The
    shared server itself is never touched. Runs its own event loop in a
    thread, so it keeps serving while the test blocks (e.g. starting a host).
    """

    def __init__(self, url: str) -> None:
        parts = urlsplit(url)
        self.target = (parts.hostname or "127.0.0.1", parts.port or 5432)
        self._parts = parts
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            self.port: int = sock.getsockname()[1]
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="cuttable-proxy", daemon=True)
        self._thread.start()
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()

    @property
    def url(self) -> str:
        """The URL of the server, through the proxy."""
        netloc = self._parts.netloc.rsplit("@", 1)
        host = f"127.0.0.1:{self.port}"
        return urlunsplit(self._parts._replace(netloc=f"{netloc[0]}@{host}" if len(netloc) == 2 else host))

    def _call(self, coro: object) -> None:
        asyncio.run_coroutine_threadsafe(coro, self._loop).result(timeout=10)  # type: ignore[arg-type]

    async def _pipe(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(OSError, asyncio.CancelledError):
            while data := await reader.read(65536):
                writer.write(data)
                await writer.drain()
        writer.close()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            up_reader, up_writer = await asyncio.open_connection(*self.target)
        except OSError:
            writer.close()
            return
        self._writers |= {writer, up_writer}
        try:
            await asyncio.gather(self._pipe(reader, up_writer), self._pipe(up_reader, writer))
        finally:
            self._writers -= {writer, up_writer}

    async def _start(self) -> None:
        self._server = await asyncio.start_server(self._handle, "127.0.0.1", self.port, reuse_address=True)

    async def _stop(self) -> None:
        if self._server is not None:
            self._server.close()
            self._server = None
        for writer in list(self._writers):
            writer.transport.abort()
        self._writers.clear()

    def start(self) -> None:
        self._call(self._start())

    def stop(self) -> None:
        self._call(self._stop())

    def close(self) -> None:
        self.stop()
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=10)
        self._loop.close()
