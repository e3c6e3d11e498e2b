"""`sqlite:///path` — one machine, survives restarts (the default store).

Every call runs in one dedicated thread that owns the sqlite3 connection:
a whole transaction is one hop off the event loop, and calls never
interleave. WAL mode keeps reads cheap; `synchronous=NORMAL` under WAL loses
no committed transaction on a process crash (only, at worst, on power loss).

Group commit: calls that queued up while the thread was busy run together in
one transaction, each inside a savepoint of its own (a call that fails is
undone alone, as its own transaction would have been), and each caller hears
its answer only after the shared COMMIT. Under load a commit's cost (its
WAL frames: every page the calls dirtied, many of them the same pages) is
shared by several jobs instead of paid by each.

WAL checkpoints (copying committed pages into the database file, with its
fsync) run in a thread of their own every second, on a connection of their
own, instead of inside whichever commit crossed SQLite's 1,000-page mark:
that commit, and every call queued behind it, waited for the copy.
"""

from __future__ import annotations

import asyncio
import logging
import queue
import sqlite3
import threading
from collections.abc import Callable, Iterator, Sequence
from contextlib import closing, contextmanager
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import urlsplit

from botbridge.clock import Clock
from botbridge.errors import SenderTaken, StoreUnavailable, VersionConflict
from botbridge.hookspecs import hookimpl
from botbridge.ids import new_id
from botbridge.models import (
    SECRET_MODELS,
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
    ConversationFilter,
    Durability,
    MessageFilter,
    Store,
    Take,
    Writes,
    check_secret_fields,
    conversation_key,
    names_contact,
)

API_KEYS_TABLE = """
CREATE TABLE IF NOT EXISTS api_keys (
    id TEXT PRIMARY KEY, key_hash TEXT NOT NULL UNIQUE, account_id TEXT NOT NULL, name TEXT NOT NULL,
    source TEXT NOT NULL, created_at REAL NOT NULL, last_used_at REAL, revoked_at REAL)
"""
API_KEY_COLUMNS = ("id", "key_hash", "account_id", "name", "source", "created_at", "last_used_at", "revoked_at")
SELECT_KEYS = "SELECT id, key_hash, account_id, name, source, created_at, last_used_at, revoked_at FROM api_keys"
INSERT_KEY = (
    "INSERT INTO api_keys (id, key_hash, account_id, name, source, created_at, last_used_at, revoked_at) "
    "VALUES (?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT DO NOTHING"
)
SCHEMA = f"""
{API_KEYS_TABLE};
CREATE INDEX IF NOT EXISTS api_keys_account ON api_keys (account_id, id);
CREATE TABLE IF NOT EXISTS meta (name TEXT PRIMARY KEY, value TEXT NOT NULL);
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
CREATE TABLE IF NOT EXISTS conversation_log (
    id TEXT PRIMARY KEY, account_id TEXT, sender_id TEXT NOT NULL, connector_id TEXT, contact TEXT NOT NULL,
    state TEXT NOT NULL, opened_at REAL NOT NULL, closed_at REAL, data TEXT NOT NULL);
CREATE INDEX IF NOT EXISTS conversation_log_account ON conversation_log (account_id, id);
CREATE INDEX IF NOT EXISTS conversation_log_contact ON conversation_log (sender_id, contact);
CREATE TABLE IF NOT EXISTS history (
    id TEXT PRIMARY KEY, conversation_id TEXT NOT NULL, sender_id TEXT NOT NULL, contact TEXT NOT NULL,
    at REAL NOT NULL, data TEXT NOT NULL);
CREATE INDEX IF NOT EXISTS history_conversation ON history (conversation_id, id);
CREATE INDEX IF NOT EXISTS history_at ON history (at);
CREATE INDEX IF NOT EXISTS history_contact ON history (sender_id, contact);
CREATE TABLE IF NOT EXISTS stream (
    id TEXT PRIMARY KEY, account_id TEXT NOT NULL, at REAL NOT NULL, data TEXT NOT NULL);
CREATE INDEX IF NOT EXISTS stream_account ON stream (account_id, id);
CREATE INDEX IF NOT EXISTS stream_at ON stream (at);
CREATE TABLE IF NOT EXISTS claims (key TEXT PRIMARY KEY, expires_at REAL NOT NULL);
CREATE TABLE IF NOT EXISTS jobs (
    seq INTEGER PRIMARY KEY AUTOINCREMENT, id TEXT NOT NULL UNIQUE, kind TEXT NOT NULL, key TEXT NOT NULL,
    not_before REAL NOT NULL, lease_until REAL NOT NULL DEFAULT 0, data TEXT NOT NULL);
CREATE INDEX IF NOT EXISTS jobs_key ON jobs (key, seq);
CREATE INDEX IF NOT EXISTS jobs_due ON jobs (kind, not_before);
CREATE TABLE IF NOT EXISTS heads (
    key TEXT PRIMARY KEY, seq INTEGER NOT NULL UNIQUE, lane TEXT NOT NULL,
    not_before REAL NOT NULL, lease_until REAL NOT NULL DEFAULT 0);
CREATE INDEX IF NOT EXISTS heads_lane ON heads (lane, seq);
CREATE TABLE IF NOT EXISTS outbound (
    id TEXT PRIMARY KEY, channel TEXT NOT NULL, provider_message_id TEXT, data TEXT NOT NULL, sender_id TEXT);
CREATE TABLE IF NOT EXISTS subscriptions (
    id TEXT PRIMARY KEY, account_id TEXT NOT NULL, topic TEXT NOT NULL, data TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS event_failures (
    id TEXT PRIMARY KEY, subscription_id TEXT NOT NULL, data TEXT NOT NULL);
CREATE INDEX IF NOT EXISTS event_failures_subscription ON event_failures (subscription_id, id);
CREATE TABLE IF NOT EXISTS opt_outs (
    sender_id TEXT NOT NULL, contact TEXT NOT NULL, id TEXT NOT NULL, account_id TEXT NOT NULL, data TEXT NOT NULL,
    PRIMARY KEY (sender_id, contact));
CREATE INDEX IF NOT EXISTS opt_outs_account ON opt_outs (account_id, id);
CREATE INDEX IF NOT EXISTS opt_outs_account_sender ON opt_outs (account_id, sender_id, id);
"""

# Provider ids are indexed per sender (a provider id is unique only within one
# provider account). Databases made before the sender_id column get it here,
# filled from the stored records; the old per-channel index goes.
OUTBOUND_BY_SENDER = """
CREATE UNIQUE INDEX IF NOT EXISTS outbound_sender_provider ON outbound (sender_id, provider_message_id)
    WHERE provider_message_id IS NOT NULL;
"""
# What history filters and erases outbound messages by, as columns (filled
# from the records for a database made before them; account from the sender).
OUTBOUND_HISTORY_COLUMNS = {
    "account_id": "TEXT",
    "contact": "TEXT",
    "conversation_id": "TEXT",
    "state": "TEXT",
    "external_id": "TEXT",
    "created_at": "REAL",
    "updated_at": "REAL",
}
FILL_OUTBOUND_HISTORY = """
UPDATE outbound SET
    account_id = coalesce(json_extract(data, '$.account_id'),
                          (SELECT account_id FROM senders WHERE senders.id = outbound.sender_id)),
    contact = json_extract(data, '$.contact'),
    conversation_id = json_extract(data, '$.conversation_id'),
    state = json_extract(data, '$.state'),
    external_id = json_extract(data, '$.external_id'),
    created_at = (julianday(json_extract(data, '$.created_at')) - 2440587.5) * 86400.0,
    updated_at = (julianday(json_extract(data, '$.updated_at')) - 2440587.5) * 86400.0;
"""
OUTBOUND_INDEXES = """
CREATE INDEX IF NOT EXISTS outbound_account ON outbound (account_id, id);
CREATE INDEX IF NOT EXISTS outbound_contact ON outbound (sender_id, contact);
CREATE INDEX IF NOT EXISTS outbound_updated ON outbound (updated_at);
"""
MIGRATE_OUTBOUND = """
ALTER TABLE outbound ADD COLUMN sender_id TEXT;
UPDATE outbound SET sender_id = json_extract(data, '$.sender_id');
DROP INDEX IF EXISTS outbound_provider;
"""

# A job is runnable when due, not leased, and the oldest of its key: that one
# rule serializes a conversation's turns across every worker. `heads` holds
# each key's oldest job (its lane, due time and lease), so a claim reads the
# runnable heads in order, whatever the backlog behind them: the queue's cost
# does not grow with its length.
CLAIM = """
UPDATE heads SET lease_until = ? WHERE seq IN (
    SELECT h.seq FROM heads h JOIN jobs j ON j.seq = h.seq
    WHERE h.lane = ? AND h.not_before <= ? AND h.lease_until <= ? AND j.kind IN ({kinds})
    ORDER BY h.seq LIMIT ?)
RETURNING seq
"""
PROMOTE = """
INSERT OR IGNORE INTO heads (key, seq, lane, not_before)
SELECT key, seq, CASE kind WHEN 'event' THEN 'event' ELSE 'message' END, not_before
FROM jobs WHERE key = ? ORDER BY seq LIMIT 1
"""
REBUILD_HEADS = """
DELETE FROM heads;
INSERT INTO heads (key, seq, lane, not_before, lease_until)
SELECT key, seq, CASE kind WHEN 'event' THEN 'event' ELSE 'message' END, not_before, lease_until FROM jobs j
WHERE seq = (SELECT min(seq) FROM jobs k WHERE k.key = j.key);
"""


def lane_of(kind: str) -> str:
    return "event" if kind == "event" else "message"


PUT_CONVERSATION = (
    "INSERT INTO conversations VALUES (?, ?, ?) ON CONFLICT(sender_id, contact) DO UPDATE SET data=excluded.data"
)
PUT_OUTBOUND = (
    "INSERT INTO outbound (id, channel, provider_message_id, data, sender_id, account_id, contact, conversation_id,"
    " state, external_id, created_at, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) "
    "ON CONFLICT(id) DO UPDATE SET provider_message_id=excluded.provider_message_id, data=excluded.data,"
    " state=excluded.state, updated_at=excluded.updated_at"
)
PUT_CONVERSATION_LOG = (
    "INSERT INTO conversation_log VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT(id) DO UPDATE SET"
    " state=excluded.state, closed_at=excluded.closed_at, data=excluded.data"
)
ADD_HISTORY = "INSERT OR IGNORE INTO history VALUES (?, ?, ?, ?, ?, ?)"


def conversation_log_row(conversation: Conversation, data: str) -> tuple[Any, ...]:
    c = conversation
    return c.id, c.account_id, c.sender_id, c.connector_id, c.contact, c.state, c.opened_at, c.closed_at, data


def outbound_row(message: OutboundMessage, channel: str) -> tuple[Any, ...]:
    m = message
    return (
        m.id,
        channel,
        m.provider_message_id,
        m.model_dump_json(),
        m.sender_id,
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
    return e.id, e.conversation_id, e.sender_id, e.contact, e.at, e.model_dump_json()


def _where(clauses: list[tuple[str, object]]) -> tuple[str, list[object]]:
    """`AND`-joined conditions for the filters given (None: not filtered); the SQL is ours, the values bound."""
    given = [(sql, value) for sql, value in clauses if value is not None]
    return "".join(f" AND {sql}" for sql, _ in given), [value for _, value in given]


# Per record kind: list ids, read one, write one.
SECRET_SQL: dict[SecretKind, tuple[str, str, str]] = {
    "sender": (
        "SELECT id FROM senders ORDER BY id LIMIT ?",
        "SELECT data FROM senders WHERE id=?",
        "UPDATE senders SET data=? WHERE id=?",
    ),
    "connector": (
        "SELECT id FROM connectors ORDER BY id LIMIT ?",
        "SELECT data FROM connectors WHERE id=?",
        "UPDATE connectors SET data=? WHERE id=?",
    ),
    "subscription": (
        "SELECT id FROM subscriptions ORDER BY id LIMIT ?",
        "SELECT data FROM subscriptions WHERE id=?",
        "UPDATE subscriptions SET data=? WHERE id=?",
    ),
}


def path_from_url(url: str) -> str:
    """`sqlite:///rel/path`, `sqlite:////abs/path`, `sqlite://:memory:`."""
    parts = urlsplit(url)
    if parts.netloc == ":memory:" or parts.path in ("/:memory:", ""):
        return ":memory:"
    return parts.path[1:] if parts.path.startswith("/") else parts.path


logger = logging.getLogger("botbridge.sqlite")

T = TypeVar("T")
Row = tuple[Any, ...]
# A call and the future its caller awaits; None tells the thread to end.
Call = tuple[Callable[..., Any], tuple[Any, ...], "asyncio.Future[Any]"]
CHECKPOINT_EVERY = 1.0  # seconds between the background thread's WAL checkpoints
MAX_BATCH = 64  # calls sharing one commit at most: a bound on how long the first of them waits
ALONE = frozenset({"_connect", "_disconnect"})  # calls that open or close the connection run by themselves


def _settle(outcomes: list[tuple[asyncio.Future[Any], bool, Any]]) -> None:
    for future, ok, value in outcomes:
        if future.done():  # its caller was cancelled; the call ran all the same
            continue
        if ok:
            future.set_result(value)
        else:
            future.set_exception(value)


class SQLiteStore(Store):
    def __init__(self, path: str, clock: Clock) -> None:
        self.path = path
        self.clock = clock
        self._calls: queue.SimpleQueue[Call | None] | None = None
        self._thread: threading.Thread | None = None
        self._db: sqlite3.Connection | None = None  # touched only in the store's thread
        self._batched = False  # a group commit's transaction is open (the thread's own state)
        self._checkpoints: threading.Thread | None = None
        self._stop_checkpoints = threading.Event()

    # --- the thread ---

    async def _run(self, fn: Callable[..., T], *args: Any) -> T:
        if self._calls is None:
            raise StoreUnavailable("store is not open")
        future: asyncio.Future[T] = asyncio.get_running_loop().create_future()
        self._calls.put((fn, args, future))
        try:
            return await future
        except sqlite3.OperationalError as exc:
            raise StoreUnavailable(f"sqlite: {exc}") from exc

    def _serve(self, calls: queue.SimpleQueue[Call | None]) -> None:
        """The thread: take what is queued, run it in order, answer each caller on its loop."""
        carried: Call | None = None  # a call that must run alone, taken while filling a batch: it runs next
        ending = False
        while not ending:
            first = carried or calls.get()
            carried = None
            if first is None:
                break
            batch = [first]
            while len(batch) < MAX_BATCH and first[0].__name__ not in ALONE:
                try:
                    call = calls.get_nowait()
                except queue.Empty:
                    break
                if call is None:
                    ending = True
                    break
                if call[0].__name__ in ALONE:
                    carried = call
                    break
                batch.append(call)
            self._answer(self._one_call(batch[0]) if len(batch) == 1 else self._group(batch))
        # A caller that raced close() is told the store is closed, not left waiting.
        while True:
            try:
                late = calls.get_nowait()
            except queue.Empty:
                return
            if late is not None:
                self._answer([(late[2], False, StoreUnavailable("store is not open"))])

    @staticmethod
    def _answer(outcomes: list[tuple[asyncio.Future[Any], bool, Any]]) -> None:
        loops: dict[asyncio.AbstractEventLoop, list[tuple[asyncio.Future[Any], bool, Any]]] = {}
        for outcome in outcomes:
            loops.setdefault(outcome[0].get_loop(), []).append(outcome)
        for loop, settled in loops.items():
            try:
                loop.call_soon_threadsafe(_settle, settled)
            except RuntimeError:  # the caller's loop has closed: nobody is waiting
                pass

    @staticmethod
    def _one_call(call: Call) -> list[tuple[asyncio.Future[Any], bool, Any]]:
        fn, args, future = call
        try:
            return [(future, True, fn(*args))]
        except BaseException as exc:  # the caller's to handle, on its loop
            return [(future, False, exc)]

    def _group(self, batch: list[Call]) -> list[tuple[asyncio.Future[Any], bool, Any]]:
        """Run several calls in one transaction, each in its own savepoint; commit once."""
        db = self._db
        if db is None:
            return [(future, False, StoreUnavailable("store is not open")) for _, _, future in batch]
        try:
            db.execute("BEGIN IMMEDIATE")
        except sqlite3.Error as exc:
            return [(future, False, exc) for _, _, future in batch]
        outcomes: list[tuple[asyncio.Future[Any], bool, Any]] = []
        self._batched = True
        try:
            for fn, args, future in batch:
                db.execute("SAVEPOINT call")
                try:
                    outcomes.append((future, True, fn(*args)))
                except BaseException as exc:
                    db.execute("ROLLBACK TO call")
                    outcomes.append((future, False, exc))
                db.execute("RELEASE call")
            db.execute("COMMIT")
        except sqlite3.Error as exc:
            # Nothing of the batch is committed: every caller hears so, even one whose call had succeeded.
            if db.in_transaction:
                db.execute("ROLLBACK")
            return [(future, False, exc) for _, _, future in batch]
        finally:
            self._batched = False
        return outcomes

    @property
    def db(self) -> sqlite3.Connection:
        if self._db is None:
            raise StoreUnavailable("store is not open")
        return self._db

    @contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        db = self.db
        if self._batched:  # inside a group commit: the call's savepoint is its transaction
            yield db
            return
        db.execute("BEGIN IMMEDIATE")
        try:
            yield db
        except BaseException:
            db.execute("ROLLBACK")
            raise
        db.execute("COMMIT")

    def _one(self, sql: str, *args: object) -> Row | None:
        row: Row | None = self.db.execute(sql, args).fetchone()
        return row

    def _all(self, sql: str, *args: object) -> list[Row]:
        return self.db.execute(sql, args).fetchall()

    def _write(self, sql: str, *args: object) -> int:
        return self.db.execute(sql, args).rowcount

    def _connect(self) -> None:
        if self.path != ":memory:":
            Path(self.path).parent.mkdir(parents=True, exist_ok=True)
        db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        db.execute("PRAGMA journal_mode=WAL")
        db.execute("PRAGMA synchronous=NORMAL")
        db.execute("PRAGMA busy_timeout=5000")
        if self.path != ":memory:":
            db.execute("PRAGMA wal_autocheckpoint=0")  # the checkpoint thread's work (see the module's docstring)
        self._db = db
        self._migrate_api_keys()
        db.executescript(SCHEMA)
        columns = {row[1] for row in db.execute("PRAGMA table_info(outbound)")}
        if "sender_id" not in columns:
            db.executescript(f"BEGIN; {MIGRATE_OUTBOUND} COMMIT;")
        missing = [name for name in OUTBOUND_HISTORY_COLUMNS if name not in columns]
        if missing:
            added = "".join(f"ALTER TABLE outbound ADD COLUMN {n} {OUTBOUND_HISTORY_COLUMNS[n]};" for n in missing)
            db.executescript(f"BEGIN; {added} {FILL_OUTBOUND_HISTORY} COMMIT;")
        db.executescript(OUTBOUND_BY_SENDER + OUTBOUND_INDEXES)
        # Heads are derived from jobs: rebuilt at each start (also for a database made before them).
        db.executescript(f"BEGIN; {REBUILD_HEADS} COMMIT;")

    def _migrate_api_keys(self) -> None:
        # Before key life cycles a key was (key_hash, account_id), and every
        # key came from BOTBRIDGE_API_KEYS: they become "setting" keys, so the
        # next reconciliation revokes those no longer in the setting.
        with self._transaction() as db:
            columns = {row[1] for row in db.execute("PRAGMA table_info(api_keys)")}
            if not columns or "id" in columns:
                return
            db.execute("ALTER TABLE api_keys RENAME TO api_keys_v1")
            db.execute(API_KEYS_TABLE)
            now = self.clock.now()
            db.executemany(
                INSERT_KEY,
                [
                    (new_id(now), key_hash, account_id, "", "setting", now, None, None)
                    for key_hash, account_id in db.execute("SELECT key_hash, account_id FROM api_keys_v1")
                ],
            )
            db.execute("DROP TABLE api_keys_v1")

    def _disconnect(self) -> None:
        if self._db is not None:
            self._db.close()
            self._db = None

    async def open(self) -> None:
        self._calls = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._serve, args=(self._calls,), name="botbridge-sqlite", daemon=True)
        self._thread.start()
        await self._run(self._connect)
        if self.path != ":memory:":
            self._stop_checkpoints.clear()
            self._checkpoints = threading.Thread(target=self._checkpoint, name="botbridge-sqlite-wal", daemon=True)
            self._checkpoints.start()

    def _checkpoint(self) -> None:
        """The checkpoint thread: a passive checkpoint every `CHECKPOINT_EVERY`; it never blocks a writer."""
        with closing(sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)) as db:
            while not self._stop_checkpoints.wait(CHECKPOINT_EVERY):
                try:
                    db.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchall()
                except sqlite3.Error as exc:  # busy or failing disk: the next round tries again
                    logger.warning("sqlite WAL checkpoint failed: %s", exc)

    async def close(self) -> None:
        if self._checkpoints is not None:
            self._stop_checkpoints.set()
            await asyncio.to_thread(self._checkpoints.join)
            self._checkpoints = None
        if self._calls is not None and self._thread is not None:
            await self._run(self._disconnect)
            calls, thread = self._calls, self._thread
            self._calls = self._thread = None  # a call from now on fails at once (StoreUnavailable)
            calls.put(None)
            await asyncio.to_thread(thread.join)

    def durability(self) -> Durability:
        # The database is a file of this process: what committed survives a crash of it.
        if self.path == ":memory:":
            return Durability(False, "sqlite in memory: nothing is kept")
        return Durability(True, "sqlite journal_mode=wal synchronous=normal")

    async def ping(self) -> bool:
        try:
            await self._run(self._one, "SELECT 1")
            return True
        except (sqlite3.Error, StoreUnavailable):
            return False

    # --- API keys ---

    async def create_api_key(self, key: ApiKey) -> bool:
        inserted = await self._run(
            self._write,
            INSERT_KEY,
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

    @staticmethod
    def _api_key(row: Row | None) -> ApiKey | None:
        return ApiKey.model_validate(dict(zip(API_KEY_COLUMNS, row, strict=True))) if row else None

    async def api_key_by_hash(self, key_hash: str) -> ApiKey | None:
        return self._api_key(await self._run(self._one, SELECT_KEYS + " WHERE key_hash=?", key_hash))

    async def get_api_key(self, key_id: str) -> ApiKey | None:
        return self._api_key(await self._run(self._one, SELECT_KEYS + " WHERE id=?", key_id))

    async def list_api_keys(
        self, account_id: str | None = None, *, limit: int = 50, after: str | None = None
    ) -> list[ApiKey]:
        sql = SELECT_KEYS + " WHERE id>?"
        args: list[object] = [after or ""]
        if account_id is not None:
            sql += " AND account_id=?"
            args.append(account_id)
        rows = await self._run(self._all, sql + " ORDER BY id LIMIT ?", *args, limit)
        return [key for row in rows if (key := self._api_key(row)) is not None]

    async def touch_api_key(self, key_id: str, at: float) -> None:
        await self._run(self._write, "UPDATE api_keys SET last_used_at=? WHERE id=?", at, key_id)

    async def revoke_api_key(self, key_id: str, at: float) -> bool:
        changed = await self._run(
            self._write, "UPDATE api_keys SET revoked_at=? WHERE id=? AND revoked_at IS NULL", at, key_id
        )
        return changed > 0

    # --- host metadata ---

    async def get_meta(self, name: str) -> str | None:
        row = await self._run(self._one, "SELECT value FROM meta WHERE name=?", name)
        return row[0] if row else None

    async def put_meta(self, name: str, value: str, *, only_if_absent: bool = False) -> bool:
        sql = (
            "INSERT INTO meta VALUES (?, ?) ON CONFLICT(name) DO NOTHING"
            if only_if_absent
            else "INSERT INTO meta VALUES (?, ?) ON CONFLICT(name) DO UPDATE SET value=excluded.value"
        )
        return await self._run(self._write, sql, name, value) > 0

    # --- stored secrets ---

    async def secret_record_ids(self, kind: SecretKind, *, limit: int | None = None) -> list[str]:
        rows = await self._run(self._all, SECRET_SQL[kind][0], -1 if limit is None else limit)
        return [row[0] for row in rows]

    def _replace_secrets(self, kind: SecretKind, record_id: str, expected: dict[str, str], new: dict[str, str]) -> bool:
        with self._transaction() as db:
            _, select, update = SECRET_SQL[kind]
            row = db.execute(select, (record_id,)).fetchone()
            if row is None:
                return False
            record = SECRET_MODELS[kind].model_validate_json(row[0])
            if any(getattr(record, field) != value for field, value in expected.items()):
                return False
            db.execute(update, (record.model_copy(update=new).model_dump_json(), record_id))
        return True

    async def replace_secrets(
        self, kind: SecretKind, record_id: str, expected: dict[str, str], new: dict[str, str]
    ) -> bool:
        check_secret_fields(kind, expected, new)
        return await self._run(self._replace_secrets, kind, record_id, expected, new)

    # --- senders ---

    async def create_sender(self, sender: Sender) -> None:
        await self._run(
            self._write, "INSERT INTO senders VALUES (?, ?, ?)", sender.id, sender.account_id, sender.model_dump_json()
        )

    async def get_sender(self, sender_id: str) -> Sender | None:
        row = await self._run(self._one, "SELECT data FROM senders WHERE id=?", sender_id)
        return Sender.model_validate_json(row[0]) if row else None

    async def list_senders(self, account_id: str, *, limit: int = 50, after: str | None = None) -> list[Sender]:
        rows = await self._run(
            self._all,
            "SELECT data FROM senders WHERE account_id=? AND id>? ORDER BY id LIMIT ?",
            account_id,
            after or "",
            limit,
        )
        return [Sender.model_validate_json(r[0]) for r in rows]

    async def update_sender(self, sender: Sender) -> None:
        await self._run(self._write, "UPDATE senders SET data=? WHERE id=?", sender.model_dump_json(), sender.id)

    async def delete_sender(self, sender_id: str) -> bool:
        return await self._run(self._write, "DELETE FROM senders WHERE id=?", sender_id) > 0

    # --- connectors ---

    async def create_connector(self, connector: Connector) -> None:
        try:
            await self._run(
                self._write,
                "INSERT INTO connectors VALUES (?, ?, ?, ?, ?, ?, ?)",
                connector.id,
                connector.account_id,
                connector.sender_id,
                connector.type,
                connector.external_id,
                connector.version_number,
                connector.model_dump_json(),
            )
        except sqlite3.IntegrityError:
            raise SenderTaken(connector.sender_id) from None

    async def get_connector(self, connector_id: str) -> Connector | None:
        row = await self._run(self._one, "SELECT data FROM connectors WHERE id=?", connector_id)
        return Connector.model_validate_json(row[0]) if row else None

    async def connector_for_sender(self, sender_id: str) -> Connector | None:
        row = await self._run(self._one, "SELECT data FROM connectors WHERE sender_id=?", sender_id)
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
        rows = await self._run(self._all, sql + " ORDER BY id LIMIT ?", *args, limit)
        return [Connector.model_validate_json(r[0]) for r in rows]

    async def update_connector(self, connector: Connector, expected_version: int) -> None:
        try:
            changed = await self._run(
                self._write,
                "UPDATE connectors SET sender_id=?, type=?, external_id=?, version_number=?, data=? "
                "WHERE id=? AND version_number=?",
                connector.sender_id,
                connector.type,
                connector.external_id,
                connector.version_number,
                connector.model_dump_json(),
                connector.id,
                expected_version,
            )
        except sqlite3.IntegrityError:
            raise SenderTaken(connector.sender_id) from None
        if changed == 0:
            raise VersionConflict(connector.id)

    async def delete_connector(self, connector_id: str) -> bool:
        return await self._run(self._write, "DELETE FROM connectors WHERE id=?", connector_id) > 0

    # --- conversations ---

    async def get_conversation(self, sender_id: str, contact: str) -> Conversation | None:
        row = await self._run(
            self._one, "SELECT data FROM conversations WHERE sender_id=? AND contact=?", sender_id, contact
        )
        return Conversation.model_validate_json(row[0]) if row else None

    async def put_conversation(self, conversation: Conversation) -> None:
        await self.write(Writes(conversations=[conversation]))

    # --- history ---

    async def get_conversation_by_id(self, conversation_id: str) -> Conversation | None:
        row = await self._run(self._one, "SELECT data FROM conversation_log WHERE id=?", conversation_id)
        return Conversation.model_validate_json(row[0]) if row else None

    async def list_conversations(
        self, account_id: str, where: ConversationFilter, *, limit: int = 50, before: str | None = None
    ) -> list[Conversation]:
        conditions, values = _where(
            [
                ("sender_id=?", where.sender_id),
                ("connector_id=?", where.connector_id),
                ("contact=?", where.contact),
                ("state=?", where.state),
                ("opened_at>=?", where.since),
                ("opened_at<?", where.until),
                ("id<?", before),
            ]
        )
        sql = f"SELECT data FROM conversation_log WHERE account_id=?{conditions} ORDER BY id DESC LIMIT ?"  # noqa: S608
        rows = await self._run(self._all, sql, account_id, *values, limit)
        return [Conversation.model_validate_json(r[0]) for r in rows]

    async def add_history(self, entry: HistoryEntry) -> None:
        await self.write(Writes(history=[entry]))

    async def list_history(
        self, conversation_id: str, *, limit: int = 200, after: str | None = None
    ) -> list[HistoryEntry]:
        rows = await self._run(
            self._all,
            "SELECT data FROM history WHERE conversation_id=? AND id>? ORDER BY id LIMIT ?",
            conversation_id,
            after or "",
            limit,
        )
        return [HistoryEntry.model_validate_json(r[0]) for r in rows]

    async def list_outbound(
        self, account_id: str, where: MessageFilter, *, limit: int = 50, before: str | None = None
    ) -> list[OutboundMessage]:
        conditions, values = _where(
            [
                ("sender_id=?", where.sender_id),
                ("contact=?", where.contact),
                ("state=?", where.state),
                ("external_id=?", where.external_id),
                ("conversation_id=?", where.conversation_id),
                ("created_at>=?", where.since),
                ("created_at<?", where.until),
                ("id<?", before),
            ]
        )
        sql = f"SELECT data FROM outbound WHERE account_id=?{conditions} ORDER BY id DESC LIMIT ?"  # noqa: S608
        rows = await self._run(self._all, sql, account_id, *values, limit)
        return [OutboundMessage.model_validate_json(r[0]) for r in rows]

    async def append_stream(self, items: Sequence[StreamItem]) -> None:
        await self.write(Writes(stream=list(items)))

    async def read_stream(self, account_id: str, *, after: str | None = None, limit: int = 100) -> list[StreamItem]:
        rows = await self._run(
            self._all,
            "SELECT data FROM stream WHERE account_id=? AND id>? ORDER BY id LIMIT ?",
            account_id,
            after or "",
            limit,
        )
        return [StreamItem.model_validate_json(r[0]) for r in rows]

    async def trim_stream(self, before: float) -> int:
        return await self._run(self._write, "DELETE FROM stream WHERE at<?", before)

    def _purge(self, before: float) -> int:
        with self._transaction() as db:
            gone = db.execute("DELETE FROM history WHERE at<?", (before,)).rowcount
            gone += db.execute(
                "DELETE FROM conversation_log WHERE state='closed' AND coalesce(closed_at, opened_at)<?"
                " AND id NOT IN (SELECT json_extract(data, '$.id') FROM conversations)",
                (before,),
            ).rowcount
            gone += db.execute("DELETE FROM outbound WHERE updated_at<?", (before,)).rowcount
        return gone

    async def purge_history(self, before: float) -> int:
        return await self._run(self._purge, before)

    def _erase(self, account_id: str, contact: str, sender_ids: list[str]) -> int:
        senders = ",".join("?" * len(sender_ids))
        with self._transaction() as db:
            gone = 0
            for table in ("conversations", "conversation_log", "history", "outbound"):
                gone += db.execute(
                    f"DELETE FROM {table} WHERE sender_id IN ({senders}) AND contact=?",  # noqa: S608
                    (*sender_ids, contact),
                ).rowcount
            subscriptions = [r[0] for r in db.execute("SELECT id FROM subscriptions WHERE account_id=?", (account_id,))]
            marks = ",".join("?" * len(subscriptions))
            failures = [
                failure.id
                for (data,) in db.execute(
                    f"SELECT data FROM event_failures WHERE subscription_id IN ({marks})",  # noqa: S608
                    subscriptions,
                )
                if names_contact((failure := EventFailure.model_validate_json(data)).event, contact)
            ]
            gone += db.executemany("DELETE FROM event_failures WHERE id=?", [(i,) for i in failures]).rowcount
            keys = {conversation_key(sender_id, contact) for sender_id in sender_ids}
            doomed = [
                (seq, key)
                for seq, key, kind, data in db.execute(
                    f"SELECT seq, key, kind, data FROM jobs WHERE key IN ({','.join('?' * len(keys))})"  # noqa: S608
                    " OR kind='event'",
                    list(keys),
                )
                if key in keys or self._event_job_names(data, set(subscriptions), contact)
            ]
            for seq, key in doomed:
                db.execute("DELETE FROM jobs WHERE seq=?", (seq,))
                if db.execute("DELETE FROM heads WHERE seq=?", (seq,)).rowcount:
                    db.execute(PROMOTE, (key,))
            gone += len(doomed)
        return gone

    @staticmethod
    def _event_job_names(data: str, subscriptions: set[str], contact: str) -> bool:
        payload = Job.model_validate_json(data).payload
        return payload.get("subscription_id") in subscriptions and names_contact(payload.get("event", {}), contact)

    async def erase_contact(self, account_id: str, contact: str, sender_ids: Sequence[str]) -> int:
        if not sender_ids:
            return 0
        return await self._run(self._erase, account_id, contact, list(sender_ids))

    # --- dedupe ---

    def _claim(self, key: str, expires_at: float, now: float) -> bool:
        # One statement: insert, or take over an expired claim; rowcount says who won.
        return (
            self._write(
                "INSERT INTO claims VALUES (?, ?) ON CONFLICT(key) DO UPDATE SET expires_at=excluded.expires_at "
                "WHERE claims.expires_at <= ?",
                key,
                expires_at,
                now,
            )
            > 0
        )

    async def claim(self, key: str, ttl: float) -> bool:
        now = self.clock.now()
        return await self._run(self._claim, key, now + ttl, now)

    # --- the durable work queue ---

    def _insert_jobs(self, db: sqlite3.Connection, jobs: Sequence[Job]) -> None:
        for job in jobs:
            seq = db.execute(
                "INSERT INTO jobs (id, kind, key, not_before, data) VALUES (?, ?, ?, ?, ?) RETURNING seq",
                (job.id, job.kind, job.key, job.not_before, job.model_dump_json()),
            ).fetchone()[0]
            # The first job of its key is its head; later ones wait behind it.
            db.execute(
                "INSERT OR IGNORE INTO heads (key, seq, lane, not_before) VALUES (?, ?, ?, ?)",
                (job.key, seq, lane_of(job.kind), job.not_before),
            )

    def _enqueue(self, jobs: Sequence[Job], dedupe_key: str | None, expires_at: float, now: float) -> bool:
        with self._transaction() as db:
            if dedupe_key is not None and not self._claim(dedupe_key, expires_at, now):
                return False
            self._insert_jobs(db, jobs)
        return True

    async def enqueue(self, jobs: Sequence[Job], *, dedupe_key: str | None = None, dedupe_ttl: float = 0.0) -> bool:
        now = self.clock.now()
        return await self._run(self._enqueue, list(jobs), dedupe_key, now + dedupe_ttl, now)

    def _claim_jobs(self, kinds: Sequence[str], limit: int, lease_until: float, now: float) -> list[Job]:
        seqs: list[int] = []
        for lane in dict.fromkeys(lane_of(kind) for kind in kinds):
            wanted = [kind for kind in kinds if lane_of(kind) == lane]
            sql = CLAIM.format(kinds=",".join("?" * len(wanted)))
            rows = self.db.execute(sql, (lease_until, lane, now, now, *wanted, limit - len(seqs))).fetchall()
            seqs += sorted(row[0] for row in rows)
            if len(seqs) >= limit:
                break
        if not seqs:
            return []
        marks = ",".join("?" * len(seqs))
        data = dict(self.db.execute(f"SELECT seq, data FROM jobs WHERE seq IN ({marks})", seqs).fetchall())  # noqa: S608
        return [Job.model_validate_json(data[seq]) for seq in seqs]

    async def claim_jobs(self, kinds: Sequence[str], *, limit: int, lease: float) -> list[Job]:
        now = self.clock.now()
        return await self._run(self._claim_jobs, list(kinds), limit, now + lease, now)

    def _complete(
        self, job_id: str, then: Sequence[Job], writes: Writes | None = None, take: Take | None = None
    ) -> Job | None:
        with self._transaction() as db:
            if writes:
                self._write_records(db, writes)
            done = db.execute("DELETE FROM jobs WHERE id=? RETURNING seq, key", (job_id,)).fetchone()
            if done is not None and db.execute("DELETE FROM heads WHERE seq=?", (done[0],)).rowcount:
                db.execute(PROMOTE, (done[1],))
            self._insert_jobs(db, then)
            return self._take(db, then, take) if take else None

    def _take(self, db: sqlite3.Connection, then: Sequence[Job], take: Take) -> Job | None:
        now = self.clock.now()
        follow_up = next((j for j in then if j.kind in take.kinds), None)
        if follow_up is None or follow_up.not_before > now:
            return None
        # Leased only if it is its key's head: nothing of its key queued ahead of it.
        leased = db.execute(
            "UPDATE heads SET lease_until=? WHERE seq=(SELECT seq FROM jobs WHERE id=?) RETURNING seq",
            (now + take.lease, follow_up.id),
        ).fetchone()
        return follow_up if leased else None

    async def complete_job(self, job: Job, *, then: Sequence[Job] = ()) -> None:
        await self._run(self._complete, job.id, list(then))

    async def finish_job(
        self, job: Job, *, then: Sequence[Job] = (), writes: Writes | None = None, take: Take | None = None
    ) -> Job | None:
        return await self._run(self._complete, job.id, list(then), writes, take)

    @staticmethod
    def _write_records(db: sqlite3.Connection, writes: Writes) -> None:
        for conversation in writes.conversations:
            data = conversation.model_dump_json()
            db.execute(PUT_CONVERSATION, (conversation.sender_id, conversation.contact, data))
            db.execute(PUT_CONVERSATION_LOG, conversation_log_row(conversation, data))
        db.executemany(PUT_OUTBOUND, [outbound_row(m, channel) for m, channel in writes.outbound])
        db.executemany(ADD_HISTORY, [history_row(e) for e in writes.history])
        db.executemany(
            "INSERT OR IGNORE INTO stream VALUES (?, ?, ?, ?)",
            [(i.id, i.account_id, i.at, i.model_dump_json()) for i in writes.stream],
        )

    def _write_all(self, writes: Writes) -> None:
        with self._transaction() as db:
            self._write_records(db, writes)

    async def write(self, writes: Writes) -> None:
        await self._run(self._write_all, writes)

    def _retry(self, job_id: str, data: str, not_before: float) -> None:
        with self._transaction() as db:
            row = db.execute(
                "UPDATE jobs SET data=?, not_before=? WHERE id=? RETURNING seq", (data, not_before, job_id)
            ).fetchone()
            if row is not None:
                db.execute("UPDATE heads SET not_before=?, lease_until=0 WHERE seq=?", (not_before, row[0]))

    async def retry_job(self, job: Job, *, not_before: float, error: str) -> None:
        retried = job.model_copy(update={"attempts": job.attempts + 1, "not_before": not_before, "last_error": error})
        await self._run(self._retry, job.id, retried.model_dump_json(), not_before)

    async def release_leases(self) -> int:
        return await self._run(self._write, "UPDATE heads SET lease_until=0 WHERE lease_until>0")

    async def queue_depth(self) -> dict[str, int]:
        rows = await self._run(self._all, "SELECT kind, count(*) FROM jobs GROUP BY kind")
        return {row[0]: row[1] for row in rows}

    # --- outbound messages ---

    async def put_outbound(self, message: OutboundMessage, channel: str) -> None:
        await self._run(self._write, PUT_OUTBOUND, *outbound_row(message, channel))

    async def get_outbound(self, message_id: str) -> OutboundMessage | None:
        row = await self._run(self._one, "SELECT data FROM outbound WHERE id=?", message_id)
        return OutboundMessage.model_validate_json(row[0]) if row else None

    async def outbound_by_provider_id(self, sender_id: str, provider_message_id: str) -> OutboundMessage | None:
        row = await self._run(
            self._one,
            "SELECT data FROM outbound WHERE sender_id=? AND provider_message_id=?",
            sender_id,
            provider_message_id,
        )
        return OutboundMessage.model_validate_json(row[0]) if row else None

    # --- opt-outs ---
    # Not erased by erase_contact: the suppression list is what proves an opt-out is honoured.

    async def put_opt_out(self, opt_out: OptOut) -> bool:
        # One statement: the primary key decides, an existing opt-out stays as it is.
        inserted = await self._run(
            self._write,
            "INSERT INTO opt_outs VALUES (?, ?, ?, ?, ?) ON CONFLICT(sender_id, contact) DO NOTHING",
            opt_out.sender_id,
            opt_out.contact,
            opt_out.id,
            opt_out.account_id,
            opt_out.model_dump_json(),
        )
        return inserted > 0

    async def get_opt_out(self, sender_id: str, contact: str) -> OptOut | None:
        row = await self._run(
            self._one, "SELECT data FROM opt_outs WHERE sender_id=? AND contact=?", sender_id, contact
        )
        return OptOut.model_validate_json(row[0]) if row else None

    async def delete_opt_out(self, sender_id: str, contact: str) -> bool:
        deleted = await self._run(
            self._write, "DELETE FROM opt_outs WHERE sender_id=? AND contact=?", sender_id, contact
        )
        return deleted > 0

    async def list_opt_outs(
        self, account_id: str, *, sender_id: str | None = None, limit: int = 50, after: str | None = None
    ) -> list[OptOut]:
        sql = "SELECT data FROM opt_outs WHERE account_id=? AND id>?"
        args: list[object] = [account_id, after or ""]
        if sender_id is not None:
            sql += " AND sender_id=?"
            args.append(sender_id)
        rows = await self._run(self._all, sql + " ORDER BY id LIMIT ?", *args, limit)
        return [OptOut.model_validate_json(r[0]) for r in rows]

    # --- subscriptions ---

    async def create_subscription(self, subscription: Subscription) -> None:
        await self._run(
            self._write,
            "INSERT INTO subscriptions VALUES (?, ?, ?, ?)",
            subscription.id,
            subscription.account_id,
            subscription.topic,
            subscription.model_dump_json(),
        )

    async def get_subscription(self, subscription_id: str) -> Subscription | None:
        row = await self._run(self._one, "SELECT data FROM subscriptions WHERE id=?", subscription_id)
        return Subscription.model_validate_json(row[0]) if row else None

    async def list_subscriptions(
        self, account_id: str, *, topic: str | None = None, limit: int = 50, after: str | None = None
    ) -> list[Subscription]:
        sql = "SELECT data FROM subscriptions WHERE account_id=? AND id>?"
        args: list[object] = [account_id, after or ""]
        if topic is not None:
            sql += " AND topic=?"
            args.append(topic)
        rows = await self._run(self._all, sql + " ORDER BY id LIMIT ?", *args, limit)
        return [Subscription.model_validate_json(r[0]) for r in rows]

    async def delete_subscription(self, subscription_id: str) -> bool:
        return await self._run(self._write, "DELETE FROM subscriptions WHERE id=?", subscription_id) > 0

    async def add_event_failure(self, failure: EventFailure) -> None:
        await self._run(
            self._write,
            "INSERT INTO event_failures VALUES (?, ?, ?)",
            failure.id,
            failure.subscription_id,
            failure.model_dump_json(),
        )

    async def list_event_failures(
        self, subscription_id: str, *, limit: int = 50, after: str | None = None
    ) -> list[EventFailure]:
        rows = await self._run(
            self._all,
            "SELECT data FROM event_failures WHERE subscription_id=? AND id>? ORDER BY id LIMIT ?",
            subscription_id,
            after or "",
            limit,
        )
        return [EventFailure.model_validate_json(r[0]) for r in rows]


@hookimpl
def register_stores(register):  # type: ignore[no-untyped-def]
    register("sqlite", lambda url, clock: SQLiteStore(path_from_url(url), clock))
