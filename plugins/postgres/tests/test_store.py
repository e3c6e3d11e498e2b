"""The PostgreSQL store passes core's store contract, and holds across several store instances ("hosts")."""

from __future__ import annotations

import asyncio
import itertools
import json
import socket
from collections.abc import AsyncIterator

import asyncpg
import pytest
from hypothesis import given
from hypothesis import strategies as st

from botbridge.clock import FakeClock
from botbridge.errors import SenderTaken, StoreUnavailable, VersionConflict
from botbridge.models import Connector, Conversation, Job, OutboundMessage, StreamItem, from_epoch
from botbridge.plugins import Plugins
from botbridge.settings import Settings
from botbridge.store import ConversationFilter, MessageFilter, Store, Writes, conversation_key
from botbridge.testing import StoreContract
from botbridge_postgres import PostgresStore, parse_url
from botbridge_postgres import store as store_module
from botbridge_postgres.migrations import LATEST, MIGRATIONS
from botbridge_postgres.store import DEFAULT_POOL, DEFAULT_SCHEMA, parse_wake
from botbridge_postgres.testing import CuttableProxy, store_url, terminate_sessions

pytestmark = pytest.mark.postgres


class TestPostgresStore(StoreContract):
    @pytest.fixture(autouse=True)
    def _schema(self, postgres_url: str, schema: str) -> None:
        self.url = store_url(postgres_url, schema)

    def create_store(self, clock: FakeClock) -> Store:
        return PostgresStore.from_url(self.url, clock)

    async def reopen(self, store: Store, clock: FakeClock) -> Store | None:
        reopened = PostgresStore.from_url(self.url, clock)
        await reopened.open()
        return reopened


# --- helpers ------------------------------------------------------------


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def url(postgres_url: str, schema: str) -> str:
    return store_url(postgres_url, schema)


@pytest.fixture
async def hosts(url: str, clock: FakeClock) -> AsyncIterator[tuple[PostgresStore, PostgresStore]]:
    """Two store instances on one schema: what two host processes hold."""
    one, two = PostgresStore.from_url(url, clock), PostgresStore.from_url(url, clock)
    await one.open()
    await two.open()
    try:
        yield one, two
    finally:
        await one.close()
        await two.close()


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


# --- URL and registration ----------------------------------------------


def test_url_options() -> None:
    assert parse_url("postgresql://u@h:5433/db") == ("postgresql://u@h:5433/db", DEFAULT_SCHEMA, DEFAULT_POOL)
    assert parse_url("postgres://u@h/db?schema=app1&pool=4&sslmode=require") == (
        "postgresql://u@h/db?sslmode=require",
        "app1",
        4,
    )
    with pytest.raises(ValueError, match="pool"):
        parse_url("postgresql://u@h/db?pool=1")


@given(st.text(alphabet=st.characters(blacklist_categories=("Cs",)), max_size=20), st.integers(2, 200))
def test_url_options_pass_everything_else_to_the_driver(value: str, pool: int) -> None:
    from urllib.parse import parse_qsl, urlencode, urlsplit

    query = urlencode([("schema", "s1"), ("pool", str(pool)), ("sslmode", value), ("application_name", value)])
    dsn, schema, size = parse_url(f"postgresql://u@h:5432/db?{query}")
    assert (schema, size) == ("s1", pool)
    assert parse_qsl(urlsplit(dsn).query, keep_blank_values=True) == [("sslmode", value), ("application_name", value)]


def test_wake_payloads() -> None:
    assert parse_wake("message:3:other", "me") == ("message", 3)
    assert parse_wake("event:1:other", "me") == ("event", 1)
    assert parse_wake("message:3:me", "me") is None  # our own: the engine already woke its workers
    assert parse_wake("mo:3:other", "me") is None
    assert parse_wake("message", "me") == ("message", 1)
    assert parse_wake("message:0:x", "me") == ("message", 1)
    assert parse_wake("message:99999999999:x", "me") == ("message", 1)


@given(st.text(max_size=40))
def test_any_wake_payload_is_safe(payload: str) -> None:
    wake = parse_wake(payload, "me")
    assert wake is None or (wake[0] in ("message", "event") and 1 <= wake[1] < 10**6)


def test_registered_for_the_postgresql_scheme() -> None:
    plugins = Plugins.discover(Settings(load_plugins="postgres,memory,sqlite"))
    for scheme in ("postgresql", "postgres"):
        store = plugins.stores[scheme](f"{scheme}://u@127.0.0.1/test?schema=x", FakeClock())
        assert isinstance(store, PostgresStore) and store.shared and store.schema == "x"


# --- migrations ----------------------------------------------------------


@pytest.mark.anyio
async def test_hosts_starting_at_once_apply_each_migration_once(url: str, postgres_url: str, schema: str) -> None:
    stores = [PostgresStore.from_url(url, FakeClock()) for _ in range(4)]
    applied = await asyncio.gather(*(store.migrate() for store in stores))
    assert sorted(v for versions in applied for v in versions) == [v for v, _ in MIGRATIONS]
    assert await stores[0].migrate() == []
    assert await stores[0].schema_version() == LATEST
    conn = await asyncpg.connect(postgres_url)
    try:
        rows = await conn.fetch(f'SELECT version FROM "{schema}".schema_migrations ORDER BY version')  # noqa: S608
    finally:
        await conn.close()
    assert [r[0] for r in rows] == [v for v, _ in MIGRATIONS]


@pytest.mark.anyio
async def test_a_new_schema_reports_version_zero(url: str) -> None:
    assert await PostgresStore.from_url(url, FakeClock()).schema_version() == 0


# --- several hosts on one database ---------------------------------------


@pytest.mark.anyio
async def test_two_hosts_never_share_a_job_and_keep_each_keys_order(
    hosts: tuple[PostgresStore, PostgresStore],
) -> None:
    one, two = hosts
    keys = [f"conv:{i}" for i in range(10)]
    for turn in range(5):
        for key in keys:
            await (one if turn % 2 else two).enqueue([Job(kind="mo", key=key, payload={"turn": turn})])
    seen: dict[str, list[int]] = {key: [] for key in keys}
    running: set[str] = set()
    claimed_ids: list[str] = []

    async def worker(store: PostgresStore) -> None:
        idle = 0
        while idle < 3:
            jobs = await store.claim_jobs(["mo", "mt", "dr"], limit=2, lease=30)
            if not jobs:
                idle += 1
                await asyncio.sleep(0.01)
                continue
            idle = 0
            for job in jobs:
                assert job.key not in running, "two jobs of one key ran at once"
                running.add(job.key)
                claimed_ids.append(job.id)
                seen[job.key].append(job.payload["turn"])
                await asyncio.sleep(0)
                running.discard(job.key)
                await store.complete_job(job)

    await asyncio.gather(*(worker(store) for store in (one, two, one, two)))
    assert len(claimed_ids) == len(set(claimed_ids)) == 50
    assert all(turns == [0, 1, 2, 3, 4] for turns in seen.values()), seen
    assert await one.queue_depth() == {}


@pytest.mark.anyio
async def test_concurrent_enqueues_of_one_key_never_run_two_at_once(
    hosts: tuple[PostgresStore, PostgresStore],
) -> None:
    """Enqueues racing on one key commit in sequence order, so a later one never runs beside an earlier one."""
    one, two = hosts
    running: set[str] = set()
    ran: list[int] = []
    done = asyncio.Event()

    async def producer(store: PostgresStore, base: int) -> None:
        for n in range(20):
            await store.enqueue([Job(kind="mo", key="conv", payload={"n": base + n})])

    async def worker(store: PostgresStore) -> None:
        while not done.is_set() or await store.queue_depth():
            jobs = await store.claim_jobs(["mo"], limit=5, lease=30)
            for job in jobs:
                assert job.key not in running, "two jobs of one key ran at once"
                running.add(job.key)
                await asyncio.sleep(0)
                ran.append(job.payload["n"])
                running.discard(job.key)
                await store.complete_job(job)
            if not jobs:
                await asyncio.sleep(0.001)

    async def produce() -> None:
        await asyncio.gather(producer(one, 0), producer(two, 100), producer(one, 200))
        done.set()

    await asyncio.gather(produce(), worker(one), worker(two), worker(one), worker(two))
    assert sorted(ran) == sorted([*range(20), *range(100, 120), *range(200, 220)])
    for base in (0, 100, 200):
        mine = [n for n in ran if base <= n < base + 20]
        assert mine == sorted(mine)  # each producer's turns in its order


@pytest.mark.anyio
async def test_a_crashed_hosts_job_is_taken_over_after_its_lease(
    url: str, clock: FakeClock, hosts: tuple[PostgresStore, PostgresStore]
) -> None:
    survivor, _ = hosts
    crashed = PostgresStore.from_url(url, clock)
    await crashed.open()
    await survivor.enqueue([Job(kind="mo", key="conv", payload={"n": n}) for n in range(2)])
    [held] = await crashed.claim_jobs(["mo"], limit=5, lease=10)
    await crashed.close()  # the host dies holding the lease
    assert held.payload == {"n": 0}
    assert await survivor.claim_jobs(["mo"], limit=5, lease=10) == []  # the key waits for its head job
    clock.advance(10.5)
    [again] = await survivor.claim_jobs(["mo"], limit=5, lease=10)
    assert again.id == held.id
    await survivor.complete_job(again, then=[Job(kind="mt", key="conv", payload={"reply": 0})])
    order = []
    while jobs := await survivor.claim_jobs(["mo", "mt"], limit=5, lease=10):
        order += [j.payload for j in jobs]
        for job in jobs:
            await survivor.complete_job(job)
    assert order == [{"n": 1}, {"reply": 0}]
    # the crashed host finishing late changes nothing: the job is gone, and so are its follow-ups
    await survivor.complete_job(held, then=[Job(kind="mt", key="conv", payload={"late": True})])
    assert await survivor.queue_depth() == {}


@pytest.mark.anyio
async def test_concurrent_claims_from_two_hosts_one_wins(hosts: tuple[PostgresStore, PostgresStore]) -> None:
    one, two = hosts
    results = await asyncio.gather(*(store.claim("nonce:abc", 60) for store in [one, two] * 10))
    assert results.count(True) == 1
    enqueued = await asyncio.gather(
        *(
            store.enqueue([Job(kind="mo", key="c", payload={"i": i})], dedupe_key="mo:x", dedupe_ttl=60)
            for i, store in enumerate([one, two] * 5)
        )
    )
    assert enqueued.count(True) == 1
    assert await one.queue_depth() == {"mo": 1}


@pytest.mark.anyio
async def test_connector_races_across_hosts(hosts: tuple[PostgresStore, PostgresStore]) -> None:
    one, two = hosts

    def connector(sender_id: str) -> Connector:
        return Connector(account_id="a", type="AMAZON_LEX", sender_id=sender_id, credentials_enc="enc")

    created = await asyncio.gather(
        *(store.create_connector(connector("s1")) for store in [one, two] * 4), return_exceptions=True
    )
    assert sum(1 for r in created if r is None) == 1
    assert all(isinstance(r, SenderTaken) for r in created if r is not None)
    [stored] = await one.list_connectors("a")
    attempts = [stored.model_copy(update={"version_number": 2, "external_id": str(i)}) for i in range(6)]
    updated = await asyncio.gather(
        *(store.update_connector(c, expected_version=1) for store, c in zip([one, two] * 3, attempts, strict=True)),
        return_exceptions=True,
    )
    assert sum(1 for r in updated if r is None) == 1
    assert all(isinstance(r, VersionConflict) for r in updated if r is not None)


@pytest.mark.anyio
async def test_rate_limit_holds_across_hosts(hosts: tuple[PostgresStore, PostgresStore]) -> None:
    one, two = hosts
    waits = await asyncio.gather(*(store.reserve_send_slot("conn", 30, now=500.0) for store in [one, two] * 60))
    slots = sorted(500.0 + w for w in waits)
    assert len(set(slots)) == 120
    assert all(b - a >= 1.0 / 30 for a, b in itertools.pairwise(slots))
    assert max(sum(1 for s in slots if t <= s < t + 1) for t in slots) <= 30
    assert await two.reserve_send_slot("other", 30, now=500.0) == 0


@pytest.mark.anyio
async def test_retry_by_one_host_runs_on_another(clock: FakeClock, hosts: tuple[PostgresStore, PostgresStore]) -> None:
    one, two = hosts
    await one.enqueue([Job(kind="event", key="e", payload={"x": 1})])
    [job] = await one.claim_jobs(["event"], limit=1, lease=30)
    await one.retry_job(job, not_before=clock.now() + 5, error="subscriber said 503")
    assert await two.claim_jobs(["event"], limit=1, lease=30) == []
    clock.advance(5)
    [again] = await two.claim_jobs(["event"], limit=1, lease=30)
    assert (again.id, again.attempts, again.last_error) == (job.id, 1, "subscriber said 503")


@pytest.mark.anyio
async def test_expired_claims_are_swept_at_open(
    url: str, postgres_url: str, schema: str, clock: FakeClock, hosts: tuple[PostgresStore, PostgresStore]
) -> None:
    one, _ = hosts
    assert await one.claim("old", 10)
    assert await one.claim("young", 1000)
    clock.advance(20)
    again = PostgresStore.from_url(url, clock)
    await again.open()
    await again.close()
    conn = await asyncpg.connect(postgres_url)
    try:
        keys = [r[0] for r in await conn.fetch(f'SELECT key FROM "{schema}".claims')]  # noqa: S608
    finally:
        await conn.close()
    assert keys == ["young"]


# --- waking idle workers on other hosts ----------------------------------


@pytest.mark.anyio
async def test_an_enqueue_on_one_host_wakes_the_other(hosts: tuple[PostgresStore, PostgresStore]) -> None:
    one, two = hosts
    woken: asyncio.Queue[tuple[str, int]] = asyncio.Queue()
    two.watch(lambda lane, jobs: woken.put_nowait((lane, jobs)))
    # the listener announces itself once connected (work may have come meanwhile)
    assert await asyncio.wait_for(woken.get(), 5) == ("message", 1)
    assert await asyncio.wait_for(woken.get(), 5) == ("event", 1)
    await one.enqueue([Job(kind="mo", key="a"), Job(kind="mo", key="b"), Job(kind="event", key="e")])
    got = {await asyncio.wait_for(woken.get(), 5), await asyncio.wait_for(woken.get(), 5)}
    assert got == {("message", 2), ("event", 1)}
    [job] = await one.claim_jobs(["event"], limit=1, lease=30)
    await one.complete_job(job, then=[Job(kind="event", key="e2")])
    assert await asyncio.wait_for(woken.get(), 5) == ("event", 1)
    # its own work does not wake it again: the engine woke its workers when it enqueued
    await two.enqueue([Job(kind="mo", key="mine")])
    # a delayed job wakes nobody: it is not runnable yet
    await one.enqueue([Job(kind="mo", key="later", not_before=10**10)])
    await one.enqueue([Job(kind="mo", key="now")])
    assert await asyncio.wait_for(woken.get(), 5) == ("message", 1)
    assert woken.empty()


@pytest.mark.anyio
async def test_the_listener_comes_back_after_its_connection_is_cut(
    postgres_url: str, hosts: tuple[PostgresStore, PostgresStore]
) -> None:
    one, two = hosts
    woken: asyncio.Queue[tuple[str, int]] = asyncio.Queue()
    two.watch(lambda lane, jobs: woken.put_nowait((lane, jobs)))
    for _ in range(2):
        await asyncio.wait_for(woken.get(), 5)
    assert await terminate_sessions(postgres_url, two.application_name) >= 1
    # reconnected: it announces itself again, then hears new work
    for _ in range(2):
        await asyncio.wait_for(woken.get(), 5)
    await one.enqueue([Job(kind="mo", key="a")])
    assert await asyncio.wait_for(woken.get(), 5) == ("message", 1)


# --- PostgreSQL unreachable ----------------------------------------------


@pytest.mark.anyio
async def test_unreachable_postgres_is_unavailable_not_an_error() -> None:
    store = PostgresStore.from_url(f"postgresql://postgres@127.0.0.1:{closed_port()}/test", FakeClock())
    with pytest.raises(StoreUnavailable):
        await store.open()
    assert not await store.ping()
    with pytest.raises(StoreUnavailable):
        await store.enqueue([Job(kind="mo", key="k")], dedupe_key="d", dedupe_ttl=60)
    with pytest.raises(StoreUnavailable):
        await store.claim_jobs(["mo"], limit=1, lease=5)
    await store.close()


@pytest.mark.anyio
async def test_lost_sessions_recover_by_themselves(
    postgres_url: str, clock: FakeClock, hosts: tuple[PostgresStore, PostgresStore]
) -> None:
    """Every session of one host terminated (a failover, a network cut): it answers again without a reopen."""
    store, _ = hosts
    assert await store.enqueue([Job(kind="mo", key="k", payload={"n": 1})], dedupe_key="a", dedupe_ttl=60)
    # several pooled connections, all to be cut
    await asyncio.gather(*(store.claim(f"warm{i}", 60) for i in range(6)))
    assert await terminate_sessions(postgres_url, store.application_name) >= 1
    # At most one call answers 503 (its statement was in flight on a cut session); the next run on new ones.
    try:
        accepted = await store.enqueue([Job(kind="mo", key="k", payload={"n": 2})], dedupe_key="b", dedupe_ttl=60)
    except StoreUnavailable:
        accepted = await store.enqueue([Job(kind="mo", key="k", payload={"n": 2})], dedupe_key="b", dedupe_ttl=60)
    assert accepted
    assert all(await asyncio.gather(*(store.claim(f"after{i}", 60) for i in range(6))))
    assert await store.ping()
    assert not await store.enqueue([Job(kind="mo", key="k", payload={"n": 1})], dedupe_key="a", dedupe_ttl=60)
    first = await store.claim_jobs(["mo"], limit=5, lease=5)
    assert [j.payload for j in first] == [{"n": 1}]
    await store.complete_job(first[0])
    assert [j.payload for j in await store.claim_jobs(["mo"], limit=5, lease=5)] == [{"n": 2}]


@pytest.mark.anyio
async def test_a_cut_network_is_unavailable_until_it_heals(url: str, clock: FakeClock) -> None:
    proxy = CuttableProxy(url)
    proxy.start()
    store = PostgresStore.from_url(proxy.url, clock)
    try:
        await store.open()
        assert await store.enqueue([Job(kind="mo", key="k", payload={"n": 1})], dedupe_key="a", dedupe_ttl=60)
        proxy.stop()
        assert not await store.ping()
        with pytest.raises(StoreUnavailable):
            await store.enqueue([Job(kind="mo", key="k", payload={"n": 2})], dedupe_key="b", dedupe_ttl=60)
        with pytest.raises(StoreUnavailable):
            await store.claim_jobs(["mo"], limit=1, lease=5)
        proxy.start()  # same store, no reopen
        assert await store.ping()
        assert await store.enqueue([Job(kind="mo", key="k", payload={"n": 2})], dedupe_key="b", dedupe_ttl=60)
        assert [j.payload for j in await store.claim_jobs(["mo"], limit=5, lease=5)] == [{"n": 1}]
    finally:
        await store.close()
        proxy.close()


# --- botbridge store migrate ---------------------------------------------


def test_store_migrate_command(url: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    from botbridge.cli import main

    monkeypatch.setenv("BOTBRIDGE_STORE", url)
    assert main(["store", "migrate"]) == 0
    assert capsys.readouterr().out == "applied migrations " + ", ".join(str(v) for v, _ in MIGRATIONS) + "\n"
    assert main(["store", "migrate"]) == 0
    assert capsys.readouterr().out == "the store's schema is up to date\n"


def test_store_migrate_without_postgres_fails_with_the_reason(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from botbridge.cli import main

    monkeypatch.setenv("BOTBRIDGE_STORE", f"postgresql://postgres@127.0.0.1:{closed_port()}/test")
    assert main(["store", "migrate"]) == 1
    assert "postgres is unavailable" in capsys.readouterr().err


@pytest.mark.anyio
async def test_api_keys_of_version_1_become_setting_keys(url: str, postgres_url: str, schema: str) -> None:
    conn = await asyncpg.connect(postgres_url)
    try:
        await conn.execute(f'CREATE SCHEMA "{schema}"; SET search_path = "{schema}"')
        await conn.execute("CREATE TABLE schema_migrations (version INTEGER PRIMARY KEY, applied_at TIMESTAMPTZ)")
        await conn.execute(MIGRATIONS[0][1])
        await conn.execute("INSERT INTO schema_migrations VALUES (1, now())")
        await conn.execute("INSERT INTO api_keys VALUES ('h1', 'acct-a'), ('h2', 'acct-b')")
    finally:
        await conn.close()
    store = PostgresStore.from_url(url, FakeClock())
    await store.open()
    try:
        keys = await store.list_api_keys(None)
        assert {(k.key_hash, k.account_id, k.source, k.revoked) for k in keys} == {
            ("h1", "acct-a", "setting", False),
            ("h2", "acct-b", "setting", False),
        }
        assert all(len(k.id) == 22 for k in keys)
        assert await store.revoke_api_key(keys[0].id, 1.0)
    finally:
        await store.close()


@pytest.mark.anyio
async def test_outbound_rows_of_the_previous_version_get_the_history_columns(
    url: str, postgres_url: str, schema: str
) -> None:
    """Migration 5 fills the new outbound columns from the stored records (the account from the sender)."""
    with_account = OutboundMessage(
        account_id="acct-a",
        sender_id="s1",
        contact="+1",
        conversation_id="c1",
        external_id="ext-1",
        state="DELIVERED",
        created_at=from_epoch(1000.0),
        updated_at=from_epoch(2000.0),
    )
    # made before messages carried their account: data without "account_id" at all
    without_account = OutboundMessage(
        sender_id="s2", contact="+2", created_at=from_epoch(1500.0), updated_at=from_epoch(1500.0)
    )
    legacy = without_account.model_dump(mode="json")
    del legacy["account_id"], legacy["origin"], legacy["states"]
    conversation = Conversation(sender_id="s2", contact="+2", connector_id="c", opened_at=5.0, last_mo_at=6.0)
    conn = await asyncpg.connect(postgres_url)
    try:
        await conn.execute(f'CREATE SCHEMA "{schema}"; SET search_path = "{schema}"')
        await conn.execute("CREATE TABLE schema_migrations (version INTEGER PRIMARY KEY, applied_at TIMESTAMPTZ)")
        for version, sql in [(v, sql) for v, sql in MIGRATIONS if v < 5]:  # the schema before migration 5
            await conn.execute(sql)
            await conn.execute("INSERT INTO schema_migrations VALUES ($1, now())", version)
        await conn.execute("""INSERT INTO senders VALUES ('s2', 'acct-b', '{}')""")
        await conn.execute(
            "INSERT INTO outbound VALUES ($1, $2, 'sinch', NULL, $3::jsonb), ($4, $5, 'sinch', 'p2', $6::jsonb)",
            with_account.id,
            "s1",
            with_account.model_dump_json(),
            without_account.id,
            "s2",
            json.dumps(legacy),
        )
        await conn.execute(
            "INSERT INTO conversations VALUES ('s2', '+2', $1::jsonb)",
            conversation.model_copy(update={"state": "closed", "closed_at": 7.0}).model_dump_json(),
        )
    finally:
        await conn.close()
    store = PostgresStore.from_url(url, FakeClock())
    await store.open()
    try:
        assert await store.schema_version() == LATEST
        assert [m.id for m in await store.list_outbound("acct-a", MessageFilter())] == [with_account.id]
        for where in (
            MessageFilter(sender_id="s1"),
            MessageFilter(contact="+1"),
            MessageFilter(conversation_id="c1"),
            MessageFilter(external_id="ext-1"),
            MessageFilter(state="DELIVERED"),
            MessageFilter(since=1000.0, until=1000.5),
        ):
            assert [m.id for m in await store.list_outbound("acct-a", where)] == [with_account.id], where
        assert await store.list_outbound("acct-a", MessageFilter(since=1000.5)) == []
        # the account of the sender, for a record that has none
        [found] = await store.list_outbound("acct-b", MessageFilter(contact="+2", state="CREATED"))
        assert found.id == without_account.id and found.account_id is None
        # purged by when they were last updated
        assert await store.purge_history(before=1800.0) == 1
        assert await store.get_outbound(without_account.id) is None
        assert await store.get_outbound(with_account.id) == with_account
        # the conversations of version 4 start the log, under their sender's account
        [logged] = await store.list_conversations("acct-b", ConversationFilter(state="closed"))
        assert logged.id == conversation.id and await store.get_conversation_by_id(conversation.id) == logged
    finally:
        await store.close()


# --- history ---------------------------------------------------------------


async def _rows_of_every_table(postgres_url: str, schema: str) -> list[tuple[str, str]]:
    conn = await asyncpg.connect(postgres_url)
    try:
        tables = [
            r[0]
            for r in await conn.fetch(
                "SELECT table_name FROM information_schema.tables "
                "WHERE table_schema = $1 AND table_type = 'BASE TABLE'",
                schema,
            )
        ]
        assert {"conversations", "conversation_log", "history", "outbound", "jobs", "event_failures"} <= set(tables)
        return [
            (table, row[0])
            for table in tables
            for row in await conn.fetch(f'SELECT t::text FROM "{schema}"."{table}" t')  # noqa: S608
        ]
    finally:
        await conn.close()


@pytest.mark.anyio
async def test_after_an_erasure_no_row_of_the_schema_names_the_contact(
    url: str, postgres_url: str, schema: str
) -> None:
    store = PostgresStore.from_url(url, FakeClock())
    await store.open()
    try:
        await StoreContract().test_erasing_a_contact_leaves_nothing_of_them(store)
    finally:
        await store.close()
    rows = await _rows_of_every_table(postgres_url, schema)
    assert [(table, row) for table, row in rows if "+1555" in row] == []
    assert {table for table, row in rows if "+1666" in row} >= {
        "conversations",
        "conversation_log",
        "history",
        "outbound",
    }


@pytest.mark.anyio
async def test_an_erasure_waits_for_an_enqueue_of_the_contact_still_committing(
    hosts: tuple[PostgresStore, PostgresStore],
) -> None:
    """The key's advisory lock: a job of the contact committed while the erasure runs is erased with the rest."""
    one, two = hosts
    key = conversation_key("s1", "+1555")
    await one.enqueue([Job(kind="mo", key=key, payload={"n": 1})])
    late = Job(kind="mo", key=key, payload={"n": 2})
    async with one._tx() as conn:
        await one._insert_jobs(conn, [late])  # holds the key's lock until it commits
        erasure = asyncio.create_task(two.erase_contact("a", "+1555", ["s1"]))
        await asyncio.sleep(0.3)
        assert not erasure.done()
    assert await asyncio.wait_for(erasure, 5) == 2
    assert await one.queue_depth() == {}


@pytest.mark.anyio
async def test_erasures_and_finishing_jobs_of_the_contact_never_deadlock(
    hosts: tuple[PostgresStore, PostgresStore],
) -> None:
    """Both take the key's lock first, then the records, then the jobs: no cycle, whatever the timing."""
    one, two = hosts
    key = conversation_key("s1", "+1555")
    for n in range(20):
        await one.enqueue([Job(kind="mo", key=key, payload={"n": n})])
        [job] = await one.claim_jobs(["mo"], limit=1, lease=30)
        conversation = Conversation(
            account_id="a", sender_id="s1", contact="+1555", connector_id="c", opened_at=1.0, last_mo_at=1.0
        )
        await one.put_conversation(conversation)
        writes = Writes(
            conversations=[conversation], outbound=[(OutboundMessage(sender_id="s1", contact="+1555"), "sinch")]
        )
        await asyncio.gather(
            one.finish_job(job, then=[Job(kind="mt", key=key)], writes=writes),
            two.erase_contact("a", "+1555", ["s1"]),
        )
        await two.erase_contact("a", "+1555", ["s1"])
        assert await one.queue_depth() == {}
        assert await one.get_conversation("s1", "+1555") is None


# --- the live stream -------------------------------------------------------


@pytest.mark.anyio
async def test_a_finished_jobs_stream_items_commit_with_the_rest_or_not_at_all(
    hosts: tuple[PostgresStore, PostgresStore], monkeypatch: pytest.MonkeyPatch
) -> None:
    one, two = hosts
    await one.enqueue([Job(kind="mo", key="conv")])
    [job] = await one.claim_jobs(["mo"], limit=1, lease=30)
    conversation = Conversation(
        account_id="a", sender_id="s", contact="+1", connector_id="c", opened_at=1.0, last_mo_at=1.0
    )
    item = StreamItem(account_id="a", at=1.0, data={"type": "conversation", "conversation": {"id": conversation.id}})
    writes = Writes(conversations=[conversation], stream=[item])
    monkeypatch.setattr(store_module, "ADD_STREAM", "INSERT INTO no_such_table VALUES ($1, $2, $3, $4::jsonb)")
    with pytest.raises(asyncpg.UndefinedTableError):
        await one.finish_job(job, writes=writes)
    assert await two.get_conversation("s", "+1") is None  # nothing of the job's writes
    assert await two.queue_depth() == {"mo": 1}  # and the job is still queued
    monkeypatch.undo()
    await one.finish_job(job, writes=writes)
    assert await two.read_stream("a") == [item]
    assert await two.get_conversation("s", "+1") == conversation
    assert await two.queue_depth() == {}


# --- commit semantics ------------------------------------------------------


@pytest.mark.anyio
async def test_durability_reads_the_sessions_commit_settings(url: str, caplog: pytest.LogCaptureFixture) -> None:
    store = PostgresStore.from_url(url, FakeClock())
    await store.open()
    try:
        durability = store.durability()
        assert durability is not None and durability.durable is True
        assert durability.detail == "synchronous_commit=on fsync=on"
    finally:
        await store.close()
    # a role, database or URL can turn the flush at commit off: then a 2xx may not survive PostgreSQL's crash
    relaxed = PostgresStore.from_url(url + "&synchronous_commit=off", FakeClock())
    with caplog.at_level("WARNING", logger="botbridge.postgres"):
        await relaxed.open()
    try:
        durability = relaxed.durability()
        assert durability is not None and durability.durable is False
        assert durability.detail == "synchronous_commit=off fsync=on"
        assert any("answered 2xx" in r.getMessage() for r in caplog.records if r.name == "botbridge.postgres")
    finally:
        await relaxed.close()
