"""The Redis store passes core's store contract, and holds across several store instances ("hosts")."""

from __future__ import annotations

import asyncio
import itertools
import socket
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
import redis
from redis.asyncio import Redis

from botbridge.clock import FakeClock
from botbridge.errors import StoreUnavailable
from botbridge.models import Conversation, HistoryEntry, Job, OutboundMessage, Sender, StreamItem, from_epoch
from botbridge.plugins import Plugins
from botbridge.settings import Settings
from botbridge.store import ConversationFilter, MessageFilter, Store, Take, Writes, conversation_key
from botbridge.testing import StoreContract
from botbridge_redis import NotDurable, RedisStore, parse_url
from botbridge_redis import store as store_module
from botbridge_redis.store import DEFAULT_PREFIX, OUTBOUND_RETENTION, STREAM_TTL, judge_persistence
from botbridge_redis.testing import OwnRedis, store_url

pytestmark = pytest.mark.redis


class TestRedisStore(StoreContract):
    @pytest.fixture(autouse=True)
    def _prefix(self, redis_url: str, prefix: str) -> None:
        self.url = store_url(redis_url, prefix)

    def create_store(self, clock: FakeClock) -> Store:
        return RedisStore.from_url(self.url, clock)

    async def reopen(self, store: Store, clock: FakeClock) -> Store | None:
        reopened = RedisStore.from_url(self.url, clock)
        await reopened.open()
        return reopened


# --- helpers ------------------------------------------------------------


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def url(redis_url: str, prefix: str) -> str:
    return store_url(redis_url, prefix)


@pytest.fixture
async def hosts(url: str, clock: FakeClock) -> AsyncIterator[tuple[RedisStore, RedisStore]]:
    """Two store instances on one prefix: what two host processes hold."""
    one, two = RedisStore.from_url(url, clock), RedisStore.from_url(url, clock)
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
    assert parse_url("redis://h:6380/2") == ("redis://h:6380/2", DEFAULT_PREFIX, OUTBOUND_RETENTION, "warn")
    assert parse_url("redis://h/0?prefix=app1:&outbound_ttl=60&health_check_interval=5&durability=required") == (
        "redis://h/0?health_check_interval=5",
        "app1:",
        60.0,
        "required",
    )
    with pytest.raises(ValueError, match="durability"):
        parse_url("redis://h/0?durability=maybe")


def test_registered_for_the_redis_scheme() -> None:
    plugins = Plugins.discover(Settings(load_plugins="redis,memory,sqlite"))
    store = plugins.stores["redis"]("redis://127.0.0.1:6379/0?prefix=x:", FakeClock())
    assert isinstance(store, RedisStore) and store.shared and store.prefix == "x:"


# --- several hosts on one Redis ----------------------------------------


@pytest.mark.anyio
async def test_two_hosts_never_share_a_job_and_keep_each_keys_order(hosts: tuple[RedisStore, RedisStore]) -> None:
    one, two = hosts
    keys = [f"conv:{i}" for i in range(10)]
    for turn in range(5):
        for key in keys:
            await (one if turn % 2 else two).enqueue([Job(kind="mo", key=key, payload={"turn": turn})])
    seen: dict[str, list[int]] = {key: [] for key in keys}
    running: set[str] = set()
    claimed_ids: list[str] = []

    async def worker(store: RedisStore) -> None:
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
async def test_a_crashed_hosts_job_is_taken_over_after_its_lease(
    url: str, clock: FakeClock, hosts: tuple[RedisStore, RedisStore]
) -> None:
    survivor, _ = hosts
    crashed = RedisStore.from_url(url, clock)
    await crashed.open()
    await survivor.enqueue([Job(kind="mo", key="conv", payload={"n": n}) for n in range(2)])
    [held] = await crashed.claim_jobs(["mo"], limit=5, lease=10)
    await crashed.close()  # the host dies holding the lease; its consumer keeps the pending entry
    assert held.payload == {"n": 0} and held.receipt
    assert await survivor.claim_jobs(["mo"], limit=5, lease=10) == []  # the key waits for its head job
    clock.advance(10.5)
    [again] = await survivor.claim_jobs(["mo"], limit=5, lease=10)
    assert again.id == held.id and again.receipt == held.receipt
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
async def test_an_orphaned_pending_entry_is_taken_over(
    url: str, prefix: str, redis_url: str, hosts: tuple[RedisStore, RedisStore]
) -> None:
    """Pending with no lease record (a write lost in a Redis failover): taken over once idle for 2 x lease."""
    one, two = hosts
    await one.enqueue([Job(kind="mo", key="k")])
    [job] = await one.claim_jobs(["mo"], limit=1, lease=0.05)
    client = redis.Redis.from_url(redis_url)
    try:
        client.delete(prefix + "leases:message")
    finally:
        client.close()
    assert await two.claim_jobs(["mo"], limit=1, lease=0.05) == []
    await asyncio.sleep(0.15)
    [taken] = await two.claim_jobs(["mo"], limit=1, lease=0.05)
    assert taken.id == job.id


@pytest.mark.anyio
async def test_rate_limit_holds_across_hosts(hosts: tuple[RedisStore, RedisStore]) -> None:
    one, two = hosts
    waits = await asyncio.gather(*(store.reserve_send_slot("conn", 30, now=500.0) for store in [one, two] * 60))
    slots = sorted(500.0 + w for w in waits)
    assert len(set(slots)) == 120
    assert all(b - a >= 1.0 / 30 for a, b in itertools.pairwise(slots))
    assert max(sum(1 for s in slots if t <= s < t + 1) for t in slots) <= 30
    assert await two.reserve_send_slot("other", 30, now=500.0) == 0


@pytest.mark.anyio
async def test_retry_by_one_host_runs_on_another(clock: FakeClock, hosts: tuple[RedisStore, RedisStore]) -> None:
    one, two = hosts
    await one.enqueue([Job(kind="event", key="e", payload={"x": 1})])
    [job] = await one.claim_jobs(["event"], limit=1, lease=30)
    await one.retry_job(job, not_before=clock.now() + 5, error="subscriber said 503")
    assert await two.claim_jobs(["event"], limit=1, lease=30) == []
    clock.advance(5)
    [again] = await two.claim_jobs(["event"], limit=1, lease=30)
    assert (again.id, again.attempts, again.last_error) == (job.id, 1, "subscriber said 503")


@pytest.mark.anyio
async def test_claims_for_other_kinds_leave_a_key_in_line(hosts: tuple[RedisStore, RedisStore]) -> None:
    one, _ = hosts
    await one.enqueue([Job(kind="mt", key="conv"), Job(kind="mo", key="other")])
    assert [j.key for j in await one.claim_jobs(["mo"], limit=5, lease=30)] == ["other"]
    assert [j.kind for j in await one.claim_jobs(["mt"], limit=5, lease=30)] == ["mt"]


@pytest.mark.anyio
async def test_ttls_on_dedupe_keys_conversations_and_outbound(
    url: str, prefix: str, redis_url: str, clock: FakeClock, hosts: tuple[RedisStore, RedisStore]
) -> None:
    one, _ = hosts
    assert await one.claim("mo:x", 3600)
    assert await one.enqueue([Job(kind="mo", key="k")], dedupe_key="mo:y", dedupe_ttl=7200)
    conversation = Conversation(
        sender_id="s", contact="+1", connector_id="c", opened_at=clock.now(), last_mo_at=clock.now(), timeout=600
    )
    await one.put_conversation(conversation)
    client = redis.Redis.from_url(redis_url)
    try:
        assert 3590_000 < client.pttl(prefix + "claim:mo:x") <= 3600_000
        assert 7190_000 < client.pttl(prefix + "claim:mo:y") <= 7200_000
        assert 600 + 86400 - 10 < client.ttl(prefix + "conv:s:+1") <= 600 + 86400
        assert client.ttl(prefix + "job:" + (await one.claim_jobs(["mo"], limit=1, lease=5))[0].id) == -1
    finally:
        client.close()


@pytest.mark.anyio
async def test_records_are_json_under_the_prefix(
    prefix: str, redis_url: str, hosts: tuple[RedisStore, RedisStore]
) -> None:
    one, _ = hosts
    sender = Sender(account_id="a", channel="sinch", address="+1")
    await one.create_sender(sender)
    client = redis.Redis.from_url(redis_url, decode_responses=True)
    try:
        assert Sender.model_validate_json(client.get(prefix + "sender:" + sender.id)) == sender
        assert client.zrange(prefix + "senders:a", 0, -1) == [sender.id]
    finally:
        client.close()


@pytest.mark.anyio
async def test_provider_ids_indexed_per_channel_before_are_still_found_for_their_sender_only(
    prefix: str, redis_url: str, hosts: tuple[RedisStore, RedisStore]
) -> None:
    one, _ = hosts
    mine = Sender(account_id="a", channel="sinch", address="+1")
    theirs = Sender(account_id="b", channel="sinch", address="+2")
    for sender in (mine, theirs):
        await one.create_sender(sender)
    message = OutboundMessage(sender_id=mine.id, contact="+9", text="hi", provider_message_id="p-1", state="SENT")
    client = redis.Redis.from_url(redis_url, decode_responses=True)
    try:
        # what an earlier version wrote: the record and a per-channel index entry
        client.set(prefix + "outbound:" + message.id, message.model_dump_json())
        client.set(prefix + "outbound-by-provider:sinch:p-1", message.id)
    finally:
        client.close()
    assert await one.outbound_by_provider_id(mine.id, "p-1") == message
    assert await one.outbound_by_provider_id(theirs.id, "p-1") is None
    assert await one.outbound_by_provider_id("no-such-sender", "p-1") is None


# --- history ----------------------------------------------------------------


def everything_under(client: redis.Redis, prefix: str) -> list[str]:
    """Every key under `prefix` and every value it holds, as text (strings, hashes, lists, sets, zsets, streams)."""
    pattern = "".join("\\" + c if c in "*?[]\\" else c for c in prefix) + "*"
    found: list[str] = []
    for key in client.scan_iter(match=pattern, count=1000):
        found.append(key)
        kind = client.type(key)
        if kind == "string":
            found.append(client.get(key))
        elif kind == "hash":
            found += [part for pair in client.hgetall(key).items() for part in pair]
        elif kind == "list":
            found += client.lrange(key, 0, -1)
        elif kind == "set":
            found += list(client.smembers(key))
        elif kind == "zset":
            found += client.zrange(key, 0, -1)
        elif kind == "stream":
            found += [f"{entry_id} {fields}" for entry_id, fields in client.xrange(key)]
        else:
            raise AssertionError(f"{key}: a {kind} this test does not read")
    return found


@pytest.mark.anyio
async def test_after_an_erasure_no_key_or_value_under_the_prefix_names_the_contact(
    url: str, prefix: str, redis_url: str, clock: FakeClock
) -> None:
    store = RedisStore.from_url(url, clock)
    await store.open()
    try:
        await StoreContract().test_erasing_a_contact_leaves_nothing_of_them(store)
    finally:
        await store.close()
    client = redis.Redis.from_url(redis_url, decode_responses=True)
    try:
        texts = everything_under(client, prefix)
    finally:
        client.close()
    assert [text for text in texts if "+1555" in text] == []
    assert any("+1666" in text for text in texts)  # the other contact's records are there to be found


@pytest.mark.anyio
async def test_history_records_keep_the_ttls_of_their_kind(
    prefix: str, redis_url: str, clock: FakeClock, hosts: tuple[RedisStore, RedisStore]
) -> None:
    one, _ = hosts
    now = clock.now()
    timed = Conversation(
        account_id="a", sender_id="s", contact="+1", connector_id="c", opened_at=now, last_mo_at=now, timeout=600
    )
    untimed = Conversation(account_id="a", sender_id="s", contact="+2", connector_id="c", opened_at=now, last_mo_at=now)
    entry = HistoryEntry(account_id="a", conversation_id=timed.id, sender_id="s", contact="+1", kind="mo", at=now)
    message = OutboundMessage(account_id="a", sender_id="s", contact="+1", text="hi")
    await one.write(Writes(conversations=[timed, untimed], outbound=[(message, "sinch")], history=[entry]))
    client = redis.Redis.from_url(redis_url, decode_responses=True)
    try:
        # the latest of a contact lives its timeout and a day; history (by id) as long as messages
        assert 600 + 86400 - 10 < client.ttl(prefix + "conv:s:+1") <= 600 + 86400
        assert client.ttl(prefix + "conv:s:+2") == -1
        for record in ("conversation:" + timed.id, "conversation:" + untimed.id, "entry:" + entry.id):
            assert OUTBOUND_RETENTION - 10 < client.ttl(prefix + record) <= OUTBOUND_RETENTION, record
        # a contact's index lives as long as its longest record, and a day more
        for contact in ("contact:s:+1", "contact:s:+2"):
            assert OUTBOUND_RETENTION + 86400 - 10 < client.ttl(prefix + contact) <= OUTBOUND_RETENTION + 86400
        assert client.zrange(prefix + "conversations:a", 0, -1) == sorted([timed.id, untimed.id])
        assert client.zrange(prefix + "outbounds:a", 0, -1) == [message.id]
        assert client.zrange(prefix + "history:" + timed.id, 0, -1) == [entry.id]
    finally:
        client.close()


@pytest.mark.anyio
async def test_purge_drops_index_entries_of_records_that_expired(
    prefix: str, redis_url: str, clock: FakeClock, hosts: tuple[RedisStore, RedisStore]
) -> None:
    one, _ = hosts
    now = clock.now()
    conversation = Conversation(
        account_id="a", sender_id="s", contact="+1", connector_id="c", opened_at=now, last_mo_at=now, timeout=60
    )
    entry = HistoryEntry(
        account_id="a", conversation_id=conversation.id, sender_id="s", contact="+1", kind="mo", at=now
    )
    message = OutboundMessage(account_id="a", sender_id="s", contact="+1", text="hi", updated_at=from_epoch(now))
    await one.write(Writes(conversations=[conversation], outbound=[(message, "sinch")], history=[entry]))
    client = redis.Redis.from_url(redis_url, decode_responses=True)
    try:
        # what Redis' expiry does: the records go, their index entries stay
        client.delete(*(prefix + name for name in ("conversation:" + conversation.id, "entry:" + entry.id)))
        client.delete(prefix + "outbound:" + message.id)
        assert await one.list_conversations("a", ConversationFilter()) == []
        assert await one.purge_history(before=now - 1) == 0  # nothing is old yet: nothing read
        assert client.zcard(prefix + "aging:history") == 1
        assert await one.purge_history(before=now + OUTBOUND_RETENTION + 86400) == 0  # none was there to purge
        for index in ("conversations:a", "outbounds:a", "history:" + conversation.id):
            assert client.exists(prefix + index) == 0, index
        for aging in ("conversations", "outbound", "history"):
            assert client.zcard(prefix + "aging:" + aging) == 0, aging
    finally:
        client.close()


@pytest.mark.anyio
async def test_erasing_a_leased_job_leaves_the_queue_consistent(
    prefix: str, redis_url: str, hosts: tuple[RedisStore, RedisStore]
) -> None:
    one, two = hosts
    key = conversation_key("s", "+1555")
    await one.enqueue([Job(kind="mo", key=key), Job(kind="mt", key=key), Job(kind="mo", key="other")])
    leased = await one.claim_jobs(["mo"], limit=5, lease=30)
    assert sorted(j.key for j in leased) == sorted([key, "other"])
    assert await two.erase_contact("a", "+1555", ["s"]) == 2
    assert await one.queue_depth() == {"mo": 1}
    running = next(j for j in leased if j.key == key)
    # the worker that ran it finds it gone: nothing of it comes back
    assert await one.finish_job(running, then=[Job(kind="mt", key=key)], take=Take(["mt"], 30)) is None
    assert await one.queue_depth() == {"mo": 1}
    client = redis.Redis.from_url(redis_url, decode_responses=True)
    try:
        assert [text for text in everything_under(client, prefix) if "+1555" in text] == []
    finally:
        client.close()
    # the key is usable again, and the other key was left alone
    await one.enqueue([Job(kind="mo", key=key, payload={"n": 2})])
    [again] = await two.claim_jobs(["mo"], limit=5, lease=30)
    assert again.payload == {"n": 2}
    await two.finish_job(again)
    other = next(j for j in leased if j.key == "other")
    await one.finish_job(other)
    assert await one.queue_depth() == {}


@pytest.mark.anyio
async def test_outbound_messages_from_before_history_are_indexed_at_open(
    prefix: str, redis_url: str, url: str, clock: FakeClock
) -> None:
    sender = Sender(account_id="a", channel="sinch", address="+1")
    old = OutboundMessage(sender_id=sender.id, contact="+9", text="hi", provider_message_id="p-9", state="SENT")
    client = redis.Redis.from_url(redis_url, decode_responses=True)
    try:
        # what an earlier version wrote: the sender, the record and its index by channel
        client.set(prefix + "sender:" + sender.id, sender.model_dump_json())
        client.set(prefix + "outbound:" + old.id, old.model_dump_json(), ex=3600)
        client.set(prefix + "outbound-by-provider:sinch:p-9", old.id, ex=3600)
        store = RedisStore.from_url(url, clock)
        await store.open()
        try:
            assert await store.list_outbound("a", MessageFilter(contact="+9")) == [old]
            assert await store.erase_contact("a", "+9", [sender.id]) == 1
            assert await store.list_outbound("a", MessageFilter()) == []
            assert await store.outbound_by_provider_id(sender.id, "p-9") is None
        finally:
            await store.close()
        assert [text for text in everything_under(client, prefix) if "+9" in text or "p-9" in text] == []
    finally:
        client.close()


# --- the live stream -------------------------------------------------------


@pytest.mark.anyio
async def test_the_live_stream_expires_by_itself_and_trims_records_with_their_index(
    prefix: str, redis_url: str, hosts: tuple[RedisStore, RedisStore], monkeypatch: pytest.MonkeyPatch
) -> None:
    one, two = hosts
    mine = [StreamItem(account_id="a", at=100.0 + n, data={"type": "event", "n": n}) for n in range(3)]
    theirs = StreamItem(account_id="b", at=100.0, data={"type": "event"})
    await one.append_stream([*mine, theirs])
    client = redis.Redis.from_url(redis_url, decode_responses=True)
    try:
        # records and indexes expire a few hours after the last append, should trimming stop
        for key in [*("live-item:" + i.id for i in [*mine, theirs]), "live:a", "live:b", "live-aging"]:
            assert STREAM_TTL - 10 < client.ttl(prefix + key) <= STREAM_TTL, key
        assert client.zrange(prefix + "live:a", 0, -1) == [i.id for i in mine]
        assert client.zscore(prefix + "live-aging", f"{theirs.id}:b") == 100.0
        # a record Redis expired is skipped, and its id leaves the account's index
        client.delete(prefix + "live-item:" + mine[1].id)
        assert await two.read_stream("a") == [mine[0], mine[2]]
        assert client.zrange(prefix + "live:a", 0, -1) == [mine[0].id, mine[2].id]
        # trimming takes each record with its index entries; the expired one left only its aging member
        assert await two.trim_stream(before=102.0) == 2
        assert client.zrange(prefix + "live-aging", 0, -1) == [f"{mine[2].id}:a"]
        assert client.zrange(prefix + "live:a", 0, -1) == [mine[2].id]
        assert client.exists(prefix + "live:b") == 0
        assert client.keys(prefix + "live-item:*") == [prefix + "live-item:" + mine[2].id]
        # in batches
        monkeypatch.setattr(store_module, "PURGE_BATCH", 2)
        await one.append_stream([StreamItem(account_id="c", at=50.0, data={}) for _ in range(5)])
        assert await two.trim_stream(before=101.0) == 5
        assert await two.read_stream("c") == [] and client.exists(prefix + "live:c") == 0
        assert await two.read_stream("a") == [mine[2]]
    finally:
        client.close()


# --- Redis down ----------------------------------------------------------


@pytest.mark.anyio
async def test_unreachable_redis_is_unavailable_not_an_error() -> None:
    store = RedisStore.from_url(f"redis://127.0.0.1:{closed_port()}/0", FakeClock())
    with pytest.raises(StoreUnavailable):
        await store.open()
    assert not await store.ping()
    with pytest.raises(StoreUnavailable):
        await store.enqueue([Job(kind="mo", key="k")], dedupe_key="d", dedupe_ttl=60)
    with pytest.raises(StoreUnavailable):
        await store.claim_jobs(["mo"], limit=1, lease=5)
    await store.close()


@pytest.fixture
def own_redis(tmp_path: Path) -> Iterator[OwnRedis]:
    if not OwnRedis.available():
        pytest.skip("no redis-server binary to start a server of this test's own")
    server = OwnRedis(tmp_path)
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.mark.anyio
async def test_redis_restart_is_unavailable_then_recovers_by_itself(own_redis: OwnRedis) -> None:
    clock = FakeClock()
    store = RedisStore.from_url(f"redis://127.0.0.1:{own_redis.port}/0", clock)
    await store.open()
    try:
        assert await store.enqueue([Job(kind="mo", key="k", payload={"n": 1})], dedupe_key="a", dedupe_ttl=60)
        own_redis.stop()
        assert not await store.ping()
        with pytest.raises(StoreUnavailable):
            await store.enqueue([Job(kind="mo", key="k", payload={"n": 2})], dedupe_key="b", dedupe_ttl=60)
        with pytest.raises(StoreUnavailable):
            await store.claim_jobs(["mo"], limit=1, lease=5)
        own_redis.start()  # same data (append-only file), same client: no reopen
        assert await store.ping()
        assert await store.enqueue([Job(kind="mo", key="k", payload={"n": 2})], dedupe_key="b", dedupe_ttl=60)
        assert not await store.enqueue([Job(kind="mo", key="k", payload={"n": 1})], dedupe_key="a", dedupe_ttl=60)
        first = await store.claim_jobs(["mo"], limit=5, lease=5)
        assert [j.payload for j in first] == [{"n": 1}]
        await store.complete_job(first[0])
        assert [j.payload for j in await store.claim_jobs(["mo"], limit=5, lease=5)] == [{"n": 2}]
    finally:
        await store.close()


@pytest.mark.anyio
async def test_data_lost_in_a_restart_does_not_wedge_the_queue(own_redis: OwnRedis, tmp_path: Path) -> None:
    """A Redis restarted empty (no persistence): the groups come back and work flows again."""
    clock = FakeClock()
    store = RedisStore.from_url(f"redis://127.0.0.1:{own_redis.port}/0", clock)
    await store.open()
    try:
        with redis.Redis(port=own_redis.port) as client:
            client.delete("botbridge:stream:message")
            client.xadd("botbridge:stream:message", {"k": "nothing"})  # a stream without the group
        assert await store.enqueue([Job(kind="mo", key="k")])
        assert [j.key for j in await store.claim_jobs(["mo"], limit=5, lease=5)] == ["k"]
    finally:
        await store.close()


@pytest.mark.anyio
async def test_keys_of_the_first_schema_become_setting_keys(redis_url: str, url: str, prefix: str) -> None:
    raw = redis.Redis.from_url(redis_url, decode_responses=True)
    raw.set(f"{prefix}apikey:h1", "acct-a")
    raw.set(f"{prefix}apikey:h2", "acct-b")
    clock = FakeClock()
    store = RedisStore.from_url(url, clock)
    await store.open()
    try:
        keys = await store.list_api_keys(None)
        assert {(k.key_hash, k.account_id, k.source, k.revoked) for k in keys} == {
            ("h1", "acct-a", "setting", False),
            ("h2", "acct-b", "setting", False),
        }
        assert raw.keys(f"{prefix}apikey:*") == []
        raw.set(f"{prefix}apikey:h3", "late")  # written after the conversion: never read again
        reopened = RedisStore.from_url(url, clock)
        await reopened.open()
        assert len(await reopened.list_api_keys(None)) == 2
        await reopened.close()
    finally:
        await store.close()
        raw.close()


# --- how durable the server is -------------------------------------------


def test_persistence_is_judged_by_a_synced_append_only_file() -> None:
    def judge(appendonly: str, appendfsync: str, save: str) -> bool | None:
        return judge_persistence({"appendonly": appendonly, "appendfsync": appendfsync, "save": save}).durable

    assert judge("yes", "everysec", "") is True
    assert judge("yes", "always", "3600 1") is True
    assert judge("yes", "no", "") is False  # the OS flushes when it likes
    assert judge("no", "everysec", "3600 1 300 100") is False  # snapshots only: writes since the last are lost
    assert judge("no", "everysec", "") is False
    assert judge_persistence(None).durable is None


@pytest.fixture
def volatile_redis(tmp_path: Path) -> Iterator[OwnRedis]:
    """A Redis of this test's own that keeps nothing on disk (Redis' default on many installs)."""
    if not OwnRedis.available():
        pytest.skip("no redis-server binary to start a server of this test's own")
    server = OwnRedis(tmp_path, appendonly=False)
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.mark.anyio
async def test_a_server_without_aof_is_named_a_risk(volatile_redis: OwnRedis, caplog: pytest.LogCaptureFixture) -> None:
    store = RedisStore.from_url(volatile_redis.url, FakeClock())
    with caplog.at_level("WARNING", logger="botbridge.redis"):
        await store.open()
    try:
        durability = store.durability()
        assert durability is not None and durability.durable is False
        assert "appendonly=no" in durability.detail
        [warning] = [r.getMessage() for r in caplog.records if r.name == "botbridge.redis"]
        assert "loses everything it holds" in warning and "answered 2xx" in warning and "appendonly yes" in warning
    finally:
        await store.close()


@pytest.mark.anyio
async def test_durability_required_refuses_a_server_without_aof(volatile_redis: OwnRedis) -> None:
    store = RedisStore.from_url(volatile_redis.url + "?durability=required", FakeClock())
    try:
        with pytest.raises(NotDurable, match="appendonly=no"):
            await store.open()
    finally:
        await store.close()


@pytest.mark.anyio
async def test_durability_required_accepts_a_server_with_aof(
    own_redis: OwnRedis, caplog: pytest.LogCaptureFixture
) -> None:
    store = RedisStore.from_url(own_redis.url + "?durability=required", FakeClock())
    with caplog.at_level("WARNING", logger="botbridge.redis"):
        await store.open()
    try:
        durability = store.durability()
        assert durability is not None and durability.durable is True
        assert "appendonly=yes appendfsync=everysec" in durability.detail
        assert not [r for r in caplog.records if r.name == "botbridge.redis"]
    finally:
        await store.close()


@pytest.mark.anyio
async def test_config_refused_is_unknown_durability(own_redis: OwnRedis, monkeypatch: pytest.MonkeyPatch) -> None:
    async def refused(*args: object, **kwargs: object) -> None:
        raise redis.exceptions.ResponseError("unknown command 'CONFIG'")

    for mode, opens in (("warn", True), ("required", False)):
        store = RedisStore.from_url(f"{own_redis.url}?durability={mode}", FakeClock())
        store._redis = Redis.from_url(store.url, decode_responses=True)
        monkeypatch.setattr(store._redis, "config_get", refused)
        try:
            if opens:
                await store.open()
                durability = store.durability()
                assert durability is not None and durability.durable is None
            else:
                with pytest.raises(NotDurable, match="CONFIG GET is refused"):
                    await store.open()
        finally:
            await store.close()
