"""Core's embedded stores pass the store contract."""

from __future__ import annotations

import sqlite3
from contextlib import closing
from pathlib import Path

import pytest

from botbridge.clock import FakeClock
from botbridge.models import Job, OutboundMessage
from botbridge.store import Store
from botbridge.stores.memory import MemoryStore
from botbridge.stores.sqlite import SQLiteStore, path_from_url
from botbridge.testing import StoreContract


class TestMemoryStore(StoreContract):
    def create_store(self, clock: FakeClock) -> Store:
        return MemoryStore(clock)


class TestSQLiteStore(StoreContract):
    @pytest.fixture(autouse=True)
    def _db_path(self, tmp_path: Path) -> None:
        self.path = str(tmp_path / "data" / "botbridge.db")

    def create_store(self, clock: FakeClock) -> Store:
        return SQLiteStore(self.path, clock)

    async def reopen(self, store: Store, clock: FakeClock) -> Store | None:
        reopened = SQLiteStore(self.path, clock)
        await reopened.open()
        return reopened


class TestSQLiteInMemory(StoreContract):
    def create_store(self, clock: FakeClock) -> Store:
        return SQLiteStore(":memory:", clock)


@pytest.mark.parametrize(
    ("url", "path"),
    [
        ("sqlite:///botbridge.db", "botbridge.db"),
        ("sqlite:///data/x.db", "data/x.db"),
        ("sqlite:////var/lib/x.db", "/var/lib/x.db"),
        ("sqlite://:memory:", ":memory:"),
        ("sqlite://", ":memory:"),
    ],
)
def test_sqlite_urls(url: str, path: str) -> None:
    assert path_from_url(url) == path


@pytest.mark.anyio
async def test_closed_sqlite_store_is_not_ready(tmp_path: Path) -> None:
    store = SQLiteStore(str(tmp_path / "x.db"), FakeClock())
    await store.open()
    assert await store.ping()
    await store.close()
    assert not await store.ping()


@pytest.mark.anyio
async def test_a_failing_write_among_concurrent_ones_rolls_back_alone(tmp_path: Path) -> None:
    import asyncio

    from botbridge.errors import SenderTaken
    from botbridge.models import Connector, Sender

    store = SQLiteStore(str(tmp_path / "group.db"), FakeClock())
    await store.open()
    try:
        first = Connector(account_id="a", type="ECHO", sender_id="s1")
        clash = Connector(account_id="a", type="ECHO", sender_id="s1")
        sender = Sender(account_id="a", channel="loop", address="+1")
        results = await asyncio.gather(
            store.create_connector(first),
            store.create_connector(clash),
            store.create_sender(sender),
            store.claim("k", 60),
            return_exceptions=True,
        )
        assert results[0] is None and isinstance(results[1], SenderTaken) and results[3] is True
        reopened = SQLiteStore(str(tmp_path / "group.db"), FakeClock())
        await reopened.open()
        try:
            assert await reopened.get_sender(sender.id) == sender
            assert (await reopened.connector_for_sender("s1")).id == first.id  # type: ignore[union-attr]
        finally:
            await reopened.close()
    finally:
        await store.close()


@pytest.mark.anyio
async def test_calls_that_queue_up_share_one_commit_and_each_hears_after_it(tmp_path: Path) -> None:
    import asyncio

    store = SQLiteStore(str(tmp_path / "group.db"), FakeClock())
    await store.open()
    statements: list[str] = []
    try:
        assert store._db is not None
        store._db.set_trace_callback(statements.append)
        jobs = [Job(kind="mo", key=f"k{i}", payload={"n": i}) for i in range(40)]
        assert all(await asyncio.gather(*(store.enqueue([job], dedupe_key=job.id, dedupe_ttl=60) for job in jobs)))
        store._db.set_trace_callback(None)
        commits = statements.count("COMMIT")
        # 40 transactions of their own before; queued behind each other they share a few
        assert 1 <= commits < 20
        assert statements.count("SAVEPOINT call") >= 40 - commits
        # a duplicate among them is refused alone, the rest of its batch stays
        again = await asyncio.gather(
            store.enqueue([jobs[0]], dedupe_key=jobs[0].id, dedupe_ttl=60),
            store.enqueue([Job(kind="mo", key="new", payload={})]),
        )
        assert again == [False, True]
    finally:
        await store.close()
    reopened = SQLiteStore(str(tmp_path / "group.db"), FakeClock())
    await reopened.open()
    try:
        assert (await reopened.queue_depth())["mo"] == 41  # every answer came after its commit
    finally:
        await reopened.close()


@pytest.mark.anyio
async def test_a_caller_cancelled_while_its_call_waits_does_not_stop_the_others(tmp_path: Path) -> None:
    import asyncio

    store = SQLiteStore(str(tmp_path / "cancel.db"), FakeClock())
    await store.open()
    try:
        first = asyncio.ensure_future(store.enqueue([Job(kind="mo", key="a", payload={})]))
        second = asyncio.ensure_future(store.enqueue([Job(kind="mo", key="b", payload={})]))
        first.cancel()
        assert await second is True
        assert (await store.queue_depth())["mo"] in (1, 2)  # the cancelled call may have run: its caller left
        assert await store.ping()
    finally:
        await store.close()


@pytest.mark.anyio
async def test_sqlite_database_from_before_per_sender_provider_ids_is_migrated(tmp_path: Path) -> None:
    # The outbound table as it was when provider ids were indexed per channel.
    path = tmp_path / "old.db"
    message = OutboundMessage(sender_id="s-a", contact="+1", text="hi", provider_message_id="p-1", state="SENT")
    with closing(sqlite3.connect(path)) as db:
        db.executescript(
            "CREATE TABLE outbound (id TEXT PRIMARY KEY, channel TEXT NOT NULL, provider_message_id TEXT, "
            "data TEXT NOT NULL);"
            "CREATE UNIQUE INDEX outbound_provider ON outbound (channel, provider_message_id) "
            "WHERE provider_message_id IS NOT NULL;"
        )
        db.execute("INSERT INTO outbound VALUES (?, 'sinch', 'p-1', ?)", (message.id, message.model_dump_json()))
        db.commit()
    store = SQLiteStore(str(path), FakeClock())
    await store.open()
    try:
        assert await store.outbound_by_provider_id("s-a", "p-1") == message
        assert await store.outbound_by_provider_id("s-b", "p-1") is None
        # the per-channel uniqueness is gone: another sender's message may carry the same id
        theirs = OutboundMessage(sender_id="s-b", contact="+2", text="x", provider_message_id="p-1", state="SENT")
        await store.put_outbound(theirs, "sinch")
        assert await store.outbound_by_provider_id("s-b", "p-1") == theirs
        assert await store.outbound_by_provider_id("s-a", "p-1") == message
    finally:
        await store.close()


def test_store_migrate_command_on_a_store_without_migrations(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from botbridge.cli import main

    monkeypatch.setenv("BOTBRIDGE_STORE", f"sqlite:///{tmp_path}/bb.db")
    assert main(["store", "migrate"]) == 0
    assert capsys.readouterr().out == "the store's schema is up to date\n"


@pytest.mark.anyio
async def test_sqlite_keys_of_the_first_schema_become_setting_keys(tmp_path: Path) -> None:
    import sqlite3

    path = str(tmp_path / "old.db")
    old = sqlite3.connect(path)
    old.execute("CREATE TABLE api_keys (key_hash TEXT PRIMARY KEY, account_id TEXT NOT NULL)")
    old.executemany("INSERT INTO api_keys VALUES (?, ?)", [("h1", "acct-a"), ("h2", "acct-b")])
    old.commit()
    old.close()
    clock = FakeClock()
    for _ in range(2):  # a second open finds the new schema and changes nothing
        store = SQLiteStore(path, clock)
        await store.open()
        try:
            keys = await store.list_api_keys(None)
            assert {(k.key_hash, k.account_id, k.source, k.revoked) for k in keys} == {
                ("h1", "acct-a", "setting", False),
                ("h2", "acct-b", "setting", False),
            }
            assert all(k.created_at == clock.now() for k in keys)
        finally:
            await store.close()


def test_a_claim_reads_runnable_heads_in_order_without_sorting_the_queue() -> None:
    # The queue's cost must not grow with its backlog: a claim walks the heads
    # of one lane in order through their index; it never sorts or scans jobs.
    from botbridge.stores.sqlite import CLAIM, SCHEMA

    with closing(sqlite3.connect(":memory:")) as db:
        db.executescript(SCHEMA)
        plan = " | ".join(
            row[3]
            for row in db.execute(
                "EXPLAIN QUERY PLAN " + CLAIM.format(kinds="?,?"), (1.0, "message", 0.0, 0.0, "mo", "mt", 1)
            )
        )
    assert "USING INDEX heads_lane (lane=?)" in plan, plan
    assert "TEMP B-TREE" not in plan and "SCAN" not in plan, plan


@pytest.mark.anyio
async def test_a_database_from_before_key_heads_gets_them_at_open(tmp_path: Path) -> None:
    path = str(tmp_path / "old.db")
    store = SQLiteStore(path, FakeClock())
    await store.open()
    await store.enqueue([Job(kind="mo", key="conv", payload={"n": n}) for n in range(3)] + [Job(kind="event", key="e")])
    await store.close()
    with closing(sqlite3.connect(path)) as db:
        db.execute("DROP TABLE heads")  # as a database made before them
        db.commit()
    store = SQLiteStore(path, FakeClock())
    await store.open()
    try:
        [first] = await store.claim_jobs(["mo"], limit=5, lease=30)
        assert first.payload == {"n": 0}
        assert [j.key for j in await store.claim_jobs(["event"], limit=5, lease=30)] == ["e"]
        await store.finish_job(first)
        [second] = await store.claim_jobs(["mo"], limit=5, lease=30)
        assert second.payload == {"n": 1}
    finally:
        await store.close()


@pytest.mark.anyio
async def test_after_an_erasure_no_row_of_the_sqlite_file_names_the_contact(tmp_path: Path) -> None:
    from botbridge.testing.stores import StoreContract

    path = str(tmp_path / "erase.db")
    store = SQLiteStore(path, FakeClock())
    await store.open()
    try:
        await StoreContract().test_erasing_a_contact_leaves_nothing_of_them(store)
    finally:
        await store.close()
    with closing(sqlite3.connect(path)) as db:
        tables = [r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type='table'")]
        rows = [(t, repr(row)) for t in tables for row in db.execute(f'SELECT * FROM "{t}"')]  # noqa: S608
    assert [t for t, row in rows if "+1555" in row] == []
    assert any("+1666" in row for _, row in rows)  # the other contact's records are there to be found


def _size(path: Path) -> int:
    return path.stat().st_size if path.exists() else 0


@pytest.mark.anyio
async def test_wal_checkpoints_happen_in_their_own_thread_not_in_a_commit(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import asyncio

    from botbridge.stores import sqlite as sqlite_module

    async def fill(store: SQLiteStore) -> None:
        payload = {"text": "x" * 2000}
        for n in range(300):  # ~2,000 pages of WAL: past SQLite's 1,000-page mark for checkpointing in a commit
            await store.enqueue([Job(kind="mo", key=f"k{n}", payload=payload) for _ in range(5)])

    quiet = tmp_path / "quiet.db"
    monkeypatch.setattr(sqlite_module, "CHECKPOINT_EVERY", 3600.0)  # no checkpoint round while it is open
    store = SQLiteStore(str(quiet), FakeClock())
    await store.open()
    try:
        empty = _size(quiet)
        await fill(store)
        assert _size(quiet) == empty  # no commit copied its pages into the database file
        assert _size(tmp_path / "quiet.db-wal") > 4_000_000
    finally:
        await store.close()

    busy = tmp_path / "busy.db"
    monkeypatch.setattr(sqlite_module, "CHECKPOINT_EVERY", 0.05)
    store = SQLiteStore(str(busy), FakeClock())
    await store.open()
    try:
        await fill(store)
        for _ in range(200):  # the checkpoint thread copies the WAL into the file while the store is open
            if _size(busy) > 4_000_000:
                break
            await asyncio.sleep(0.05)
        assert _size(busy) > 4_000_000
        assert (await store.queue_depth())["mo"] == 1500
    finally:
        await store.close()


@pytest.mark.anyio
async def test_calls_racing_close_run_before_it_or_fail_never_hang(tmp_path: Path) -> None:
    import asyncio

    from botbridge.errors import StoreUnavailable

    store = SQLiteStore(str(tmp_path / "closing.db"), FakeClock())
    await store.open()
    before = asyncio.ensure_future(store.enqueue([Job(kind="mo", key="a", payload={})]))
    closing = asyncio.ensure_future(store.close())

    async def reader() -> list[object]:
        answers: list[object] = []
        while not closing.done():
            try:
                answers.append(await store.queue_depth())
            except StoreUnavailable as exc:
                answers.append(exc)
                await asyncio.sleep(0)  # refused without waiting: let close go on
        return answers

    answers = await asyncio.wait_for(asyncio.gather(reader(), reader()), 10)  # every call was answered
    assert await before is True
    assert any(isinstance(a, StoreUnavailable) for group in answers for a in group)  # some came too late
    with pytest.raises(StoreUnavailable):
        await store.queue_depth()
