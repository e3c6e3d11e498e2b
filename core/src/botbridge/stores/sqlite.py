"""`sqlite:///path` — one machine, survives restarts (the default store).

aiosqlite keeps the blocking sqlite3 calls off the event loop. WAL mode
lets readers run while a write commits; `synchronous=NORMAL` under WAL loses
no committed transaction on a process crash (only, at worst, on power loss).
"""

from __future__ import annotations

import sqlite3
from pathlib import Path
from urllib.parse import urlsplit

import aiosqlite

from botbridge.clock import Clock
from botbridge.errors import SenderTaken, StoreUnavailable, VersionConflict
from botbridge.hookspecs import hookimpl
from botbridge.models import Connector, Conversation, Sender
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
            return await cursor.fetchone()  # type: ignore[return-value]

    async def _all(self, sql: str, *args: object) -> list[sqlite3.Row]:
        async with self.db.execute(sql, args) as cursor:
            return list(await cursor.fetchall())  # type: ignore[arg-type]

    # --- API keys ---
    async def put_api_key(self, key_hash: str, account_id: str) -> None:
        await self.db.execute(
            "INSERT INTO api_keys VALUES (?, ?) ON CONFLICT(key_hash) DO UPDATE SET account_id=excluded.account_id",
            (key_hash, account_id),
        )

    async def account_for_key(self, key_hash: str) -> str | None:
        row = await self._one("SELECT account_id FROM api_keys WHERE key_hash=?", key_hash)
        return row[0] if row else None

    # --- senders ---
    async def create_sender(self, sender: Sender) -> None:
        await self.db.execute(
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
        await self.db.execute("UPDATE senders SET data=? WHERE id=?", (sender.model_dump_json(), sender.id))

    async def delete_sender(self, sender_id: str) -> bool:
        cursor = await self.db.execute("DELETE FROM senders WHERE id=?", (sender_id,))
        return cursor.rowcount > 0

    # --- connectors ---
    async def create_connector(self, connector: Connector) -> None:
        try:
            await self.db.execute(
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
            cursor = await self.db.execute(
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
        cursor = await self.db.execute("DELETE FROM connectors WHERE id=?", (connector_id,))
        return cursor.rowcount > 0

    # --- conversations ---
    async def get_conversation(self, sender_id: str, contact: str) -> Conversation | None:
        row = await self._one("SELECT data FROM conversations WHERE sender_id=? AND contact=?", sender_id, contact)
        return Conversation.model_validate_json(row[0]) if row else None

    async def put_conversation(self, conversation: Conversation) -> None:
        await self.db.execute(
            "INSERT INTO conversations VALUES (?, ?, ?) "
            "ON CONFLICT(sender_id, contact) DO UPDATE SET data=excluded.data",
            (conversation.sender_id, conversation.contact, conversation.model_dump_json()),
        )

    # --- dedupe ---
    async def claim(self, key: str, ttl: float) -> bool:
        now = self.clock.now()
        # One statement: insert, or take over an expired claim; rowcount says who won.
        cursor = await self.db.execute(
            "INSERT INTO claims VALUES (?, ?) ON CONFLICT(key) DO UPDATE SET expires_at=excluded.expires_at "
            "WHERE claims.expires_at <= ?",
            (key, now + ttl, now),
        )
        return cursor.rowcount > 0


@hookimpl
def register_stores(register):  # type: ignore[no-untyped-def]
    register("sqlite", lambda url, clock: SQLiteStore(path_from_url(url), clock))
