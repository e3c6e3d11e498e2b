"""The store fails while jobs are in flight, then comes back: every accepted MO is answered, no worker ends.

Redis is an instance of the test's own (stopped and started again); SQLite
gets a database locked by another connection, and a full disk (simulated
where the driver raises: every write fails as SQLITE_FULL does). The host is not restarted in between.
"""

from __future__ import annotations

import asyncio
import json
import sqlite3
import time
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager, closing
from pathlib import Path
from typing import Any

import anyio
import httpx
import pytest

from botbridge import BotBackend, BotSession, Channel, InboundMessage, Reply, SenderContext, SendResult, hookimpl
from botbridge.channel import WebhookRequest, WebhookResult
from botbridge.clock import SystemClock
from botbridge.host import create_app
from botbridge.models import OutboundMessage
from botbridge.plugins import Plugins
from botbridge.settings import Settings
from botbridge.stores import memory, sqlite
from botbridge.testing import api_client

pytestmark = pytest.mark.anyio
KEY = "store-faults-key-1"
MOS = 24


class PlainChannel(Channel):
    """Webhooks are `{"id", "from", "text"}`; sends land in `outbox`."""

    name = "plain"
    outbox: list[str]

    def __init__(self, *args: Any) -> None:
        super().__init__(*args)
        self.outbox = []

    async def parse_webhook(self, request: WebhookRequest, sender: SenderContext) -> WebhookResult:
        data = request.json_object()
        message = InboundMessage(
            channel=self.name,
            sender_id=sender.id,
            provider_message_id=data["id"],
            contact=data["from"],
            text=data["text"],
        )
        return WebhookResult(messages=[message])

    async def send(self, sender: SenderContext, message: OutboundMessage) -> SendResult:
        self.outbox.append(message.text)
        return SendResult(provider_message_id="p-" + message.id)


class SlowEcho(BotBackend):
    """Takes a moment per turn, so turns are in flight when the store goes away."""

    type = "SLOW_ECHO"

    def validate_credentials(self, credentials: str, config: dict[str, Any]) -> None:
        pass

    async def send(self, session: BotSession, message: InboundMessage) -> list[Reply]:
        await asyncio.sleep(0.03)
        return [Reply(text=f"echo: {message.text}")]


class Plugin:
    @hookimpl
    def register_channels(self, register):  # type: ignore[no-untyped-def]
        register(PlainChannel)

    @hookimpl
    def register_bot_backends(self, register):  # type: ignore[no-untyped-def]
        register(SlowEcho)


@asynccontextmanager
async def host(store_url: str, *extra_plugins: tuple[Any, str]) -> AsyncIterator[tuple[Any, httpx.AsyncClient, str]]:
    plugins = Plugins()
    plugins.add(memory, "memory", builtin=True)
    plugins.add(sqlite, "sqlite", builtin=True)
    for module, name in extra_plugins:
        plugins.add(module, name)
    plugins.add(Plugin(), "faults")
    plugins.collect()
    settings = Settings(store=store_url, api_keys=f"acct:{KEY}", secret_key="store-faults-secret-0001", workers=4)
    app = create_app(settings, plugins=plugins, clock=SystemClock())
    engine = app.state.runtime.engine
    engine.settings.poll_interval, engine.settings.store_backoff, engine.settings.store_backoff_cap = 0.02, 0.02, 0.2
    async with api_client(app, KEY) as client:
        sender = await client.post("/v1/senders", json={"channel": "plain", "address": "+1555", "webhook_secret": "s"})
        assert sender.status_code == 201, sender.text
        connector = {"type": "SLOW_ECHO", "sender_id": sender.json()["id"], "credentials": "x"}
        assert (await client.post("/v1/connectors", json=connector)).status_code == 201
        yield app.state.runtime, client, f"/v1/webhooks/plain/{sender.json()['id']}"


async def until(condition: Callable[[], bool], what: str, within: float) -> None:
    deadline = time.monotonic() + within
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await anyio.sleep(0.02)


async def survive(store_url: str, outage: Callable[[Any], Any], *extra_plugins: tuple[Any, str]) -> None:
    async with host(store_url, *extra_plugins) as (rt, client, path):
        workers = list(rt.engine._tasks)
        channel = rt.channel("plain")
        for i in range(MOS):
            body = json.dumps({"id": f"mo-{i}", "from": f"+1555010{i:02d}", "text": f"turn {i}"})
            response = await client.post(path, content=body, headers={"content-type": "application/json"})
            assert response.status_code == 200 and response.json()["accepted"] == 1
        await until(lambda: len(channel.outbox) >= 1, "the first reply", 10)
        assert len(set(channel.outbox)) < MOS, "every MO was answered before the outage began"
        await outage(rt)
        assert len(set(channel.outbox)) < MOS, "the outage ended with nothing left to do"
        await until(lambda: len(set(channel.outbox)) == MOS, "every accepted MO answered", 60)
        assert set(channel.outbox) == {f"echo: turn {i}" for i in range(MOS)}
        assert rt.engine.store_waits.failures == 0 and rt.engine.store_waits.failing_since is None
        assert all(not task.done() for task in workers) and rt.engine._tasks == workers
        assert rt.engine.workers_restarted == 0
        assert (await client.get("/readyz")).status_code == 200


# --- Redis ----------------------------------------------------------------

redis_testing = pytest.importorskip("botbridge_redis.testing", reason="botbridge-redis is not installed")


@pytest.fixture
def own_redis(tmp_path: Path) -> Iterator[Any]:
    if not redis_testing.OwnRedis.available():
        pytest.skip("no redis-server binary to start an instance of the test's own")
    server = redis_testing.OwnRedis(tmp_path)
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.mark.redis
async def test_redis_stopped_with_jobs_in_flight_and_started_again(own_redis: Any) -> None:
    import botbridge_redis.plugin

    async def outage(rt: Any) -> None:
        await anyio.to_thread.run_sync(own_redis.stop)
        await anyio.sleep(1.0)
        await anyio.to_thread.run_sync(own_redis.start)

    await survive(redis_testing.store_url(own_redis.url, "faults:"), outage, (botbridge_redis.plugin, "redis"))


# --- SQLite ---------------------------------------------------------------


async def locked(rt: Any, path: Path) -> None:
    store = rt.store
    # Give up on a lock at once rather than after five seconds, so the lock is an error.
    await store._run(store._write, "PRAGMA busy_timeout=10")
    with closing(sqlite3.connect(path, isolation_level=None)) as other:
        other.execute("BEGIN EXCLUSIVE")
        await anyio.sleep(1.0)
        other.execute("COMMIT")
    await store._run(store._write, "PRAGMA busy_timeout=5000")


class FullDisk:
    """The store's connection on a full disk: reads work, every write fails as SQLITE_FULL does."""

    READS = ("SELECT", "BEGIN", "ROLLBACK", "PRAGMA")

    def __init__(self, db: sqlite3.Connection) -> None:
        self.db = db

    def _check(self, sql: str) -> None:
        if not sql.lstrip().upper().startswith(self.READS):
            raise sqlite3.OperationalError("database or disk is full")

    def execute(self, sql: str, *args: Any) -> sqlite3.Cursor:
        self._check(sql)
        return self.db.execute(sql, *args)

    def executemany(self, sql: str, *args: Any) -> sqlite3.Cursor:
        self._check(sql)
        return self.db.executemany(sql, *args)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.db, name)


async def disk_full(rt: Any, path: Path) -> None:
    store = rt.store
    real = store._db
    store._db = FullDisk(real)
    await anyio.sleep(1.0)
    store._db = real


@pytest.mark.parametrize("fault", [locked, disk_full], ids=["locked", "disk-full"])
async def test_sqlite_errors_with_jobs_in_flight(tmp_path: Path, fault: Callable[[Any, Path], Any]) -> None:
    path = tmp_path / "faults.db"
    await survive(f"sqlite:///{path}", lambda rt: fault(rt, path))
