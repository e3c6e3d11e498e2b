"""`sqlite:///path` — one machine, survives restarts (the default store).

aiosqlite keeps the blocking sqlite3 calls off the event loop. WAL mode
lets readers run while a write commits; `synchronous=NORMAL` under WAL loses
no committed transaction on a process crash (only, at worst, on power loss).
"""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from pathlib import Path
from urllib.parse import urlsplit

import aiosqlite

from botbridge.clock import Clock
from botbridge.errors import SenderTaken, StoreUnavailable, VersionConflict
from botbridge.hookspecs import hookimpl
from botbridge.models import Connector, Conversation, EventFailure, Job, OutboundMessage, Sender, Subscription
from botbridge.store import Store

SCHEMA = """
CREATE TABLE IF NOT EXISTS api_keys (key_hash TEXT PRIMARY KEY, account_id TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS senders (
    id TEXT PRIMARY KEY, account_id TEXT NOT NULL, data TEXT NOT NULL);
CREATE INDEX IF NOT EXISTS senders_account ON senders (account_id, id);
CREATE TABLE IF NOT EXISTS connectors (
    id TEXT PRIMARY KEY, account_id TEXT NOT NULL, sender_id TEXT NOT NULL UNIQUE,
    type TEXT NOT NULL, external_id TEXT, version_number INTEGER NOT NULL, data TEXT NOT NULL);
CREATE INDEX IF NOT EXISTS connectors_account ON connectors (account_id, id);
CREATE TABLE IF NOT EXISTS conversations (
    sender_id TEXT NOT NULL, contact TEXT NOT NULL, data TEXT NOT NULL,
    PRIMARY KEY (sender_id, contact));
CREATE TABLE IF NOT EXISTS claims (key TEXT PRIMARY KEY, expires_at REAL NOT NULL);
CREATE TABLE IF NOT EXISTS jobs (
    seq INTEGER PRIMARY KEY AUTOINCREMENT, id TEXT NOT NULL UNIQUE, kind TEXT NOT NULL, key TEXT NOT NULL,
    not_before REAL NOT NULL, lease_until REAL NOT NULL DEFAULT 0, data TEXT NOT NULL);
CREATE INDEX IF NOT EXISTS jobs_key ON jobs (key, seq);
CREATE TABLE IF NOT EXISTS outbound (
    id TEXT PRIMARY KEY, channel TEXT NOT NULL, provider_message_id TEXT, data TEXT NOT NULL);
CREATE UNIQUE INDEX IF NOT EXISTS outbound_provider ON outbound (channel, provider_message_id)
    WHERE provider_message_id IS NOT NULL;
CREATE TABLE IF NOT EXISTS subscriptions (
    id TEXT PRIMARY KEY, account_id TEXT NOT NULL, topic TEXT NOT NULL, data TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS event_failures (
    id TEXT PRIMARY KEY, subscription_id TEXT NOT NULL, data TEXT NOT NULL);
CREATE INDEX IF NOT EXISTS event_failures_subscription ON event_failures (subscription_id, id);
"""

# A job is runnable when due, not leased, and the oldest of its key: that one
# rule serializes a conversation's turns across every worker.
CLAIM = """
UPDATE jobs SET lease_until = ? WHERE seq IN (
    SELECT j.seq FROM jobs j
    WHERE j.kind IN ({kinds}) AND j.not_before <= ? AND j.lease_until <= ?
      AND NOT EXISTS (SELECT 1 FROM jobs k WHERE k.key = j.key AND k.seq < j.seq)
    ORDER BY j.seq LIMIT ?)
RETURNING seq, data
"""


def path_from_url(url: str) -> str:
    """`sqlite:///rel/path`, `sqlite:////abs/path`, `sqlite://:memory:`."""
    parts = urlsplit(url)
    if parts.netloc == ":memory:" or parts.path in ("/:memory:", ""):
        return ":memory:"
    return parts.path[1:] if parts.path.startswith("/") else parts.path


class SQLiteStore(Store):
    def __init__(self, path: str, clock: Clock) -> None:
        self.path = path
        self.clock = clock
        self._db: aiosqlite.Connection | None = None
        # One connection: statements of concurrent callers would land inside
        # each other's transactions, so every write holds this lock.
        self._lock = asyncio.Lock()

    @property
    def db(self) -> aiosqlite.Connection:
        if self._db is None:
            raise StoreUnavailable("store is not open")
        return self._db

    async def open(self) -> None:
        if self.path != ":memory:":
            Path(self.path).parent.mkdir(parents=True, exist_ok=True)
        self._db = await aiosqlite.connect(self.path, isolation_level=None)
        await self._db.execute("PRAGMA journal_mode=WAL")
        await self._db.execute("PRAGMA synchronous=NORMAL")
        await self._db.execute("PRAGMA busy_timeout=5000")
        await self._db.executescript(SCHEMA)

    async def close(self) -> None:
        if self._db is not None:
            await self._db.close()
            self._db = None

    async def ping(self) -> bool:
        try:
            await self.db.execute("SELECT 1")
            return True
        except (sqlite3.Error, StoreUnavailable, ValueError):
            return False

    async def _one(self, sql: str, *args: object) -> sqlite3.Row | None:
        async with self.db.execute(sql, args) as cursor:
            return await cursor.fetchone()

    async def _write(self, sql: str, args: Sequence[object] = ()) -> aiosqlite.Cursor:
        async with self._lock:
            return await self.db.execute(sql, args)

    @asynccontextmanager
    async def _transaction(self) -> AsyncIterator[aiosqlite.Connection]:
        async with self._lock:
            await self.db.execute("BEGIN IMMEDIATE")
            try:
                yield self.db
            except BaseException:
                await self.db.execute("ROLLBACK")
                raise
            await self.db.execute("COMMIT")

    async def _all(self, sql: str, *args: object) -> list[sqlite3.Row]:
        async with self.db.execute(sql, args) as cursor:
            return list(await cursor.fetchall())

    # --- API keys ---
    async def put_api_key(self, key_hash: str, account_id: str) -> None:
        await self._write(
            "INSERT INTO api_keys VALUES (?, ?) ON CONFLICT(key_hash) DO UPDATE SET account_id=excluded.account_id",
            (key_hash, account_id),
        )

    async def account_for_key(self, key_hash: str) -> str | None:
        row = await self._one("SELECT account_id FROM api_keys WHERE key_hash=?", key_hash)
        return row[0] if row else None

    # --- senders ---
    async def create_sender(self, sender: Sender) -> None:
        await self._write(
            "INSERT INTO senders VALUES (?, ?, ?)", (sender.id, sender.account_id, sender.model_dump_json())
        )

    async def get_sender(self, sender_id: str) -> Sender | None:
        row = await self._one("SELECT data FROM senders WHERE id=?", sender_id)
        return Sender.model_validate_json(row[0]) if row else None

    async def list_senders(self, account_id: str, *, limit: int = 50, after: str | None = None) -> list[Sender]:
        rows = await self._all(
            "SELECT data FROM senders WHERE account_id=? AND id>? ORDER BY id LIMIT ?",
            account_id,
            after or "",
            limit,
        )
        return [Sender.model_validate_json(r[0]) for r in rows]

    async def update_sender(self, sender: Sender) -> None:
        await self._write("UPDATE senders SET data=? WHERE id=?", (sender.model_dump_json(), sender.id))

    async def delete_sender(self, sender_id: str) -> bool:
        cursor = await self._write("DELETE FROM senders WHERE id=?", (sender_id,))
        return cursor.rowcount > 0

    # --- connectors ---
    async def create_connector(self, connector: Connector) -> None:
        try:
            await self._write(
                "INSERT INTO connectors VALUES (?, ?, ?, ?, ?, ?, ?)",
                (
                    connector.id,
                    connector.account_id,
                    connector.sender_id,
                    connector.type,
                    connector.external_id,
                    connector.version_number,
                    connector.model_dump_json(),
                ),
            )
        except sqlite3.IntegrityError:
            raise SenderTaken(connector.sender_id) from None

    async def get_connector(self, connector_id: str) -> Connector | None:
        row = await self._one("SELECT data FROM connectors WHERE id=?", connector_id)
        return Connector.model_validate_json(row[0]) if row else None

    async def connector_for_sender(self, sender_id: str) -> Connector | None:
        row = await self._one("SELECT data FROM connectors WHERE sender_id=?", sender_id)
        return Connector.model_validate_json(row[0]) if row else None

    async def list_connectors(
        self,
        account_id: str,
        *,
        type: str | None = None,
        sender_id: str | None = None,
        external_id: str | None = None,
        limit: int = 50,
        after: str | None = None,
    ) -> list[Connector]:
        sql = "SELECT data FROM connectors WHERE account_id=? AND id>?"
        args: list[object] = [account_id, after or ""]
        for column, value in (("type", type), ("sender_id", sender_id), ("external_id", external_id)):
            if value is not None:
                sql += f" AND {column}=?"
                args.append(value)
        rows = await self._all(sql + " ORDER BY id LIMIT ?", *args, limit)
        return [Connector.model_validate_json(r[0]) for r in rows]

    async def update_connector(self, connector: Connector, expected_version: int) -> None:
        try:
            cursor = await self._write(
                "UPDATE connectors SET sender_id=?, type=?, external_id=?, version_number=?, data=? "
                "WHERE id=? AND version_number=?",
                (
                    connector.sender_id,
                    connector.type,
                    connector.external_id,
                    connector.version_number,
                    connector.model_dump_json(),
                    connector.id,
                    expected_version,
                ),
            )
        except sqlite3.IntegrityError:
            raise SenderTaken(connector.sender_id) from None
        if cursor.rowcount == 0:
            raise VersionConflict(connector.id)

    async def delete_connector(self, connector_id: str) -> bool:
        cursor = await self._write("DELETE FROM connectors WHERE id=?", (connector_id,))
        return cursor.rowcount > 0

    # --- conversations ---
    async def get_conversation(self, sender_id: str, contact: str) -> Conversation | None:
        row = await self._one("SELECT data FROM conversations WHERE sender_id=? AND contact=?", sender_id, contact)
        return Conversation.model_validate_json(row[0]) if row else None

    async def put_conversation(self, conversation: Conversation) -> None:
        await self._write(
            "INSERT INTO conversations VALUES (?, ?, ?) "
            "ON CONFLICT(sender_id, contact) DO UPDATE SET data=excluded.data",
            (conversation.sender_id, conversation.contact, conversation.model_dump_json()),
        )

    # --- dedupe ---
    async def claim(self, key: str, ttl: float) -> bool:
        now = self.clock.now()
        # One statement: insert, or take over an expired claim; rowcount says who won.
        cursor = await self._write(
            "INSERT INTO claims VALUES (?, ?) ON CONFLICT(key) DO UPDATE SET expires_at=excluded.expires_at "
            "WHERE claims.expires_at <= ?",
            (key, now + ttl, now),
        )
        return cursor.rowcount > 0

    # --- the durable work queue ---

    async def _insert_jobs(self, db: aiosqlite.Connection, jobs: Sequence[Job]) -> None:
        await db.executemany(
            "INSERT INTO jobs (id, kind, key, not_before, data) VALUES (?, ?, ?, ?, ?)",
            [(j.id, j.kind, j.key, j.not_before, j.model_dump_json()) for j in jobs],
        )

    async def enqueue(self, jobs: Sequence[Job], *, dedupe_key: str | None = None, dedupe_ttl: float = 0.0) -> bool:
        now = self.clock.now()
        async with self._transaction() as db:
            if dedupe_key is not None:
                cursor = await db.execute(
                    "INSERT INTO claims VALUES (?, ?) ON CONFLICT(key) DO UPDATE SET expires_at=excluded.expires_at "
                    "WHERE claims.expires_at <= ?",
                    (dedupe_key, now + dedupe_ttl, now),
                )
                if cursor.rowcount == 0:
                    return False
            await self._insert_jobs(db, jobs)
        return True

    async def claim_jobs(self, kinds: Sequence[str], *, limit: int, lease: float) -> list[Job]:
        now = self.clock.now()
        sql = CLAIM.format(kinds=",".join("?" * len(kinds)))
        async with self._lock:
            async with self.db.execute(sql, (now + lease, *kinds, now, now, limit)) as cursor:
                rows = await cursor.fetchall()
        return [Job.model_validate_json(row[1]) for row in sorted(rows)]

    async def complete_job(self, job: Job, *, then: Sequence[Job] = ()) -> None:
        async with self._transaction() as db:
            await db.execute("DELETE FROM jobs WHERE id=?", (job.id,))
            await self._insert_jobs(db, then)

    async def retry_job(self, job: Job, *, not_before: float, error: str) -> None:
        retried = job.model_copy(update={"attempts": job.attempts + 1, "not_before": not_before, "last_error": error})
        await self._write(
            "UPDATE jobs SET data=?, not_before=?, lease_until=0 WHERE id=?",
            (retried.model_dump_json(), not_before, job.id),
        )

    async def release_leases(self) -> int:
        cursor = await self._write("UPDATE jobs SET lease_until=0 WHERE lease_until>0")
        return cursor.rowcount

    async def queue_depth(self) -> dict[str, int]:
        rows = await self._all("SELECT kind, count(*) FROM jobs GROUP BY kind")
        return {row[0]: row[1] for row in rows}

    # --- outbound messages ---

    async def put_outbound(self, message: OutboundMessage, channel: str) -> None:
        await self._write(
            "INSERT INTO outbound VALUES (?, ?, ?, ?) ON CONFLICT(id) DO UPDATE SET "
            "provider_message_id=excluded.provider_message_id, data=excluded.data",
            (message.id, channel, message.provider_message_id, message.model_dump_json()),
        )

    async def get_outbound(self, message_id: str) -> OutboundMessage | None:
        row = await self._one("SELECT data FROM outbound WHERE id=?", message_id)
        return OutboundMessage.model_validate_json(row[0]) if row else None

    async def outbound_by_provider_id(self, channel: str, provider_message_id: str) -> OutboundMessage | None:
        row = await self._one(
            "SELECT data FROM outbound WHERE channel=? AND provider_message_id=?", channel, provider_message_id
        )
        return OutboundMessage.model_validate_json(row[0]) if row else None

    # --- subscriptions ---

    async def create_subscription(self, subscription: Subscription) -> None:
        await self._write(
            "INSERT INTO subscriptions VALUES (?, ?, ?, ?)",
            (subscription.id, subscription.account_id, subscription.topic, subscription.model_dump_json()),
        )

    async def get_subscription(self, subscription_id: str) -> Subscription | None:
        row = await self._one("SELECT data FROM subscriptions WHERE id=?", subscription_id)
        return Subscription.model_validate_json(row[0]) if row else None

    async def list_subscriptions(
        self, account_id: str, *, topic: str | None = None, limit: int = 50, after: str | None = None
    ) -> list[Subscription]:
        sql = "SELECT data FROM subscriptions WHERE account_id=? AND id>?"
        args: list[object] = [account_id, after or ""]
        if topic is not None:
            sql += " AND topic=?"
            args.append(topic)
        rows = await self._all(sql + " ORDER BY id LIMIT ?", *args, limit)
        return [Subscription.model_validate_json(r[0]) for r in rows]

    async def delete_subscription(self, subscription_id: str) -> bool:
        cursor = await self._write("DELETE FROM subscriptions WHERE id=?", (subscription_id,))
        return cursor.rowcount > 0

    async def add_event_failure(self, failure: EventFailure) -> None:
        await self._write(
            "INSERT INTO event_failures VALUES (?, ?, ?)",
            (failure.id, failure.subscription_id, failure.model_dump_json()),
        )

    async def list_event_failures(
        self, subscription_id: str, *, limit: int = 50, after: str | None = None
    ) -> list[EventFailure]:
        rows = await self._all(
            "SELECT data FROM event_failures WHERE subscription_id=? AND id>? ORDER BY id LIMIT ?",
            subscription_id,
            after or "",
            limit,
        )
        return [EventFailure.model_validate_json(r[0]) for r in rows]


@hookimpl
def register_stores(register):  # type: ignore[no-untyped-def]
    register("sqlite", lambda url, clock: SQLiteStore(path_from_url(url), clock))
