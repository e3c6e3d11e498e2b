"""Two `botbridge serve` processes on one shared store (Redis, PostgreSQL): one conversation, one rate, no loss."""

from __future__ import annotations

import importlib
import json
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from types import ModuleType
from typing import Any

import anyio
import httpx
import pytest

from .providers import BOTS, CHANNELS, digits
from .servers import HostProcess, Stamped, cpu_burner, eventually, serve_app

pytestmark = [pytest.mark.anyio, pytest.mark.slow]
KEY = "shared-hosts-key-1"
Cut = Callable[[], None]
SHARED_STORES = [
    pytest.param("redis", marks=pytest.mark.redis),
    pytest.param("postgres", marks=pytest.mark.postgres),
]


def plugin_testing(kind: str) -> ModuleType:
    try:
        return importlib.import_module(f"botbridge_{kind}.testing")
    except ImportError:
        pytest.skip(f"botbridge-{kind} is not installed")


def server_url(kind: str) -> str:
    """The test server of this kind, or a skip saying why there is none."""
    testing = plugin_testing(kind)
    url = testing.redis_test_url() if kind == "redis" else testing.postgres_test_url()
    reason = testing.unavailable_reason(url)
    if reason is not None:
        pytest.skip(reason)
    return str(url)


@contextmanager
def own_space(kind: str, url: str) -> Iterator[str]:
    """BOTBRIDGE_STORE over `url` in a key prefix / schema of its own, removed afterwards."""
    testing = plugin_testing(kind)
    if kind == "redis":
        prefix = testing.unique_prefix()
        try:
            yield testing.store_url(url, prefix)
        finally:
            testing.delete_prefix(url, prefix)
    else:
        schema = testing.unique_schema()
        try:
            yield testing.store_url(url, schema)
        finally:
            testing.drop_schema(url, schema)


@pytest.fixture(params=SHARED_STORES)
def store(request: pytest.FixtureRequest) -> Iterator[str]:
    """BOTBRIDGE_STORE for this test, on each shared store in turn."""
    with own_space(request.param, server_url(request.param)) as url:
        yield url


@pytest.fixture(params=SHARED_STORES)
def cuttable(
    request: pytest.FixtureRequest, tmp_path: Path
) -> Iterator[tuple[str, Callable[[], None], Callable[[], None]]]:
    """(BOTBRIDGE_STORE, cut, heal): a store the test can make unreachable and bring back.

    Redis: a redis-server of the test's own, stopped and restarted (its data in
    an append-only file). PostgreSQL: the shared server behind a TCP proxy of
    the test's own, stopped and restarted; the server itself is never stopped.
    """
    kind = request.param
    testing = plugin_testing(kind)
    if kind == "redis":
        if not testing.OwnRedis.available():
            pytest.skip("no redis-server binary to start a server of this test's own")
        server = testing.OwnRedis(tmp_path)
        server.start()
        try:
            yield f"redis://127.0.0.1:{server.port}/0", server.stop, server.start
        finally:
            server.stop()
    else:
        with own_space(kind, server_url(kind)) as url:
            proxy = testing.CuttableProxy(url)
            proxy.start()
            try:
                yield proxy.url, proxy.stop, proxy.start
            finally:
                proxy.close()


@pytest.fixture
def sides() -> Iterator[tuple[Any, Stamped, str, Any, str]]:
    channel, bot = CHANNELS["sinch"](), BOTS["AMAZON_LEX"]()
    stamped = Stamped(channel.app)
    with ExitStack() as stack:
        yield channel, stamped, stack.enter_context(serve_app(stamped)), bot, stack.enter_context(serve_app(bot.app))


def host_env(store: str, **extra: str) -> dict[str, str]:
    return {
        "BOTBRIDGE_STORE": store,
        "BOTBRIDGE_API_KEYS": f"acct1:{KEY}",
        "BOTBRIDGE_SECRET_KEY": "shared-hosts-secret-key-0001",
        **extra,
    }


@contextmanager
def two_hosts(store: str, workdir: Path, **extra: str) -> Iterator[tuple[HostProcess, HostProcess]]:
    hosts = [HostProcess(host_env(store, **extra), workdir) for _ in range(2)]
    try:
        for host in hosts:
            host.start()
        yield hosts[0], hosts[1]
    finally:
        for host in hosts:
            host.stop()


async def setup(host: HostProcess, channel: Any, channel_url: str, bot: Any, bot_url: str, **config: Any) -> str:
    """Sender and connector through one host; returns the sender's webhook path."""
    async with httpx.AsyncClient(base_url=host.url, headers={"Authorization": f"Bearer {KEY}"}) as api:
        sender = (await api.post("/v1/senders", json=channel.sender_body(channel_url))).json()
        body = bot.connector_body(sender["id"], bot_url)
        body["config"] = {**body["config"], **config}
        response = await api.post("/v1/connectors", json=body)
        assert response.status_code == 201, response.text
        return str(sender["webhook_url"]).removeprefix(host.url)


async def test_one_conversation_across_two_hosts(store: str, tmp_path: Path, sides: Any) -> None:
    channel, _, channel_url, bot, bot_url = sides
    with two_hosts(store, tmp_path) as (one, two):
        path = await setup(one, channel, channel_url, bot, bot_url, rate_limit=1000)
        contact = "+15557000001"
        for turn in range(10):  # each turn lands on the other host, without waiting for replies
            host = (one, two)[turn % 2]
            assert await channel.phone_says(host.url + path, f"turn {turn}", contact) == 200
        await eventually(lambda: len(channel.texts_to(contact)) >= 10, "ten replies")
        assert channel.texts_to(contact) == [f"echo: turn {n}" for n in range(10)]
        assert len(bot.sessions()) == 1, bot.sessions()  # one continuous session at the bot


async def test_the_live_stream_of_one_host_shows_what_the_other_did(store: str, tmp_path: Path, sides: Any) -> None:
    from botbridge.tail import frames

    channel, _, channel_url, bot, bot_url = sides
    with two_hosts(store, tmp_path) as (one, two):
        path = await setup(one, channel, channel_url, bot, bot_url, rate_limit=1000)
        contact = "+15557400001"
        seen: list[tuple[str, dict[str, Any]]] = []

        async def read(after: str | None) -> str | None:
            headers = {"Authorization": f"Bearer {KEY}"}
            async with httpx.AsyncClient(base_url=two.url, headers=headers, timeout=30) as client:
                async for event_id, kind, data in frames(client, {"contact": contact}, after):
                    seen.append((kind, json.loads(data)))
                    after = event_id
                    if sum(1 for k, _ in seen if k == "event") >= 2:
                        return after
            return after

        with anyio.fail_after(30):
            async with anyio.create_task_group() as group:
                group.start_soon(read, None)
                await anyio.sleep(0.3)
                assert await channel.phone_says(one.url + path, "across hosts", contact) == 200
        tps = [body["event"]["evt-tp"] for kind, body in seen if kind == "event"]
        assert tps == ["mo_message_received", "message_request_state_change"], tps
        assert any(kind == "conversation" and body["contact"] == contact for kind, body in seen)


async def rate_limited_load(store: str, tmp_path: Path, sides: Any, within: float = 40) -> None:
    """30 phones × 10 turns through two hosts at rate_limit 30: never more than 30 sends in a second."""
    channel, stamped, channel_url, bot, bot_url = sides
    with two_hosts(store, tmp_path) as (one, two):
        path = await setup(one, channel, channel_url, bot, bot_url, rate_limit=30)
        contacts = [f"+1555710{i:04d}" for i in range(30)]  # 30 phones, 10 turns each: 300 MOs

        async def phone(turn: int, n: int) -> None:
            host = (one, two)[(turn + n) % 2]
            assert await channel.phone_says(host.url + path, f"turn {turn}", contacts[n]) == 200

        for turn in range(10):  # each phone's turns in order: turn by turn
            async with anyio.create_task_group() as group:
                for n in range(len(contacts)):
                    group.start_soon(phone, turn, n)
        await eventually(lambda: len(channel.sent()) >= 300, "300 replies", within=within)
        sends = sorted(t for t, path in stamped.stamps if path.endswith("messages:send"))
        assert len(sends) == 300
        busiest = stamped.busiest_second("messages:send")
        assert 0 < busiest <= 30, busiest
        for contact in contacts:
            assert channel.texts_to(contact) == [f"echo: turn {n}" for n in range(10)]


async def test_rate_limit_holds_across_two_hosts(store: str, tmp_path: Path, sides: Any) -> None:
    await rate_limited_load(store, tmp_path, sides)


async def test_rate_limit_holds_on_a_busy_machine(store: str, tmp_path: Path, sides: Any) -> None:
    # Every core spinning beside the hosts: workers wake late, and a late one
    # must wait again rather than send next to the following slot's sender.
    # The machine may be that busy for a while (other suites burn too): the
    # replies may take longer; what must hold is the rate and that none is lost.
    with cpu_burner(60.0):
        await rate_limited_load(store, tmp_path, sides, within=120)


async def test_sigkill_of_one_host_loses_nothing_that_got_a_2xx(store: str, tmp_path: Path, sides: Any) -> None:
    channel, _, channel_url, bot, bot_url = sides
    # A short lease: the survivor takes the dead host's work over after 3 seconds.
    with two_hosts(store, tmp_path, BOTBRIDGE_JOB_LEASE="3") as (doomed, survivor):
        path = await setup(doomed, channel, channel_url, bot, bot_url, rate_limit=1000)
        accepted: list[str] = []

        async def phone(i: int) -> None:
            contact = f"+1555720{i:04d}"
            host = (doomed, survivor)[i % 2]
            status = await channel.phone_says(host.url + path, f"message {i}", contact)
            if status is not None and 200 <= status < 300:  # no answer: the provider would retry later
                accepted.append(contact)

        async def killer() -> None:
            await eventually(lambda: len(accepted) >= 40, "40 accepted MOs")
            doomed.kill()  # in the middle of the load, with work in flight

        async with anyio.create_task_group() as group:
            group.start_soon(killer)
            for i in range(200):
                group.start_soon(phone, i)
                await anyio.sleep(0.002)
        assert 40 <= len(accepted) < 200
        await eventually(
            lambda: all(channel.texts_to(contact) for contact in accepted),
            f"replies to all {len(accepted)} accepted MOs",
        )
        for contact in accepted:
            number = int(digits(contact)[-4:])
            # at least once: a reply sent just before the kill may be sent again by the survivor
            assert set(channel.texts_to(contact)) == {f"echo: message {number}"}


def queue_empty(host: HostProcess) -> bool:
    metrics = httpx.get(host.url + "/metrics").text
    return all(
        float(line.rsplit(" ", 1)[1]) == 0 for line in metrics.splitlines() if line.startswith("botbridge_queue_depth{")
    )


async def test_store_outage_under_a_host_503_then_recovery(tmp_path: Path, sides: Any, cuttable: Any) -> None:
    channel, _, channel_url, bot, bot_url = sides
    store, cut, heal = cuttable
    host = HostProcess(host_env(store), tmp_path)
    try:
        host.start()
        path = await setup(host, channel, channel_url, bot, bot_url, rate_limit=1000)
        contact = "+15557300001"
        assert await channel.phone_says(host.url + path, "before", contact) == 200
        await eventually(lambda: len(channel.texts_to(contact)) == 1, "the first reply")
        # its MT job completed too: a reply sent but not yet marked done when the store goes is sent again
        await eventually(lambda: queue_empty(host), "the reply's job completed")

        cut()
        async with httpx.AsyncClient(base_url=host.url) as client:
            ready = await client.get("/readyz")
            assert ready.status_code == 503
            body = channel.fake.inbound_body("while down", digits(contact), None)
            [*_, refused] = await channel.fake.deliver(host.url + path, body)
            assert refused.status_code == 503 and refused.headers["retry-after"]

            heal()  # the host reconnects by itself
            await eventually(lambda: httpx.get(host.url + "/readyz").status_code == 200, "ready again", within=15)
            assert await channel.phone_says(host.url + path, "after", contact) == 200
            await eventually(lambda: len(channel.texts_to(contact)) == 2, "the reply after the outage")
            assert channel.texts_to(contact) == ["echo: before", "echo: after"]
    finally:
        host.stop()
