"""`postgresql://user@host:port/db` — the store several hosts share, durable by PostgreSQL's commit.

Records are JSONB beside the columns that are looked up. Each check-and-write
is one statement or one transaction (no read-then-write across round trips),
so a PostgreSQL row lock or unique index decides every race. The work queue is
the `jobs` table: a job is runnable when due, unleased and the oldest of its
key; claimers lock candidate rows with `FOR UPDATE SKIP LOCKED`, so hosts
never wait on each other's claims. Enqueues of one key are serialized with a
transaction advisory lock, which makes a key's committed jobs always a prefix
of its sequence: a later job can never become visible (and run) before an
earlier one still committing. Every enqueue NOTIFYs the schema's channel in
its transaction, so an idle worker on any host wakes at commit; polling stays
as the fallback. Times that decide anything come from the injected clock, as
in the Redis store: hosts keep their clocks in step (NTP).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import json
import logging
import os
import secrets
from collections.abc import AsyncIterator, Callable, Coroutine, Sequence
from typing import Any, ParamSpec, TypeVar
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import asyncpg

from botbridge.clock import Clock
from botbridge.errors import SenderTaken, StoreUnavailable, VersionConflict
from botbridge.models import (
    ApiKey,
    Connector,
    Conversation,
    EventFailure,
    HistoryEntry,
    Job,
    OptOut,
    OutboundMessage,
    SecretKind,
    Sender,
    StreamItem,
    Subscription,
)
from botbridge.store import (
    SLOT_MARGIN,
    ConversationFilter,
    Durability,
    MessageFilter,
    Store,
    Take,
    Writes,
    admission_wait,
    check_secret_fields,
    conversation_key,
    send_window,
)
from botbridge_postgres.migrations import LATEST, current_version, migrate, quote

logger = logging.getLogger("botbridge.postgres")

DEFAULT_SCHEMA = "botbridge"
DEFAULT_POOL = 10
SWEEP_EVERY = 1000  # dedupe claims between two deletions of expired ones
PURGE_BATCH = 2000  # rows one statement of `purge_history` deletes: no long lock, no statement timeout
# Connection trouble (refused, reset, terminated by an administrator, too
# many clients, a standby that cannot take writes): the host answers 503.
UNAVAILABLE: tuple[type[BaseException], ...] = (
    OSError,
    TimeoutError,
    asyncpg.PostgresConnectionError,
    asyncpg.InterfaceError,
    asyncpg.exceptions.InternalClientError,
    asyncpg.exceptions.OperatorInterventionError,
    asyncpg.exceptions.InsufficientResourcesError,
    asyncpg.exceptions.ReadOnlySQLTransactionError,
)

# Raised before a statement was sent, on a session the server had already
# ended (asyncpg read the FATAL but not yet the close): safe to run again.
UNSENT: tuple[type[BaseException], ...] = (asyncpg.exceptions.InternalClientError, asyncpg.InterfaceError)
UNSENT_RETRIES = 3

P = ParamSpec("P")
T = TypeVar("T")


def parse_url(url: str) -> tuple[str, str, int]:
    """Split `postgresql://…/db?schema=…&pool=…` into (driver DSN, schema, pool size).

    Other query options go to the driver (e.g. `sslmode`, server settings).
    """
    parts = urlsplit(url)
    query = parse_qsl(parts.query, keep_blank_values=True)
    ours = {k: v for k, v in query if k in ("schema", "pool")}
    rest = [(k, v) for k, v in query if k not in ours]
    schema = ours.get("schema") or DEFAULT_SCHEMA
    pool = int(ours["pool"]) if ours.get("pool") else DEFAULT_POOL
    if pool < 2:
        raise ValueError("postgres store option pool must be at least 2")
    scheme = "postgresql" if parts.scheme in ("postgres", "postgresql") else parts.scheme
    return urlunsplit(parts._replace(scheme=scheme, query=urlencode(rest))), schema, pool


def guarded(method: Callable[P, Coroutine[Any, Any, T]]) -> Callable[P, Coroutine[Any, Any, T]]:
    """Turn connection trouble into StoreUnavailable (the host's 503 + Retry-After)."""

    @functools.wraps(method)
    async def wrapper(*args: P.args, **kwargs: P.kwargs) -> T:
        for attempt in range(UNSENT_RETRIES + 1):
            try:
                return await method(*args, **kwargs)
            except UNSENT as exc:
                # A pooled session the server ended: nothing reached PostgreSQL, so
                # the whole call runs again on another one (the broken one is gone).
                if attempt == UNSENT_RETRIES:
                    raise StoreUnavailable(f"postgres is unavailable: {type(exc).__name__}: {exc}") from exc
            except UNAVAILABLE as exc:
                raise StoreUnavailable(f"postgres is unavailable: {type(exc).__name__}: {exc}") from exc
        raise AssertionError("unreachable")

    return wrapper


def lane_of(kind: str) -> str:
    return "event" if kind == "event" else "message"


def parse_wake(payload: str, origin: str) -> tuple[str, int] | None:
    """(lane, jobs) from a NOTIFY payload `lane:jobs:origin`; None for our own or a malformed one.

    Anyone who may NOTIFY on the database can send a payload: it only ever
    wakes idle workers (at most as many as there are), never more.
    """
    lane, jobs, sender = [*payload.split(":", 2), "", ""][:3]
    # This process's own work already woke its workers (the engine does that on enqueue).
    if lane not in ("message", "event") or sender == origin:
        return None
    count = int(jobs) if jobs.isascii() and jobs.isdigit() and len(jobs) < 7 else 1
    return lane, max(1, count)


# A job is runnable when due, not leased, and the oldest of its key. Rows
# another claimer holds are skipped, not waited for; a row whose lease was
# committed meanwhile fails the re-check of `lease_until` and is left out.
CLAIM_JOBS = """
WITH picked AS (
    SELECT j.seq FROM jobs j
    WHERE j.kind = ANY($1::text[]) AND j.not_before <= $2 AND j.lease_until <= $2
      AND NOT EXISTS (SELECT 1 FROM jobs k WHERE k.key = j.key AND k.seq < j.seq)
    ORDER BY j.seq LIMIT $3
    FOR UPDATE SKIP LOCKED)
UPDATE jobs SET lease_until = $4 FROM picked WHERE jobs.seq = picked.seq
RETURNING jobs.seq, jobs.data::text
"""

# Lease a job just added when nothing of its key is queued ahead of it.
TAKE = """
UPDATE jobs SET lease_until = $1 WHERE id = $2
  AND NOT EXISTS (SELECT 1 FROM jobs k WHERE k.key = jobs.key AND k.seq < jobs.seq)
RETURNING 1
"""

# Insert, or take over an expired claim: the row lock decides between racers.
CLAIM = """
INSERT INTO claims VALUES ($1, $2) ON CONFLICT (key) DO UPDATE SET expires_at = excluded.expires_at
WHERE claims.expires_at <= $3
RETURNING 1
"""

SEND_SLOT = """
INSERT INTO send_slots VALUES ($1, $2::float8 + $3::float8)
ON CONFLICT (key) DO UPDATE SET next_slot = greatest(send_slots.next_slot, $2::float8) + $3::float8
RETURNING next_slot - $3::float8
"""

# The sends of one key that still count, and the count-th latest to stop
# counting (the one whose leaving makes room), read under the key's transaction lock.
SENDS_COUNTING = """
SELECT count(*), (SELECT until FROM send_times WHERE key = $1 ORDER BY until DESC OFFSET $2 - 1 LIMIT 1)
FROM send_times WHERE key = $1
"""


# Transaction advisory locks of job keys, taken in one statement in a fixed
# order (of their hashes), so two transactions locking keys never deadlock.
LOCK_KEYS = (
    "SELECT pg_advisory_xact_lock(h) FROM "
    "(SELECT DISTINCT hashtextextended(k, 0) AS h FROM unnest($1::text[]) AS k ORDER BY h) AS keys"
)

PUT_CONVERSATION = (
    "INSERT INTO conversations VALUES ($1, $2, $3::jsonb) "
    "ON CONFLICT (sender_id, contact) DO UPDATE SET data = excluded.data"
)
# Every conversation by id, in its latest version. A record without an
# account (made before history was kept) is listed under its sender's.
PUT_CONVERSATION_LOG = """
INSERT INTO conversation_log (id, account_id, sender_id, connector_id, contact, state, opened_at, closed_at, data)
VALUES ($1, coalesce($2, (SELECT account_id FROM senders WHERE id = $3)), $3, $4, $5, $6, $7, $8, $9::jsonb)
ON CONFLICT (id) DO UPDATE SET account_id = excluded.account_id, connector_id = excluded.connector_id,
    state = excluded.state, closed_at = excluded.closed_at, data = excluded.data
"""
PUT_OUTBOUND = """
INSERT INTO outbound (id, sender_id, channel, provider_message_id, data, account_id, contact, conversation_id, state,
    external_id, created_at, updated_at)
VALUES ($1, $2, $3, $4, $5::jsonb, coalesce($6, (SELECT account_id FROM senders WHERE id = $2)), $7, $8, $9, $10,
    $11, $12)
ON CONFLICT (id) DO UPDATE SET provider_message_id = excluded.provider_message_id, data = excluded.data,
    account_id = coalesce(excluded.account_id, outbound.account_id), contact = excluded.contact,
    conversation_id = excluded.conversation_id, state = excluded.state, external_id = excluded.external_id,
    created_at = excluded.created_at, updated_at = excluded.updated_at
"""
ADD_HISTORY = "INSERT INTO history VALUES ($1, $2, $3, $4, $5, $6::jsonb) ON CONFLICT (id) DO NOTHING"
ADD_STREAM = "INSERT INTO stream VALUES ($1, $2, $3, $4::jsonb) ON CONFLICT (id) DO NOTHING"


def conversation_row(conversation: Conversation, data: str) -> tuple[str, str, str]:
    return conversation.sender_id, conversation.contact, data


def conversation_log_row(conversation: Conversation, data: str) -> tuple[Any, ...]:
    c = conversation
    closed_at = None if c.closed_at is None else float(c.closed_at)
    return c.id, c.account_id, c.sender_id, c.connector_id, c.contact, c.state, float(c.opened_at), closed_at, data


def outbound_row(message: OutboundMessage, channel: str) -> tuple[Any, ...]:
    m = message
    return (
        m.id,
        m.sender_id,
        channel,
        m.provider_message_id,
        m.model_dump_json(),
        m.account_id,
        m.contact,
        m.conversation_id,
        m.state,
        m.external_id,
        m.created_at.timestamp(),
        m.updated_at.timestamp(),
    )


def history_row(entry: HistoryEntry) -> tuple[Any, ...]:
    e = entry
    return e.id, e.conversation_id, e.sender_id, e.contact, float(e.at), e.model_dump_json()


def stream_row(item: StreamItem) -> tuple[Any, ...]:
    return item.id, item.account_id, float(item.at), item.model_dump_json()


def filtered(sql: str, args: list[object], conditions: Sequence[tuple[str, object]]) -> str:
    """`sql` with ` AND <column> <op> $n` for each condition whose value is given (None: not filtered).

    The SQL is ours; the values are bound parameters, appended to `args`.
    """
    for condition, value in conditions:
        if value is not None:
            args.append(float(value) if isinstance(value, int | float) else value)
            sql += f" AND {condition} ${len(args)}"
    return sql


# What erasure deletes of the queue: every job of the contact's conversation
# keys, and the event jobs of the account's subscriptions whose event names the
# contact. That is `botbridge.store.names_contact`: `->` on anything but an
# object is NULL, and jsonb equality with `to_jsonb(text)` holds only for a
# string equal to the contact.
ERASED_JOBS = """
FROM jobs WHERE key = ANY($1::text[]) OR (kind = 'event'
    AND data -> 'payload' ->> 'subscription_id' IN (SELECT id FROM subscriptions WHERE account_id = $2)
    AND to_jsonb($3::text) IN (data -> 'payload' -> 'event' -> 'event' -> 'fld-val-list' -> 'from_address',
                               data -> 'payload' -> 'event' -> 'event' -> 'fld-val-list' -> 'to_address'))
"""
ERASE_EVENT_FAILURES = """
DELETE FROM event_failures
WHERE subscription_id IN (SELECT id FROM subscriptions WHERE account_id = $1)
  AND to_jsonb($2::text) IN (data -> 'event' -> 'event' -> 'fld-val-list' -> 'from_address',
                             data -> 'event' -> 'event' -> 'fld-val-list' -> 'to_address')
"""

# Purged a batch at a time; the outer conditions are checked again on a row another transaction changed meanwhile.
PURGE_HISTORY = "DELETE FROM history WHERE id IN (SELECT id FROM history WHERE at < $1 LIMIT $2)"
PURGE_CONVERSATIONS = """
DELETE FROM conversation_log WHERE state = 'closed' AND coalesce(closed_at, opened_at) < $1 AND id IN (
    SELECT l.id FROM conversation_log l
    WHERE l.state = 'closed' AND coalesce(l.closed_at, l.opened_at) < $1
      AND NOT EXISTS (SELECT 1 FROM conversations c
                      WHERE c.sender_id = l.sender_id AND c.contact = l.contact AND c.data ->> 'id' = l.id)
    LIMIT $2)
"""
TRIM_STREAM = "DELETE FROM stream WHERE at < $1 AND id IN (SELECT id FROM stream WHERE at < $1 LIMIT $2)"
PURGE_OUTBOUND = (
    "DELETE FROM outbound WHERE updated_at < $1 AND id IN (SELECT id FROM outbound WHERE updated_at < $1 LIMIT $2)"
)


def deleted(status: str) -> int:
    return int(status.rsplit(" ", 1)[-1])  # "DELETE 3"


SELECT_KEYS = "SELECT id, key_hash, account_id, name, source, created_at, last_used_at, revoked_at FROM api_keys"

# Per record kind: list ids; replace encrypted fields if they still hold the
# expected values (`@>`), merging the new ones over the record (`||`).
SECRET_SQL: dict[SecretKind, tuple[str, str]] = {
    "sender": (
        "SELECT id FROM senders ORDER BY id LIMIT $1",
        "UPDATE senders SET data = data || $2::jsonb WHERE id = $1 AND data @> $3::jsonb",
    ),
    "connector": (
        "SELECT id FROM connectors ORDER BY id LIMIT $1",
        "UPDATE connectors SET data = data || $2::jsonb WHERE id = $1 AND data @> $3::jsonb",
    ),
    "subscription": (
        "SELECT id FROM subscriptions ORDER BY id LIMIT $1",
        "UPDATE subscriptions SET data = data || $2::jsonb WHERE id = $1 AND data @> $3::jsonb",
    ),
}


class PostgresStore(Store):
    shared = True

    def __init__(self, dsn: str, clock: Clock, *, schema: str = DEFAULT_SCHEMA, pool_size: int = DEFAULT_POOL) -> None:
        self.dsn = dsn
        self.clock = clock
        self.schema = schema
        self.pool_size = pool_size
        self.channel = f"botbridge:{schema}"
        # Sessions show up under this name in pg_stat_activity (one per store instance).
        self._origin = secrets.token_hex(4)
        self.application_name = f"botbridge {os.getpid()} {self._origin}"
        self._pool: asyncpg.Pool | None = None
        self._wake: Callable[[str, int], None] | None = None
        self._listener: asyncio.Task[None] | None = None
        self._listening = False
        self._claims = 0
        self._durability: Durability | None = None

    @classmethod
    def from_url(cls, url: str, clock: Clock) -> PostgresStore:
        dsn, schema, pool = parse_url(url)
        return cls(dsn, clock, schema=schema, pool_size=pool)

    # --- plumbing ---

    def _settings(self) -> dict[str, str]:
        return {"search_path": quote(self.schema), "application_name": self.application_name}

    async def _connect(self) -> asyncpg.Connection:
        return await asyncpg.connect(self.dsn, timeout=2.0, server_settings=self._settings())

    @property
    def pool(self) -> asyncpg.Pool:
        if self._pool is None:
            raise StoreUnavailable("store is not open")
        return self._pool

    @contextlib.asynccontextmanager
    async def _conn(self) -> AsyncIterator[asyncpg.Connection]:
        async with self.pool.acquire(timeout=5.0) as conn:
            try:
                yield conn
            except UNAVAILABLE:
                # Never handed out again, nor the other idle sessions opened before
                # it: a server that cut one (failover, restart) has cut them all.
                conn.terminate()
                await self.pool.expire_connections()
                raise

    @contextlib.asynccontextmanager
    async def _tx(self) -> AsyncIterator[asyncpg.Connection]:
        async with self._conn() as conn, conn.transaction():
            yield conn

    async def _fetch(self, sql: str, *args: object) -> list[asyncpg.Record]:
        async with self._conn() as conn:
            rows: list[asyncpg.Record] = await conn.fetch(sql, *args, timeout=5.0)
            return rows

    async def _fetchval(self, sql: str, *args: object) -> Any:
        async with self._conn() as conn:
            return await conn.fetchval(sql, *args, timeout=5.0)

    async def _execute(self, sql: str, *args: object) -> int:
        async with self._conn() as conn:
            status = await conn.execute(sql, *args, timeout=5.0)
        return int(status.rsplit(" ", 1)[-1])  # "UPDATE 3", "DELETE 1", "INSERT 0 1"

    async def _data(self, sql: str, *args: object) -> list[str]:
        return [row[0] for row in await self._fetch(sql, *args)]

    @guarded
    async def migrate(self) -> list[int]:
        """Bring the schema up to date; return the migrations applied now (none when current)."""
        conn = await self._connect()
        try:
            return await migrate(conn, self.schema)
        finally:
            await conn.close()

    @guarded
    async def schema_version(self) -> int:
        conn = await self._connect()
        try:
            return await current_version(conn, self.schema)
        finally:
            await conn.close()

    @guarded
    async def open(self) -> None:
        if self._pool is not None:
            return
        applied = await self.migrate()
        if applied:
            logger.info("postgres schema %s is at version %d", self.schema, LATEST)
        self._pool = await asyncpg.create_pool(
            self.dsn,
            min_size=1,
            max_size=self.pool_size,
            timeout=2.0,
            command_timeout=10.0,
            # a connection unused for a while is closed, so a pool sized for a burst shrinks again
            max_inactive_connection_lifetime=60.0,
            server_settings=self._settings(),
        )
        await self._execute("DELETE FROM claims WHERE expires_at <= $1", self.clock.now())
        self._durability = await self._read_durability()

    async def _read_durability(self) -> Durability:
        # Read per session: a role or database may override the server's default.
        commit = await self._fetchval("SHOW synchronous_commit")
        fsync = await self._fetchval("SHOW fsync")
        detail = f"synchronous_commit={commit} fsync={fsync}"
        durable = commit != "off" and fsync == "on"
        if not durable:
            logger.warning(
                "PostgreSQL runs with %s: a crash of PostgreSQL can lose messages that were already answered 2xx",
                detail,
            )
        return Durability(durable, detail)

    def durability(self) -> Durability | None:
        return self._durability

    async def close(self) -> None:
        if self._listener is not None:
            # The flag as well as the cancel: asyncpg connects through asyncio.wait_for,
            # which on Python 3.11 can lose a cancel that lands as the connect finishes.
            self._listening = False
            self._listener.cancel()
            await asyncio.gather(self._listener, return_exceptions=True)
            self._listener = None
        if self._pool is not None:
            pool, self._pool = self._pool, None
            await pool.close()

    async def ping(self) -> bool:
        try:
            return bool(await self._fetchval("SELECT 1"))
        except (StoreUnavailable, *UNAVAILABLE):
            return False

    # --- waking idle workers on every host ---

    def watch(self, wake: Callable[[str, int], None]) -> None:
        """Call `wake(lane, jobs)` whenever any host commits new work (LISTEN on a connection of its own)."""
        self._wake = wake
        if self._listener is None:
            self._listening = True
            self._listener = asyncio.create_task(self._listen(), name="postgres-listen")

    async def _listen(self) -> None:
        def notified(_conn: object, _pid: int, _channel: str, payload: str) -> None:
            wake = parse_wake(payload, self._origin)
            if self._wake is not None and wake is not None:
                self._wake(*wake)

        while self._listening:
            try:
                conn = await self._connect()
            except (asyncio.CancelledError, KeyboardInterrupt):
                raise
            except Exception as exc:
                logger.debug("postgres LISTEN connection failed (%s); workers poll meanwhile", exc)
                await asyncio.sleep(1.0)
                continue
            lost = asyncio.Event()
            conn.add_termination_listener(lambda _conn, lost=lost: lost.set())
            try:
                if not self._listening:
                    return
                await conn.add_listener(self.channel, notified)
                # Work committed while nobody listened is found by the first claim.
                if self._wake is not None:
                    self._wake("message", 1)
                    self._wake("event", 1)
                await lost.wait()
            except (asyncio.CancelledError, KeyboardInterrupt):
                raise
            except Exception as exc:
                logger.debug("postgres LISTEN connection lost (%s)", exc)
            finally:
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(conn.close(), 1.0)
            await asyncio.sleep(0.2)

    async def _notify(self, conn: asyncpg.Connection, jobs: Sequence[Job]) -> None:
        lanes: dict[str, int] = {}
        for job in jobs:
            if job.not_before <= self.clock.now():
                lanes[lane_of(job.kind)] = lanes.get(lane_of(job.kind), 0) + 1
        for lane, count in lanes.items():
            await conn.execute("SELECT pg_notify($1, $2)", self.channel, f"{lane}:{count}:{self._origin}")

    # --- API keys ---

    @guarded
    async def create_api_key(self, key: ApiKey) -> bool:
        inserted = await self._execute(
            "INSERT INTO api_keys VALUES ($1, $2, $3, $4, $5, $6, $7, $8) ON CONFLICT DO NOTHING",
            key.id,
            key.key_hash,
            key.account_id,
            key.name,
            key.source,
            key.created_at,
            key.last_used_at,
            key.revoked_at,
        )
        return inserted > 0

    async def _api_keys(self, sql: str, *args: object) -> list[ApiKey]:
        return [ApiKey.model_validate(dict(row)) for row in await self._fetch(sql, *args)]

    @guarded
    async def api_key_by_hash(self, key_hash: str) -> ApiKey | None:
        found = await self._api_keys(SELECT_KEYS + " WHERE key_hash = $1", key_hash)
        return found[0] if found else None

    @guarded
    async def get_api_key(self, key_id: str) -> ApiKey | None:
        found = await self._api_keys(SELECT_KEYS + " WHERE id = $1", key_id)
        return found[0] if found else None

    @guarded
    async def list_api_keys(
        self, account_id: str | None = None, *, limit: int = 50, after: str | None = None
    ) -> list[ApiKey]:
        return await self._api_keys(
            SELECT_KEYS + " WHERE id > $1 AND ($2::text IS NULL OR account_id = $2) ORDER BY id LIMIT $3",
            after or "",
            account_id,
            limit,
        )

    @guarded
    async def touch_api_key(self, key_id: str, at: float) -> None:
        await self._execute("UPDATE api_keys SET last_used_at = $2 WHERE id = $1", key_id, at)

    @guarded
    async def revoke_api_key(self, key_id: str, at: float) -> bool:
        return (
            await self._execute("UPDATE api_keys SET revoked_at = $2 WHERE id = $1 AND revoked_at IS NULL", key_id, at)
            > 0
        )

    # --- host metadata ---

    @guarded
    async def get_meta(self, name: str) -> str | None:
        value: str | None = await self._fetchval("SELECT value FROM meta WHERE name = $1", name)
        return value

    @guarded
    async def put_meta(self, name: str, value: str, *, only_if_absent: bool = False) -> bool:
        sql = (
            "INSERT INTO meta VALUES ($1, $2) ON CONFLICT (name) DO NOTHING"
            if only_if_absent
            else "INSERT INTO meta VALUES ($1, $2) ON CONFLICT (name) DO UPDATE SET value = excluded.value"
        )
        return await self._execute(sql, name, value) > 0

    # --- stored secrets ---

    @guarded
    async def secret_record_ids(self, kind: SecretKind, *, limit: int | None = None) -> list[str]:
        return [row[0] for row in await self._fetch(SECRET_SQL[kind][0], limit)]

    @guarded
    async def replace_secrets(
        self, kind: SecretKind, record_id: str, expected: dict[str, str], new: dict[str, str]
    ) -> bool:
        check_secret_fields(kind, expected, new)
        changed = await self._execute(SECRET_SQL[kind][1], record_id, json.dumps(new), json.dumps(expected))
        return changed > 0

    # --- senders ---

    @guarded
    async def create_sender(self, sender: Sender) -> None:
        await self._execute(
            "INSERT INTO senders VALUES ($1, $2, $3::jsonb)", sender.id, sender.account_id, sender.model_dump_json()
        )

    @guarded
    async def get_sender(self, sender_id: str) -> Sender | None:
        raw = await self._fetchval("SELECT data::text FROM senders WHERE id = $1", sender_id)
        return Sender.model_validate_json(raw) if raw else None

    @guarded
    async def list_senders(self, account_id: str, *, limit: int = 50, after: str | None = None) -> list[Sender]:
        rows = await self._data(
            "SELECT data::text FROM senders WHERE account_id = $1 AND id > $2 ORDER BY id LIMIT $3",
            account_id,
            after or "",
            limit,
        )
        return [Sender.model_validate_json(r) for r in rows]

    @guarded
    async def update_sender(self, sender: Sender) -> None:
        await self._execute("UPDATE senders SET data = $1::jsonb WHERE id = $2", sender.model_dump_json(), sender.id)

    @guarded
    async def delete_sender(self, sender_id: str) -> bool:
        return await self._execute("DELETE FROM senders WHERE id = $1", sender_id) > 0

    # --- connectors ---

    @guarded
    async def create_connector(self, connector: Connector) -> None:
        try:
            await self._execute(
                "INSERT INTO connectors VALUES ($1, $2, $3, $4, $5, $6, $7::jsonb)",
                connector.id,
                connector.account_id,
                connector.sender_id,
                connector.type,
                connector.external_id,
                connector.version_number,
                connector.model_dump_json(),
            )
        except asyncpg.UniqueViolationError:
            raise SenderTaken(connector.sender_id) from None

    @guarded
    async def get_connector(self, connector_id: str) -> Connector | None:
        raw = await self._fetchval("SELECT data::text FROM connectors WHERE id = $1", connector_id)
        return Connector.model_validate_json(raw) if raw else None

    @guarded
    async def connector_for_sender(self, sender_id: str) -> Connector | None:
        raw = await self._fetchval("SELECT data::text FROM connectors WHERE sender_id = $1", sender_id)
        return Connector.model_validate_json(raw) if raw else None

    @guarded
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
        sql = "SELECT data::text FROM connectors WHERE account_id = $1 AND id > $2"
        args: list[object] = [account_id, after or ""]
        for column, value in (("type", type), ("sender_id", sender_id), ("external_id", external_id)):
            if value is not None:
                args.append(value)
                sql += f" AND {column} = ${len(args)}"
        args.append(limit)
        rows = await self._data(sql + f" ORDER BY id LIMIT ${len(args)}", *args)
        return [Connector.model_validate_json(r) for r in rows]

    @guarded
    async def update_connector(self, connector: Connector, expected_version: int) -> None:
        # One UPDATE: a concurrent writer holds the row lock, and once it commits
        # the version check is made again against its row, so exactly one wins.
        try:
            changed = await self._execute(
                "UPDATE connectors SET sender_id = $1, type = $2, external_id = $3, version_number = $4, "
                "data = $5::jsonb WHERE id = $6 AND version_number = $7",
                connector.sender_id,
                connector.type,
                connector.external_id,
                connector.version_number,
                connector.model_dump_json(),
                connector.id,
                expected_version,
            )
        except asyncpg.UniqueViolationError:
            raise SenderTaken(connector.sender_id) from None
        if changed == 0:
            raise VersionConflict(connector.id)

    @guarded
    async def delete_connector(self, connector_id: str) -> bool:
        return await self._execute("DELETE FROM connectors WHERE id = $1", connector_id) > 0

    # --- conversations ---

    @guarded
    async def get_conversation(self, sender_id: str, contact: str) -> Conversation | None:
        raw = await self._fetchval(
            "SELECT data::text FROM conversations WHERE sender_id = $1 AND contact = $2", sender_id, contact
        )
        return Conversation.model_validate_json(raw) if raw else None

    @guarded
    async def put_conversation(self, conversation: Conversation) -> None:
        await self._write(Writes(conversations=[conversation]))

    # --- history ---

    @guarded
    async def get_conversation_by_id(self, conversation_id: str) -> Conversation | None:
        raw = await self._fetchval("SELECT data::text FROM conversation_log WHERE id = $1", conversation_id)
        return Conversation.model_validate_json(raw) if raw else None

    @guarded
    async def list_conversations(
        self, account_id: str, where: ConversationFilter, *, limit: int = 50, before: str | None = None
    ) -> list[Conversation]:
        args: list[object] = [account_id]
        sql = filtered(
            "SELECT data::text FROM conversation_log WHERE account_id = $1",
            args,
            [
                ("sender_id =", where.sender_id),
                ("connector_id =", where.connector_id),
                ("contact =", where.contact),
                ("state =", where.state),
                ("opened_at >=", where.since),
                ("opened_at <", where.until),
                ("id <", before),
            ],
        )
        args.append(limit)
        rows = await self._data(sql + f" ORDER BY id DESC LIMIT ${len(args)}", *args)
        return [Conversation.model_validate_json(r) for r in rows]

    @guarded
    async def add_history(self, entry: HistoryEntry) -> None:
        await self._execute(ADD_HISTORY, *history_row(entry))

    @guarded
    async def list_history(
        self, conversation_id: str, *, limit: int = 200, after: str | None = None
    ) -> list[HistoryEntry]:
        rows = await self._data(
            "SELECT data::text FROM history WHERE conversation_id = $1 AND id > $2 ORDER BY id LIMIT $3",
            conversation_id,
            after or "",
            limit,
        )
        return [HistoryEntry.model_validate_json(r) for r in rows]

    @guarded
    async def list_outbound(
        self, account_id: str, where: MessageFilter, *, limit: int = 50, before: str | None = None
    ) -> list[OutboundMessage]:
        args: list[object] = [account_id]
        sql = filtered(
            "SELECT data::text FROM outbound WHERE account_id = $1",
            args,
            [
                ("sender_id =", where.sender_id),
                ("contact =", where.contact),
                ("state =", where.state),
                ("external_id =", where.external_id),
                ("conversation_id =", where.conversation_id),
                ("created_at >=", where.since),
                ("created_at <", where.until),
                ("id <", before),
            ],
        )
        args.append(limit)
        rows = await self._data(sql + f" ORDER BY id DESC LIMIT ${len(args)}", *args)
        return [OutboundMessage.model_validate_json(r) for r in rows]

    @guarded
    async def purge_history(self, before: float) -> int:
        """Delete a batch at a time (each its own short statement): a large purge never holds locks for long."""
        gone = 0
        for sql in (PURGE_HISTORY, PURGE_CONVERSATIONS, PURGE_OUTBOUND):
            while True:
                batch = await self._execute(sql, float(before), PURGE_BATCH)
                gone += batch
                if batch < PURGE_BATCH:
                    break
        return gone

    # --- the live stream ---

    @guarded
    async def append_stream(self, items: Sequence[StreamItem]) -> None:
        await self._write(Writes(stream=list(items)))

    @guarded
    async def read_stream(self, account_id: str, *, after: str | None = None, limit: int = 100) -> list[StreamItem]:
        rows = await self._data(
            "SELECT data::text FROM stream WHERE account_id = $1 AND id > $2 ORDER BY id LIMIT $3",
            account_id,
            after or "",
            limit,
        )
        return [StreamItem.model_validate_json(r) for r in rows]

    @guarded
    async def trim_stream(self, before: float) -> int:
        """Delete a batch at a time, as `purge_history` does."""
        gone = 0
        while True:
            batch = await self._execute(TRIM_STREAM, float(before), PURGE_BATCH)
            gone += batch
            if batch < PURGE_BATCH:
                return gone

    @guarded
    async def erase_contact(self, account_id: str, contact: str, sender_ids: Sequence[str]) -> int:
        """One transaction; locks in the order every writer takes them, so it never deadlocks with one.

        The job keys' advisory locks come first (a finishing job takes its
        follow-ups' before writing, an enqueue before inserting): an enqueue of
        the contact's conversation still committing is waited for and its job
        erased too, and the keys' remaining jobs stay a prefix of their
        sequence. Then the records, in the order a finishing job writes them,
        and the jobs.
        """
        senders = list(dict.fromkeys(sender_ids))
        keys = [conversation_key(sender_id, contact) for sender_id in senders]
        async with self._tx() as conn:
            events = await conn.fetch(f"SELECT DISTINCT key {ERASED_JOBS}", [], account_id, contact)
            await conn.execute(LOCK_KEYS, [*keys, *(row[0] for row in events)])
            gone = 0
            for table in ("conversations", "conversation_log", "outbound", "history"):
                gone += deleted(
                    await conn.execute(
                        f"DELETE FROM {table} WHERE sender_id = ANY($1::text[]) AND contact = $2",  # noqa: S608
                        senders,
                        contact,
                    )
                )
            gone += deleted(await conn.execute(ERASE_EVENT_FAILURES, account_id, contact))
            gone += deleted(await conn.execute(f"DELETE {ERASED_JOBS}", keys, account_id, contact))
        return gone

    # --- dedupe ---

    async def _sweep_claims(self, now: float) -> None:
        self._claims += 1
        if self._claims % SWEEP_EVERY == 0:
            await self._execute(
                "DELETE FROM claims WHERE key IN (SELECT key FROM claims WHERE expires_at <= $1 LIMIT 1000)", now
            )

    @guarded
    async def claim(self, key: str, ttl: float) -> bool:
        now = self.clock.now()
        won = await self._fetchval(CLAIM, key, now + ttl, now)
        await self._sweep_claims(now)
        return won is not None

    # --- the durable work queue ---

    async def _insert_jobs(self, conn: asyncpg.Connection, jobs: Sequence[Job], *, locked: bool = False) -> None:
        if not jobs:
            return
        if not locked:
            # Held to commit: a key's jobs commit in the order of their sequence numbers.
            await conn.execute(LOCK_KEYS, [job.key for job in jobs])
        await conn.executemany(
            "INSERT INTO jobs (id, kind, key, not_before, data) VALUES ($1, $2, $3, $4, $5::jsonb)",
            [(j.id, j.kind, j.key, float(j.not_before), j.model_dump_json()) for j in jobs],
        )
        await self._notify(conn, jobs)

    @guarded
    async def enqueue(self, jobs: Sequence[Job], *, dedupe_key: str | None = None, dedupe_ttl: float = 0.0) -> bool:
        now = self.clock.now()
        async with self._tx() as conn:
            if dedupe_key is not None and await conn.fetchval(CLAIM, dedupe_key, now + dedupe_ttl, now) is None:
                return False
            await self._insert_jobs(conn, jobs)
        if dedupe_key is not None:
            await self._sweep_claims(now)
        return True

    @guarded
    async def claim_jobs(self, kinds: Sequence[str], *, limit: int, lease: float) -> list[Job]:
        now = self.clock.now()
        rows = await self._fetch(CLAIM_JOBS, list(kinds), now, limit, now + lease)
        return [Job.model_validate_json(row[1]) for row in sorted(rows, key=lambda r: r[0])]

    @guarded
    async def complete_job(self, job: Job, *, then: Sequence[Job] = ()) -> None:
        await self.finish_job(job, then=then)

    @guarded
    async def finish_job(
        self, job: Job, *, then: Sequence[Job] = (), writes: Writes | None = None, take: Take | None = None
    ) -> Job | None:
        # A job no longer queued (another host took it over after its lease
        # and finished it) is left alone, follow-ups included.
        async with self._tx() as conn:
            if then:
                # The follow-ups' key locks before any row lock: the order `erase_contact` takes them in.
                await conn.execute(LOCK_KEYS, [j.key for j in then])
            if writes:
                await self._write_records(conn, writes)
            done = await conn.fetchval("DELETE FROM jobs WHERE id = $1 RETURNING 1", job.id)
            if done is None:
                return None
            await self._insert_jobs(conn, then, locked=True)
            now = self.clock.now()
            follow_up = next((j for j in then if take and j.kind in take.kinds), None)
            if take is None or follow_up is None or follow_up.not_before > now:
                return None
            # The key's advisory lock (taken above) is held: no job of it can commit ahead of this one.
            leased = await conn.fetchval(TAKE, now + take.lease, follow_up.id)
            return follow_up if leased else None

    @staticmethod
    async def _write_records(conn: asyncpg.Connection, writes: Writes) -> None:
        # In this order in every transaction that writes them (`erase_contact` deletes them in it too).
        if writes.conversations:
            data = [c.model_dump_json() for c in writes.conversations]
            pairs = list(zip(writes.conversations, data, strict=True))
            await conn.executemany(PUT_CONVERSATION, [conversation_row(c, d) for c, d in pairs])
            await conn.executemany(PUT_CONVERSATION_LOG, [conversation_log_row(c, d) for c, d in pairs])
        if writes.outbound:
            await conn.executemany(PUT_OUTBOUND, [outbound_row(m, channel) for m, channel in writes.outbound])
        if writes.history:
            await conn.executemany(ADD_HISTORY, [history_row(e) for e in writes.history])
        if writes.stream:
            await conn.executemany(ADD_STREAM, [stream_row(i) for i in writes.stream])

    async def _write(self, writes: Writes) -> None:
        async with self._tx() as conn:
            await self._write_records(conn, writes)

    @guarded
    async def write(self, writes: Writes) -> None:
        await self._write(writes)

    @guarded
    async def retry_job(self, job: Job, *, not_before: float, error: str) -> None:
        retried = job.model_copy(update={"attempts": job.attempts + 1, "not_before": not_before, "last_error": error})
        await self._execute(
            "UPDATE jobs SET data = $1::jsonb, not_before = $2, lease_until = 0 WHERE id = $3",
            retried.model_dump_json(),
            float(not_before),
            job.id,
        )

    @guarded
    async def release_leases(self) -> int:
        """End every lease now — of every host sharing this database.

        The engine never calls this for a shared store (leases simply expire);
        it is here for the contract and for an operator who stopped every host.
        """
        return await self._execute("UPDATE jobs SET lease_until = 0 WHERE lease_until > 0")

    @guarded
    async def queue_depth(self) -> dict[str, int]:
        rows = await self._fetch("SELECT kind, count(*) FROM jobs GROUP BY kind")
        return {row[0]: row[1] for row in rows}

    # --- outbound messages ---

    @guarded
    async def put_outbound(self, message: OutboundMessage, channel: str) -> None:
        await self._execute(PUT_OUTBOUND, *outbound_row(message, channel))

    @guarded
    async def get_outbound(self, message_id: str) -> OutboundMessage | None:
        raw = await self._fetchval("SELECT data::text FROM outbound WHERE id = $1", message_id)
        return OutboundMessage.model_validate_json(raw) if raw else None

    @guarded
    async def outbound_by_provider_id(self, sender_id: str, provider_message_id: str) -> OutboundMessage | None:
        raw = await self._fetchval(
            "SELECT data::text FROM outbound WHERE sender_id = $1 AND provider_message_id = $2 "
            "ORDER BY id DESC LIMIT 1",
            sender_id,
            provider_message_id,
        )
        return OutboundMessage.model_validate_json(raw) if raw else None

    # --- opt-outs ---
    # Not erased by erase_contact: the suppression list is what proves an opt-out is honoured.

    @guarded
    async def put_opt_out(self, opt_out: OptOut) -> bool:
        # One statement: the primary key decides between racers, an existing opt-out stays as it is.
        inserted = await self._execute(
            "INSERT INTO opt_outs VALUES ($1, $2, $3, $4, $5::jsonb) ON CONFLICT (sender_id, contact) DO NOTHING",
            opt_out.sender_id,
            opt_out.contact,
            opt_out.id,
            opt_out.account_id,
            opt_out.model_dump_json(),
        )
        return inserted > 0

    @guarded
    async def get_opt_out(self, sender_id: str, contact: str) -> OptOut | None:
        raw = await self._fetchval(
            "SELECT data::text FROM opt_outs WHERE sender_id = $1 AND contact = $2", sender_id, contact
        )
        return OptOut.model_validate_json(raw) if raw else None

    @guarded
    async def delete_opt_out(self, sender_id: str, contact: str) -> bool:
        return await self._execute("DELETE FROM opt_outs WHERE sender_id = $1 AND contact = $2", sender_id, contact) > 0

    @guarded
    async def list_opt_outs(
        self, account_id: str, *, sender_id: str | None = None, limit: int = 50, after: str | None = None
    ) -> list[OptOut]:
        sql = "SELECT data::text FROM opt_outs WHERE account_id = $1 AND id > $2"
        args: list[object] = [account_id, after or ""]
        if sender_id is not None:
            args.append(sender_id)
            sql += " AND sender_id = $3"
        args.append(limit)
        rows = await self._data(sql + f" ORDER BY id LIMIT ${len(args)}", *args)
        return [OptOut.model_validate_json(r) for r in rows]

    # --- subscriptions ---

    @guarded
    async def create_subscription(self, subscription: Subscription) -> None:
        await self._execute(
            "INSERT INTO subscriptions VALUES ($1, $2, $3, $4::jsonb)",
            subscription.id,
            subscription.account_id,
            subscription.topic,
            subscription.model_dump_json(),
        )

    @guarded
    async def get_subscription(self, subscription_id: str) -> Subscription | None:
        raw = await self._fetchval("SELECT data::text FROM subscriptions WHERE id = $1", subscription_id)
        return Subscription.model_validate_json(raw) if raw else None

    @guarded
    async def list_subscriptions(
        self, account_id: str, *, topic: str | None = None, limit: int = 50, after: str | None = None
    ) -> list[Subscription]:
        sql = "SELECT data::text FROM subscriptions WHERE account_id = $1 AND id > $2"
        args: list[object] = [account_id, after or ""]
        if topic is not None:
            args.append(topic)
            sql += " AND topic = $3"
        args.append(limit)
        rows = await self._data(sql + f" ORDER BY id LIMIT ${len(args)}", *args)
        return [Subscription.model_validate_json(r) for r in rows]

    @guarded
    async def delete_subscription(self, subscription_id: str) -> bool:
        return await self._execute("DELETE FROM subscriptions WHERE id = $1", subscription_id) > 0

    @guarded
    async def add_event_failure(self, failure: EventFailure) -> None:
        await self._execute(
            "INSERT INTO event_failures VALUES ($1, $2, $3::jsonb)",
            failure.id,
            failure.subscription_id,
            failure.model_dump_json(),
        )

    @guarded
    async def list_event_failures(
        self, subscription_id: str, *, limit: int = 50, after: str | None = None
    ) -> list[EventFailure]:
        rows = await self._data(
            "SELECT data::text FROM event_failures WHERE subscription_id = $1 AND id > $2 ORDER BY id LIMIT $3",
            subscription_id,
            after or "",
            limit,
        )
        return [EventFailure.model_validate_json(r) for r in rows]

    # --- rate limits ---

    @guarded
    async def reserve_send_slot(self, key: str, rate: float, now: float) -> float:
        """The spacing of `Store.reserve_send_slot`, kept in one row: one schedule for every host."""
        slot = await self._fetchval(SEND_SLOT, key, float(now), SLOT_MARGIN / rate)
        return max(0.0, float(slot) - now)

    @guarded
    async def admit_send(self, key: str, rate: float, now: float, ticket: str, hold: float) -> float:
        """`Store.admit_send` on the rows of `send_times`; a transaction lock per key makes it atomic."""
        count, seconds = send_window(rate)
        async with self._tx() as conn:
            blocking = await self._admit(conn, key, count, now, ticket, hold)
        return 0.0 if blocking is None else admission_wait(blocking, now, count, seconds)

    @guarded
    async def reserve_and_admit(
        self, key: str, rate: float, now: float, ticket: str, hold: float
    ) -> tuple[float, float | None]:
        """Both steps of a send's pacing in one transaction: one commit to wait for in the common case."""
        count, seconds = send_window(rate)
        async with self._tx() as conn:
            slot = await conn.fetchval(SEND_SLOT, key, float(now), SLOT_MARGIN / rate, timeout=5.0)
            wait = max(0.0, float(slot) - now)
            if wait > 0:
                return wait, None
            blocking = await self._admit(conn, key, count, now, ticket, hold)
        return 0.0, 0.0 if blocking is None else admission_wait(blocking, now, count, seconds)

    @staticmethod
    async def _admit(
        conn: asyncpg.Connection, key: str, count: int, now: float, ticket: str, hold: float
    ) -> float | None:
        """Admit the send in the caller's transaction (None), or return when the one blocking it stops counting."""
        await conn.execute(
            "SELECT pg_advisory_xact_lock(hashtextextended('send:' || current_schema() || ':' || $1, 0))",
            key,
            timeout=5.0,
        )
        await conn.execute("DELETE FROM send_times WHERE key = $1 AND until <= $2", key, now, timeout=5.0)
        held, blocking = await conn.fetchrow(SENDS_COUNTING, key, count, timeout=5.0)
        if held < count:
            await conn.execute(
                "INSERT INTO send_times VALUES ($1, $2, $3)", key, ticket, float(now + hold), timeout=5.0
            )
            return None
        return float(blocking)

    @guarded
    async def finish_send(self, key: str, ticket: str, rate: float, now: float) -> None:
        _, seconds = send_window(rate)
        await self._execute(
            "INSERT INTO send_times VALUES ($1, $2, $3) ON CONFLICT (key, ticket) DO UPDATE SET until = excluded.until",
            key,
            ticket,
            float(now + seconds),
        )
