"""The conversation engine end to end in-process: webhook → bot → MT → events."""

from __future__ import annotations

import asyncio
import json
import random
import time
import unicodedata
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

import httpx
import pytest

from botbridge import BotBackend, BotCredentialsInvalid, BotError, BotSession, InboundMessage, Option, Reply, hookimpl
from botbridge.clock import FakeClock, SystemClock
from botbridge.errors import SendError, StoreUnavailable
from botbridge.events import TOPIC
from botbridge.host import create_app
from botbridge.models import DeliveryReport
from botbridge.outbound import OutboundPolicy
from botbridge.plugins import Plugins
from botbridge.settings import Settings
from botbridge.signing import verify_standard_webhook
from botbridge.stores import memory, sqlite
from botbridge.testing import api_client

from .conftest import KEY_A, KEY_B, LoopChannel, sign_loop

pytestmark = pytest.mark.anyio
SUBSCRIBER = "http://subscriber.test/events"
SUB_SECRET = "subscriber-secret-1"


class ScriptBot(BotBackend):
    """Echoes, offers options on "menu", fails on demand, and remembers what it saw."""

    type = "SCRIPT"

    def __init__(self, *args: Any) -> None:
        super().__init__(*args)
        self.seen: list[tuple[str, str]] = []  # (conversation id, text)
        self.opened: list[str] = []
        self.closed: list[str] = []
        self.failures: list[Exception] = []
        self.open_failures: list[Exception] = []
        self.down_calls = 0
        self.sessions: dict[str, BotSession] = {}
        self.delay = 0.0
        self.gate: asyncio.Event | None = None

    def validate_credentials(self, credentials: str, config: dict[str, Any]) -> None:
        pass

    async def open(self, session: BotSession) -> None:
        if self.open_failures:
            raise self.open_failures.pop(0)
        self.opened.append(session.conversation_id)
        session.state["turns"] = 0

    async def close(self, session: BotSession) -> None:
        self.closed.append(session.conversation_id)

    async def send(self, session: BotSession, message: InboundMessage) -> list[Reply]:
        if session.config.get("down"):
            self.down_calls += 1
            raise BotError("bot answered 503", retryable=True)
        if self.failures:
            raise self.failures.pop(0)
        if self.delay:
            await asyncio.sleep(self.delay)
        self.seen.append((session.conversation_id, message.text))
        if self.gate is not None:  # a bot that answers when the test says so
            await self.gate.wait()
        self.sessions[session.conversation_id] = session
        session.state["turns"] += 1
        if message.text == "cards":  # a carousel: one reply per card, each with its buttons
            return [
                Reply(
                    text="Plan A", options=[Option(label="Buy A", value="buy-a"), Option(label="About A", value="a")]
                ),
                Reply(text="Plan B", options=[Option(label="Buy B", value="buy-b")]),
            ]
        if message.text == "menu":
            return [
                Reply(
                    text="Pick one",
                    options=[Option(label="Billing", value="billing"), Option(label="Sales", value="sales")],
                )
            ]
        if message.text == "agent":  # the bot hands the conversation to a person
            return [Reply(text="Connecting you to a person."), Reply(signals=["handoff"])]
        if message.text.startswith("say:"):  # several messages in one turn: "say:one|two|three"
            return [Reply(text=part) for part in message.text[4:].split("|")]
        return [Reply(text=f"echo: {message.text}")]


class SendingLoop(LoopChannel):
    """The loop channel with an outbox, send failures on demand and delivery reports."""

    def __init__(self, *args: Any) -> None:
        super().__init__(*args)
        self.outbox: list[dict[str, Any]] = []
        self.failures: list[Exception] = []

    async def send(self, sender, message):  # type: ignore[no-untyped-def]
        if self.failures:
            raise self.failures.pop(0)
        self.outbox.append({"to": message.contact, "text": message.text, "at": time.monotonic(), "id": message.id})
        return await super().send(sender, message)

    async def parse_webhook(self, request, sender):  # type: ignore[no-untyped-def]
        try:
            data = json.loads(request.body or b"{}")
        except ValueError:
            data = None  # the loop channel below refuses it as malformed
        if isinstance(data, dict) and "status" in data:
            await super().parse_webhook(request, sender)
            from botbridge.channel import WebhookResult

            return WebhookResult(
                reports=[
                    DeliveryReport(
                        channel=self.name, sender_id=sender.id, provider_message_id=data["id"], state=data["status"]
                    )
                ]
            )
        return await super().parse_webhook(request, sender)


class Plugin:
    @hookimpl
    def register_channels(self, register):  # type: ignore[no-untyped-def]
        register(SendingLoop)

    @hookimpl
    def register_bot_backends(self, register):  # type: ignore[no-untyped-def]
        register(ScriptBot)


class Subscriber:
    def __init__(self) -> None:
        self.received: list[dict[str, Any]] = []
        self.answers: dict[str, list[int]] = {}  # evt-tp → statuses to answer, in order

    def handler(self, request: httpx.Request) -> httpx.Response:
        verify_standard_webhook(SUB_SECRET, request.headers, request.content, now=time.time(), window=10**10)
        event = json.loads(request.content)
        self.received.append(event)
        planned = self.answers.get(event["event"]["evt-tp"])
        return httpx.Response(planned.pop(0) if planned else 200)

    def of_type(self, evt_tp: str) -> list[dict[str, Any]]:
        return [e for e in self.received if e["event"]["evt-tp"] == evt_tp]


class World:
    def __init__(self, app: Any, client: httpx.AsyncClient, clock: Any, subscriber: Subscriber) -> None:
        self.app, self.client, self.clock, self.subscriber = app, client, clock, subscriber
        self.rt = app.state.runtime
        self.sender_id = ""
        self.connector_id = ""

    @property
    def bot(self) -> ScriptBot:
        return self.rt.bot("SCRIPT")  # type: ignore[no-any-return]

    @property
    def channel(self) -> SendingLoop:
        return self.rt.channel("loop")  # type: ignore[no-any-return]

    async def mo(
        self, text: str, contact: str = "+15550100", message_id: str | None = None, media: list[Any] | None = None
    ) -> httpx.Response:
        payload = {"id": message_id or f"mo-{time.monotonic_ns()}", "from": contact, "text": text}
        body, headers = sign_loop("loop-secret", {**payload, "media": media} if media else payload)
        return await self.client.post(f"/v1/webhooks/loop/{self.sender_id}", content=body, headers=headers)

    async def report(self, provider_id: str, status: str) -> httpx.Response:
        body, headers = sign_loop("loop-secret", {"id": provider_id, "from": "x", "status": status})
        return await self.client.post(f"/v1/webhooks/loop/{self.sender_id}", content=body, headers=headers)

    def client_of(self, api_key: str) -> httpx.AsyncClient:
        """Another account's client on the running app (no second lifespan)."""
        return httpx.AsyncClient(
            transport=httpx.ASGITransport(app=self.app),
            base_url="http://botbridge.test",
            headers={"authorization": f"Bearer {api_key}"},
        )

    async def until(self, condition: Callable[[], bool], within: float = 10.0, step: float = 0.05) -> None:
        deadline = time.monotonic() + within
        while not condition():
            if time.monotonic() > deadline:
                raise AssertionError("condition not reached in time")
            if step and isinstance(self.clock, FakeClock):
                self.clock.advance(step)
            await asyncio.sleep(0.005)


@asynccontextmanager
async def make_world(
    tmp_path: Any,
    *,
    clock: Any = None,
    store: str = "memory://",
    workers: int = 4,
    config: dict | None = None,  # type: ignore[type-arg]
    store_instance: Any = None,
) -> AsyncIterator[World]:
    clock = clock or FakeClock()
    subscriber = Subscriber()
    plugins = Plugins()
    plugins.add(memory, "memory", builtin=True)
    plugins.add(sqlite, "sqlite", builtin=True)
    plugins.add(Plugin(), "test")
    plugins.collect()
    settings = Settings(
        store=store,
        api_keys=f"acct:{KEY_A},acct-b:{KEY_B}",
        secret_key="engine-test-secret-key",
        allow_private_urls=True,
        workers=workers,  # type: ignore[arg-type]
    )
    http = httpx.AsyncClient(transport=httpx.MockTransport(subscriber.handler))
    app = create_app(settings, plugins=plugins, clock=clock, http=http, store=store_instance)
    app.state.runtime.engine.settings.poll_interval = 0.02
    app.state.runtime.engine.settings.store_backoff = 0.005
    app.state.runtime.engine.settings.store_backoff_cap = 0.02
    async with api_client(app, KEY_A) as client:
        world = World(app, client, clock, subscriber)
        sender = (
            await client.post(
                "/v1/senders", json={"channel": "loop", "address": "+15559999", "webhook_secret": "loop-secret"}
            )
        ).json()
        world.sender_id = sender["id"]
        connector = await client.post(
            "/v1/connectors",
            json={"type": "SCRIPT", "sender_id": sender["id"], "credentials": "x", "config": config or {}},
        )
        world.connector_id = connector.json()["id"]
        assert (
            await client.post("/v1/subscriptions", json={"url": SUBSCRIBER, "secret": SUB_SECRET})
        ).status_code == 201
        yield world


@pytest.fixture
async def world(tmp_path: Any) -> AsyncIterator[World]:
    async with make_world(tmp_path) as w:
        yield w


async def test_mo_reaches_the_bot_and_the_reply_the_user(world: World) -> None:
    response = await world.mo("hello there", message_id="mo-1")
    assert response.status_code == 200 and response.json() == {"status": "accepted", "accepted": 1, "duplicates": 0}
    await world.until(lambda: len(world.subscriber.of_type("message_request_state_change")) == 1)
    assert [m["text"] for m in world.channel.outbox] == ["echo: hello there"]
    mo_event = world.subscriber.of_type("mo_message_received")[0]
    assert list(mo_event) == ["topic", "attempt", "event", "event-id"]
    assert mo_event["topic"] == TOPIC and mo_event["attempt"] == 1
    fields = mo_event["event"]["fld-val-list"]
    assert fields["message_body"] == "hello there" and fields["from_address"] == "+15550100"
    assert fields["sender_id_id"] == world.sender_id and fields["company-id"] == "acct"
    assert fields["fragments_count"] == 1 and fields["message_body_truncated"] is False
    state = world.subscriber.of_type("message_request_state_change")[0]["event"]["fld-val-list"]
    assert (state["previous_state"], state["new_state"]) == ("CREATED", "SENT")


async def test_the_same_webhook_five_times_reaches_the_bot_once(world: World) -> None:
    responses = await asyncio.gather(*(world.mo("only once", message_id="dup-1") for _ in range(5)))
    assert all(r.status_code == 200 for r in responses)
    assert sum(r.json()["accepted"] for r in responses) == 1
    await world.until(lambda: len(world.channel.outbox) == 1)
    await asyncio.wait_for(world.rt.engine.idle(), 5)
    assert [text for _, text in world.bot.seen] == ["only once"]


async def test_turns_of_one_conversation_keep_their_order(world: World) -> None:
    world.bot.delay = 0.002
    for i in range(20):
        assert (await world.mo(f"turn {i}")).status_code == 200
    await world.until(lambda: len(world.channel.outbox) == 20)
    assert [text for _, text in world.bot.seen] == [f"turn {i}" for i in range(20)]
    assert [m["text"] for m in world.channel.outbox] == [f"echo: turn {i}" for i in range(20)]
    assert len({conversation for conversation, _ in world.bot.seen}) == 1


async def test_conversations_run_in_parallel(world: World) -> None:
    world.bot.delay = 0.2
    started = time.monotonic()
    await asyncio.gather(*(world.mo("hi", contact=f"+1555020{i}") for i in range(4)))
    await world.until(lambda: len(world.channel.outbox) == 4)
    assert time.monotonic() - started < 0.6  # four workers, not one after another


async def test_idle_conversation_gets_a_new_backend_session(world: World) -> None:
    await world.mo("first")
    await world.until(lambda: len(world.channel.outbox) == 1)
    world.clock.advance(1000)
    await world.mo("second")
    await world.until(lambda: len(world.channel.outbox) == 2)
    assert len(world.bot.opened) == 1
    world.clock.advance(1801)
    await world.mo("third")
    await world.until(lambda: len(world.channel.outbox) == 3)
    assert len(world.bot.opened) == 2 and world.bot.closed == world.bot.opened[:1]
    conversations = [conversation for conversation, _ in world.bot.seen]
    assert conversations[0] == conversations[1] != conversations[2]
    assert world.bot.sessions[conversations[2]].state["turns"] == 1


async def test_numbered_options_map_back_to_values(world: World) -> None:
    await world.mo("menu")
    await world.until(lambda: len(world.channel.outbox) == 1)
    assert world.channel.outbox[0]["text"] == "Pick one\n1. Billing\n2. Sales\nReply with a number."
    await world.mo("2")
    await world.until(lambda: len(world.channel.outbox) == 2)
    await world.mo("menu")
    await world.until(lambda: len(world.channel.outbox) == 3)
    await world.mo("billing")
    await world.until(lambda: len(world.channel.outbox) == 4)
    await world.mo("2")  # no options pending any more: passed through as said
    await world.until(lambda: len(world.channel.outbox) == 5)
    assert [text for _, text in world.bot.seen] == ["menu", "sales", "menu", "billing", "2"]


async def test_options_of_several_replies_are_numbered_on_across_the_turn(world: World) -> None:
    await world.mo("cards")
    await world.until(lambda: len(world.channel.outbox) == 1)  # one SMS: a turn's messages are merged
    assert world.channel.outbox[0]["text"] == (
        "Plan A\n1. Buy A\n2. About A\nReply with a number.\n\nPlan B\n3. Buy B\nReply with a number."
    )
    await world.mo("3")  # the third option of the turn: the second card's button
    await world.until(lambda: len(world.channel.outbox) == 2)
    off = {"config": {"shaping": {"merge_replies": False}}}
    assert (await world.client.patch(f"/v1/senders/{world.sender_id}", json=off)).status_code == 200
    world.rt.cache.clear()
    await world.mo("cards")
    await world.until(lambda: len(world.channel.outbox) == 4)
    assert sorted(m["text"] for m in world.channel.outbox[2:]) == [
        "Plan A\n1. Buy A\n2. About A\nReply with a number.",
        "Plan B\n3. Buy B\nReply with a number.",
    ]
    await world.mo("about a")  # a label of any card of the turn
    await world.until(lambda: len(world.channel.outbox) == 5)
    assert [text for _, text in world.bot.seen] == ["cards", "buy-b", "cards", "a"]


async def test_refused_credentials_mark_the_connector_and_send_the_fallback(tmp_path: Any) -> None:
    async with make_world(tmp_path, config={"fallback_text": "Sorry, try later."}) as world:
        world.bot.failures.append(BotCredentialsInvalid("bot answered 403"))
        await world.mo("hello")
        await world.until(lambda: len(world.channel.outbox) == 1)
        assert world.channel.outbox[0]["text"] == "Sorry, try later."
        connector = (await world.client.get(f"/v1/connectors/{world.connector_id}")).json()
        assert connector["state"] == "credentials_invalid"
        assert "403" in connector["state_reason"]
        await world.until(lambda: len(world.subscriber.of_type("bot_error")) == 1)
        # new credentials give the connector a new chance
        updated = await world.client.post(
            f"/v1/connectors/{world.connector_id}",
            json={"credentials": "y", "version_number": connector["version_number"]},
        )
        assert updated.json()["state"] == "active"


async def test_a_refused_session_start_is_a_bot_failure(tmp_path: Any) -> None:
    async with make_world(tmp_path, config={"fallback_text": "Sorry, try later."}) as world:
        world.bot.open_failures.append(BotCredentialsInvalid("bot answered 401"))
        await world.mo("hello")
        await world.until(lambda: len(world.channel.outbox) == 1)
        assert world.channel.outbox[0]["text"] == "Sorry, try later."
        connector = (await world.client.get(f"/v1/connectors/{world.connector_id}")).json()
        assert connector["state"] == "credentials_invalid"
        assert await world.rt.store.get_conversation(world.sender_id, "+15550100") is None


async def test_a_bot_that_keeps_failing_is_not_called_for_a_while(world: World) -> None:
    engine = world.rt.engine
    engine.settings.bot_attempts = 1
    engine.settings.breaker_open = engine.settings.breaker_cap = 1000.0  # stays open while the clock steps
    down_sender = (
        await world.client.post(
            "/v1/senders", json={"channel": "loop", "address": "+15558888", "webhook_secret": "loop-secret"}
        )
    ).json()
    await world.client.post(
        "/v1/connectors",
        json={
            "type": "SCRIPT",
            "sender_id": down_sender["id"],
            "credentials": "x",
            "config": {"down": True, "fallback_text": "We will get back to you."},
        },
    )
    healthy_sender = world.sender_id
    world.sender_id = down_sender["id"]
    for i in range(8):
        await world.mo(f"anyone {i}", contact=f"+1555050{i:02d}")
    world.sender_id = healthy_sender
    await world.mo("and me?", contact="+15550600")
    await world.until(lambda: len(world.channel.outbox) == 9)
    texts = [m["text"] for m in world.channel.outbox]
    assert texts.count("We will get back to you.") == 8
    assert "echo: and me?" in texts
    # Calls already in flight when the circuit opened still count; the rest failed fast.
    assert engine.settings.breaker_threshold <= world.bot.down_calls < 8
    calls = world.bot.down_calls
    world.clock.advance(engine.settings.breaker_open + 1)  # the circuit closes: one more try
    world.sender_id = down_sender["id"]
    await world.mo("still there?", contact="+15550700")
    await world.until(lambda: len(world.channel.outbox) == 10)
    assert world.bot.down_calls == calls + 1


async def test_a_failing_bot_is_retried(world: World) -> None:
    world.rt.engine.settings.backoff_base = 1.0
    world.bot.failures.append(BotError("bot answered 503", retryable=True))
    await world.mo("hello")
    await world.until(lambda: len(world.channel.outbox) == 1, step=0.5)
    assert [text for _, text in world.bot.seen] == ["hello"]
    assert world.subscriber.of_type("bot_error") == []


async def test_a_sender_without_connector_drops_with_an_event(world: World) -> None:
    await world.client.delete(f"/v1/connectors/{world.connector_id}")
    assert (await world.mo("anyone?")).status_code == 200
    await world.until(lambda: len(world.subscriber.of_type("mo_message_dropped")) == 1)
    assert world.channel.outbox == []


async def test_sends_are_retried_then_fail_with_an_event(world: World) -> None:
    world.channel.failures += [SendError("503", retryable=True), SendError("503", retryable=True)]
    await world.mo("one")
    await world.until(lambda: len(world.channel.outbox) == 1, step=1.0)
    world.channel.failures += [SendError("channel answered 400: bad number", status_code=400)]
    await world.mo("two")
    await world.until(lambda: len(world.subscriber.of_type("message_request_state_change")) == 2, step=1.0)
    failed = world.subscriber.of_type("message_request_state_change")[-1]["event"]["fld-val-list"]
    assert failed["new_state"] == "FAILED" and failed["reason_code"] == "400"
    assert "bad number" in failed["reason_description"]


LEAKY = (
    "SCG message_requests answered 400: line one\r\nFORGED LOG LINE\x1b[31m\u202e" + "x" * 500 + "INTERNAL-ONLY-DATA"
)


async def test_provider_text_reaches_the_tenant_bounded_to_one_clean_line(world: World) -> None:
    world.channel.failures += [SendError(LEAKY, status_code=400, provider_code="SCG_ERROR_1008\r\nFORGED" + "y" * 99)]
    world.bot.failures.append(BotError(LEAKY))
    await world.mo("hello")
    await world.until(lambda: len(world.subscriber.of_type("bot_error")) == 1, step=1.0)
    sent = (
        await world.client.post("/v1/messages", json={"sender_id": world.sender_id, "to": "+15550101", "text": "x"})
    ).json()
    await world.until(lambda: len(world.subscriber.of_type("message_request_state_change")) >= 1, step=1.0)
    stored = (await world.client.get(f"/v1/messages/{sent['id']}")).json()
    bot_error = world.subscriber.of_type("bot_error")[0]["event"]["fld-val-list"]["reason_description"]
    # the provider's status and its own code, each a field of its own
    assert stored["reason_code"] == "400"
    code = stored["provider_error_code"]
    assert code.startswith("SCG_ERROR_1008 FORGED") and len(code) <= 64
    for text in (stored["reason_description"], bot_error):
        assert text.startswith("SCG message_requests answered 400: line one FORGED LOG LINE")
        assert len(text) <= 200 and "INTERNAL-ONLY-DATA" not in text
        assert not any(unicodedata.category(c)[0] == "C" for c in text)


async def test_a_plugin_bug_never_drops_accepted_work(world: World) -> None:
    world.channel.failures += [RuntimeError("plugin bug"), KeyError("another")]
    await world.mo("still here")
    await world.until(lambda: len(world.channel.outbox) == 1, step=2.0)
    assert world.channel.outbox[0]["text"] == "echo: still here"
    assert 'botbridge_job_errors_total{kind="mt"} 2.0' in (await world.client.get("/metrics")).text


class FailingStore(memory.MemoryStore):
    """The memory store, with the next calls of chosen methods failing as a store outage does."""

    def __init__(self, clock: Any) -> None:
        super().__init__(clock)
        self.failing: dict[str, int] = {}
        self.failed: dict[str, int] = {}

    def fail(self, method: str, times: int) -> None:
        self.failing[method] = times

    def _trip(self, method: str) -> None:
        if self.failing.get(method, 0) > 0:
            self.failing[method] -= 1
            self.failed[method] = self.failed.get(method, 0) + 1
            raise StoreUnavailable(f"{method}: database or disk is full")

    async def claim_jobs(self, kinds, *, limit, lease):  # type: ignore[no-untyped-def]
        self._trip("claim_jobs")
        return await super().claim_jobs(kinds, limit=limit, lease=lease)

    async def complete_job(self, job, *, then=()):  # type: ignore[no-untyped-def]
        self._trip("complete_job")
        await super().complete_job(job, then=then)

    async def retry_job(self, job, *, not_before, error):  # type: ignore[no-untyped-def]
        self._trip("retry_job")
        await super().retry_job(job, not_before=not_before, error=error)

    async def get_conversation(self, sender_id, contact):  # type: ignore[no-untyped-def]
        self._trip("get_conversation")
        return await super().get_conversation(sender_id, contact)


class CountingStore(memory.MemoryStore):
    """The memory store, counting the jobs handed out by claims, per kind."""

    def __init__(self, clock: Any) -> None:
        super().__init__(clock)
        self.claimed: dict[str, int] = {}

        self.outbound_reads = 0

    async def claim_jobs(self, kinds, *, limit, lease):  # type: ignore[no-untyped-def]
        jobs = await super().claim_jobs(kinds, limit=limit, lease=lease)
        for job in jobs:
            self.claimed[job.kind] = self.claimed.get(job.kind, 0) + 1
        return jobs

    async def get_outbound(self, message_id):  # type: ignore[no-untyped-def]
        self.outbound_reads += 1
        return await super().get_outbound(message_id)


async def test_a_turns_reply_is_sent_by_the_worker_that_made_it_without_a_claim(tmp_path: Any) -> None:
    clock = FakeClock()
    store = CountingStore(clock)
    async with make_world(tmp_path, clock=clock, store_instance=store) as world:
        for i in range(5):
            await world.mo(f"turn {i}", contact=f"+1555001{i}")
        await world.until(lambda: len(world.channel.outbox) == 5)
        assert store.claimed.get("mo") == 5 and "mt" not in store.claimed  # each reply leased as its turn ended
        assert store.outbound_reads == 0  # and sent from the record written with it, not read back
        await world.mo("turn 0 again", contact="+15550010")
        await world.mo("and again", contact="+15550010")  # queued behind: the reply waits its turn
        await world.until(lambda: len(world.channel.outbox) == 7)
        assert [m["text"] for m in world.channel.outbox[5:]] == ["echo: turn 0 again", "echo: and again"]


@pytest.mark.parametrize(
    "failures",
    [
        {"claim_jobs": 30},
        {"complete_job": 12},
        {"get_conversation": 3, "retry_job": 12},  # a store error inside the job, then in putting it back
    ],
    ids=["claim", "complete", "inside-and-retry"],
)
async def test_store_errors_anywhere_in_a_jobs_life_are_waited_out(tmp_path: Any, failures: dict[str, int]) -> None:
    clock = FakeClock()
    store = FailingStore(clock)
    async with make_world(tmp_path, clock=clock, store_instance=store) as world:
        tasks = list(world.rt.engine._tasks)
        for method, times in failures.items():
            store.fail(method, times)
        for i in range(6):
            await world.mo(f"turn {i}", contact=f"+1555000{i}")
        await world.until(lambda: len(world.channel.outbox) == 6, within=20.0, step=0.5)
        assert sorted(m["text"] for m in world.channel.outbox) == [f"echo: turn {i}" for i in range(6)]
        assert store.failed == failures
        assert all(not task.done() for task in tasks) and world.rt.engine._tasks == tasks
        assert world.rt.engine.workers_restarted == 0
        assert len(world.bot.seen) == 6  # nothing ran twice for the outage
        assert (await world.client.get("/readyz")).status_code == 200


async def test_readiness_says_when_workers_wait_for_the_store(tmp_path: Any, monkeypatch: Any) -> None:
    from botbridge import store_waits

    monkeypatch.setattr(store_waits, "NOT_READY_AFTER", 0.0)
    clock = FakeClock()
    store = FailingStore(clock)
    async with make_world(tmp_path, clock=clock, store_instance=store) as world:
        store.fail("claim_jobs", 10**9)
        await world.until(lambda: store.failed.get("claim_jobs", 0) > 2)
        response = await world.client.get("/readyz")
        assert response.status_code == 503
        assert "workers are waiting for the store" in response.json()["status"]
        store.fail("claim_jobs", 0)
        await world.mo("back")
        await world.until(lambda: len(world.channel.outbox) == 1)
        assert (await world.client.get("/readyz")).status_code == 200


async def test_a_worker_that_ends_anyway_is_started_again(world: World) -> None:
    engine = world.rt.engine
    original = engine._work

    async def broken(kinds):  # type: ignore[no-untyped-def]
        engine._work = original  # type: ignore[method-assign]
        raise RuntimeError("a bug past every handler")

    engine._work = broken  # type: ignore[method-assign]
    engine._tasks[0].cancel()  # cancelled: stopped on purpose, so not restarted
    await asyncio.sleep(0.01)
    assert engine.problems() == [f"1 of {len(engine._tasks)} workers are not running"]
    engine._tasks[0] = engine._start_worker(("mo", "mt", "dr"), "worker-0")  # this one hits the bug
    await asyncio.sleep(0.01)
    assert engine.workers_restarted == 1 and not engine._tasks[0].done()
    assert engine.problems() == []
    await world.mo("still served")
    await world.until(lambda: len(world.channel.outbox) == 1)


def test_backoff_is_bounded() -> None:
    from botbridge.engine import EngineSettings

    settings = EngineSettings(backoff_base=1.0, backoff_cap=300.0)
    assert all(0 < settings.backoff(n) <= 300 for n in (0, 5, 50, 5000))


async def test_delivery_reports_move_state_forward_only(world: World) -> None:
    await world.mo("hello")
    await world.until(lambda: len(world.channel.outbox) == 1)
    provider_id = "sent-" + world.channel.outbox[0]["id"]
    await world.report(provider_id, "DELIVERED")
    await world.report(provider_id, "SENT")  # late and out of order: ignored
    await world.report(provider_id, "DELIVERED")  # duplicate: deduped
    await world.until(lambda: len(world.subscriber.of_type("message_state_change")) == 1)
    await asyncio.wait_for(world.rt.engine.idle(), 5)
    changes = world.subscriber.of_type("message_state_change")
    assert [
        (c["event"]["fld-val-list"]["previous_state"], c["event"]["fld-val-list"]["new_state"]) for c in changes
    ] == [("SENT", "DELIVERED")]
    message = (await world.client.get(f"/v1/messages/{world.channel.outbox[0]['id']}")).json()
    assert message["state"] == "DELIVERED"


async def test_a_report_through_another_accounts_sender_never_touches_the_message(world: World) -> None:
    await world.mo("hello")
    await world.until(lambda: len(world.channel.outbox) == 1)
    message_id = world.channel.outbox[0]["id"]
    provider_id = "sent-" + message_id
    async with world.client_of(KEY_B) as other:
        theirs = await other.post(
            "/v1/senders", json={"channel": "loop", "address": "+15558888", "webhook_secret": "b-secret"}
        )
        assert theirs.status_code == 201
        # correctly signed, through account B's own sender, carrying account A's provider id
        body, headers = sign_loop("b-secret", {"id": provider_id, "from": "x", "status": "FAILED"})
        forged = await other.post(f"/v1/webhooks/loop/{theirs.json()['id']}", content=body, headers=headers)
        assert forged.status_code == 200
        await world.until(lambda: not world.rt.store.jobs, step=5.0)
    assert (await world.client.get(f"/v1/messages/{message_id}")).json()["state"] == "SENT"
    assert world.subscriber.of_type("message_state_change") == []
    # account A's genuine report is not taken for a duplicate of the forged one
    await world.report(provider_id, "FAILED")
    await world.until(lambda: len(world.subscriber.of_type("message_state_change")) == 1)
    assert (await world.client.get(f"/v1/messages/{message_id}")).json()["state"] == "FAILED"


async def test_records_a_plugin_attributes_to_another_sender_stay_with_the_webhooks_sender(world: World) -> None:
    async with world.client_of(KEY_B) as other:
        theirs = (
            await other.post("/v1/senders", json={"channel": "loop", "address": "+1555777", "webhook_secret": "b"})
        ).json()
    original = world.channel.parse_webhook

    async def misattributing(request, sender):  # type: ignore[no-untyped-def]
        result = await original(request, sender)
        for message in result.messages:
            message.sender_id = theirs["id"]
        return result

    world.channel.parse_webhook = misattributing  # type: ignore[method-assign]
    await world.mo("hello")
    await world.until(lambda: len(world.channel.outbox) == 1)
    assert world.channel.outbox[0]["to"] == "+15550100"
    outbound = await world.rt.store.get_outbound(world.channel.outbox[0]["id"])
    assert outbound is not None and outbound.sender_id == world.sender_id


async def test_subscriber_retries_count_attempts(world: World) -> None:
    world.subscriber.answers = {"mo_message_received": [500, 500]}
    await world.mo("hello")
    await world.until(lambda: len(world.subscriber.of_type("mo_message_received")) == 3, step=1.0)
    attempts = [e["attempt"] for e in world.subscriber.of_type("mo_message_received")]
    assert attempts == [1, 2, 3]
    assert len({e["event-id"] for e in world.subscriber.of_type("mo_message_received")}) == 1


async def test_an_always_failing_subscriber_ends_in_failures(world: World) -> None:
    world.rt.engine.settings.event_attempts = 3
    world.subscriber.answers = {"mo_message_received": [500] * 9, "message_request_state_change": [500] * 9}
    await world.mo("hello")
    subscription = (await world.client.get("/v1/subscriptions")).json()["items"][0]
    failures: list[Any] = []

    async def poll() -> None:
        while len(failures) < 2:
            failures[:] = (await world.client.get(f"/v1/subscriptions/{subscription['id']}/failures")).json()["items"]
            world.clock.advance(5)
            await asyncio.sleep(0.01)

    await asyncio.wait_for(poll(), 10)
    kinds = sorted(f["event"]["event"]["evt-tp"] for f in failures)
    assert kinds == ["message_request_state_change", "mo_message_received"]
    assert all(f["attempts"] == 3 and f["last_error"] == "subscriber answered 500" for f in failures)


async def test_late_replies_are_sent(world: World) -> None:
    await world.mo("hello")
    await world.until(lambda: len(world.channel.outbox) == 1)
    conversation = world.bot.seen[0][0]
    await world.bot.sessions[conversation].deliver_late([Reply(text="one more thing")])
    await world.until(lambda: len(world.channel.outbox) == 2)
    assert world.channel.outbox[1]["text"] == "one more thing"


async def test_api_messages_carry_the_external_id(world: World) -> None:
    response = await world.client.post(
        "/v1/messages",
        json={"sender_id": world.sender_id, "to": "+15550111", "text": "Your code is 1234", "external_id": "ext-9"},
    )
    assert response.status_code == 202
    await world.until(lambda: len(world.subscriber.of_type("message_request_state_change")) == 1)
    fields = world.subscriber.of_type("message_request_state_change")[0]["event"]["fld-val-list"]
    assert fields["external_message_request_id"] == "ext-9"
    assert (
        await world.client.post("/v1/messages", json={"sender_id": "nope", "to": "+1", "text": "x"})
    ).status_code == 422


async def test_private_subscriber_urls_are_refused_unless_allowed(world: World) -> None:
    world.rt.outbound = OutboundPolicy()
    for url in (
        "http://127.0.0.1:9/x",
        "http://10.0.0.1/x",
        "http://[::1]/x",
        "http://169.254.169.254/latest",
        "ftp://example.com/x",
    ):
        response = await world.client.post("/v1/subscriptions", json={"url": url, "secret": SUB_SECRET})
        assert response.status_code == 422, url
        assert response.json()["error"]["details"][0]["field"] == "url"


async def test_rate_limit_spaces_sends(tmp_path: Any) -> None:
    async with make_world(tmp_path, clock=SystemClock(), config={"rate_limit": 40}) as world:
        for i in range(60):
            await world.mo("hi", contact=f"+1555030{i:02d}")
        await world.until(lambda: len(world.channel.outbox) == 60, within=20)
        stamps = sorted(m["at"] for m in world.channel.outbox)
        busiest = max(sum(1 for s in stamps if t <= s < t + 1) for t in stamps)
        assert busiest <= 40


class StallingClock(SystemClock):
    """The system clock on a busy machine: for 0.4 s of every 2 s nothing wakes up.

    A sleeper due in a stall wakes at its end, with every other one due in it.
    """

    def __init__(self) -> None:
        self.start = time.time()

    async def sleep(self, seconds: float) -> None:
        due = self.now() + max(0.0, seconds)
        phase = (due - self.start) % 2.0
        if 1.0 <= phase < 1.4:
            due += 1.4 - phase
        await super().sleep(due - self.now())


async def test_a_worker_that_wakes_late_waits_again_instead_of_exceeding_the_rate(tmp_path: Any) -> None:
    async with make_world(tmp_path, clock=StallingClock(), config={"rate_limit": 10}) as world:
        for i in range(40):
            await world.mo("hi", contact=f"+1555035{i:02d}")
        await world.until(lambda: len(world.channel.outbox) == 40, within=20)
        stamps = sorted(m["at"] for m in world.channel.outbox)
        assert max(sum(1 for s in stamps if t <= s < t + 1) for t in stamps) <= 10


@pytest.mark.parametrize("seed", range(3))
async def test_the_rate_holds_at_the_provider_however_long_requests_travel(tmp_path: Any, seed: int) -> None:
    # Each request reaches the provider a random while after it was admitted,
    # and its answer comes back later still (a busy machine, a slow network).
    async with make_world(tmp_path, config={"rate_limit": 10}) as world:
        rng = random.Random(seed)
        arrivals: list[float] = []
        send = world.channel.send

        async def travelling_send(sender: Any, message: Any) -> Any:
            await world.clock.sleep(rng.choice([0.0, 0.05, 0.3]))
            arrivals.append(world.clock.now())
            await world.clock.sleep(rng.choice([0.0, 0.05, 0.2]))
            return await send(sender, message)

        world.channel.send = travelling_send  # type: ignore[method-assign]
        for i in range(40):
            await world.mo("hi", contact=f"+1555036{i:02d}")
        await world.until(lambda: len(world.channel.outbox) == 40, within=30, step=0.01)
        arrivals.sort()
        assert max(sum(1 for s in arrivals if t <= s < t + 1) for t in arrivals) <= 10


async def test_long_rate_waits_give_the_job_back_instead_of_outliving_the_lease(tmp_path: Any, caplog: Any) -> None:
    caplog.set_level("INFO", logger="botbridge.engine")
    async with make_world(tmp_path, config={"rate_limit": 1}) as world:
        start = world.clock.now()
        world.rt.engine.settings.lease = 3.0  # waits over 1 s are handed back to the queue
        for i in range(6):
            await world.mo(f"hi {i}", contact=f"+1555040{i:02d}")
        await world.until(lambda: len(world.channel.outbox) == 6, step=0.2)
        assert sorted(m["text"] for m in world.channel.outbox) == [f"echo: hi {i}" for i in range(6)]
        states = world.subscriber.of_type("message_request_state_change")
        assert len(states) == 6 and all(s["event"]["fld-val-list"]["new_state"] == "SENT" for s in states)
        assert world.clock.now() - start >= 5 * 1.1  # the slots were kept
        assert any("waiting for its send slot" in r.getMessage() for r in caplog.records)


async def test_a_long_wait_at_admission_also_gives_the_job_back(tmp_path: Any, caplog: Any) -> None:
    caplog.set_level("INFO", logger="botbridge.engine")
    async with make_world(tmp_path, config={"rate_limit": 0.5}) as world:
        world.rt.engine.settings.lease = 3.0
        # Another host sent on this connector a moment ago: this host's slot is
        # free, but that send counts for 2 s after its answer, over a third of the lease.
        other_send = world.clock.now()
        assert await world.rt.store.admit_send(world.connector_id, 0.5, other_send, "other", 60.0) == 0.0
        await world.rt.store.finish_send(world.connector_id, "other", 0.5, other_send)
        sent_at: list[float] = []
        send = world.channel.send

        async def timed_send(sender: Any, message: Any) -> Any:
            sent_at.append(world.clock.now())
            return await send(sender, message)

        world.channel.send = timed_send  # type: ignore[method-assign]
        await world.mo("hi")
        await world.until(lambda: len(world.channel.outbox) == 1, step=0.2)
        assert len(sent_at) == 1 and sent_at[0] >= other_send + 2.0
        assert any("waiting for its send slot" in r.getMessage() for r in caplog.records)
        states = world.subscriber.of_type("message_request_state_change")
        await world.until(lambda: len(states) == 1)
        assert states[0]["event"]["fld-val-list"]["new_state"] == "SENT"


async def test_metrics_count_what_happened(world: World) -> None:
    await world.mo("hello")
    await world.until(lambda: len(world.channel.outbox) == 1)
    text = (await world.client.get("/metrics")).text
    assert 'botbridge_mo_accepted_total{channel="loop"} 1.0' in text
    assert 'botbridge_mt_sent_total{channel="loop"} 1.0' in text
    assert 'botbridge_conversations_opened_total{bot="SCRIPT"} 1.0' in text
    assert "+15550100" not in text


async def test_accepted_work_survives_a_restart(tmp_path: Any) -> None:
    store = f"sqlite:///{tmp_path}/restart.db"
    async with make_world(tmp_path, store=store) as world:
        await world.rt.engine.stop()  # accept, but never process
        sender_id = world.sender_id
        for i in range(3):
            assert (await world.mo(f"kept {i}")).status_code == 200
        assert (await world.rt.store.queue_depth()) == {"mo": 3}
    async with make_world(tmp_path, store=store) as world:
        world.sender_id = sender_id
        await world.until(lambda: len(world.channel.outbox) == 3)
        assert sorted(m["text"] for m in world.channel.outbox) == [f"echo: kept {i}" for i in range(3)]


async def test_a_store_announcing_new_work_wakes_idle_workers_before_their_poll() -> None:
    from types import SimpleNamespace

    from botbridge.engine import Engine, EngineSettings
    from botbridge.stores.memory import MemoryStore

    class Announcing(MemoryStore):
        def watch(self, wake: Callable[[str, int], None]) -> None:
            self.wake = wake

        async def claim_jobs(self, kinds: Any, *, limit: int, lease: float) -> list[Any]:
            self.claims.append(tuple(kinds))
            return []

    clock = FakeClock()
    store = Announcing(clock)
    store.claims = []
    engine = Engine(SimpleNamespace(store=store, clock=clock), EngineSettings(workers=2, event_workers=1))
    engine.settings.poll_interval = 60.0
    await engine.start()
    try:
        await asyncio.sleep(0.05)
        before = len(store.claims)
        assert before == 3  # each worker looked once, then sleeps until woken or a minute passes
        store.wake("message", 5)
        await asyncio.sleep(0.05)
        assert len(store.claims) == before + 2  # as many as there are message workers, no more
        store.wake("event", 1)
        await asyncio.sleep(0.05)
        assert store.claims[-1] == ("event",)
    finally:
        await engine.stop()


# --- calls that are not idempotent are never repeated blindly ------------------


async def test_a_turn_the_bot_may_have_received_is_not_sent_again(tmp_path: Any) -> None:
    async with make_world(tmp_path, config={"fallback_text": "Sorry, try later."}) as world:
        world.bot.failures.append(BotError("bot answered 502", retryable=True, outcome_unknown=True))
        await world.mo("once only")
        await world.until(lambda: len(world.channel.outbox) == 1, step=0.5)
        await asyncio.wait_for(world.rt.engine.idle(), 5)
        assert world.channel.outbox[0]["text"] == "Sorry, try later."
        assert world.bot.seen == [] and world.bot.failures == []
        assert len(world.subscriber.of_type("bot_error")) == 1


async def test_a_turn_cut_off_by_the_bot_timeout_is_not_sent_again(tmp_path: Any) -> None:
    async with make_world(tmp_path, clock=SystemClock(), config={"fallback_text": "Sorry, try later."}) as world:
        world.rt.engine.settings.bot_timeout = 0.05
        world.bot.delay = 0.2
        await world.mo("slow one")
        await world.until(lambda: len(world.channel.outbox) == 1)
        await asyncio.wait_for(world.rt.engine.idle(), 5)
        assert [m["text"] for m in world.channel.outbox] == ["Sorry, try later."]
        assert world.bot.seen == []  # cut off once, never started again


def test_only_a_failure_proving_the_bot_never_got_the_turn_is_safe_to_retry() -> None:
    bot = ScriptBot(httpx.AsyncClient(), FakeClock())
    assert bot.safe_to_retry(BotError("429", retryable=True))
    assert not bot.safe_to_retry(BotError("502", retryable=True, outcome_unknown=True))
    assert not bot.safe_to_retry(TimeoutError())
    assert not bot.safe_to_retry(BotError("400"))


class Lookups:
    """`find_sent` for the loop channel: what the provider holds, by our message id."""

    def __init__(self, channel: SendingLoop) -> None:
        self.held: dict[str, str] = {}
        self.asked: list[str] = []
        channel.finds_sent = True
        channel.find_sent = self.find  # type: ignore[method-assign]

    async def find(self, sender: Any, message: Any) -> Any:
        from botbridge.models import SendResult

        self.asked.append(message.id)
        held = self.held.get(message.id)
        return SendResult(provider_message_id=held) if held else None


async def _final_state(world: World) -> dict[str, Any]:
    await world.until(lambda: len(world.subscriber.of_type("message_request_state_change")) == 1, step=1.0)
    return world.subscriber.of_type("message_request_state_change")[0]["event"]["fld-val-list"]  # type: ignore[no-any-return]


async def test_an_ambiguous_send_is_looked_up_and_not_sent_again(world: World) -> None:
    lookups = Lookups(world.channel)

    async def held_by_provider(sender: Any, message: Any) -> Any:
        lookups.held[message.id] = "prov-1"  # the timed-out send did reach the provider
        raise SendError("timed out", retryable=True, outcome_unknown=True)

    world.channel.send = held_by_provider  # type: ignore[method-assign]
    await world.mo("hello")
    state = await _final_state(world)
    assert state["new_state"] == "SENT" and world.channel.outbox == []
    message_id = next(iter(lookups.held))
    assert lookups.asked == [message_id]
    stored = (await world.client.get(f"/v1/messages/{message_id}")).json()
    assert stored["provider_message_id"] == "prov-1"


async def test_an_ambiguous_send_the_provider_does_not_hold_is_sent_again(world: World) -> None:
    lookups = Lookups(world.channel)
    world.channel.failures.append(SendError("answered 502", retryable=True, outcome_unknown=True))
    await world.mo("hello")
    state = await _final_state(world)
    assert state["new_state"] == "SENT"
    assert [m["text"] for m in world.channel.outbox] == ["echo: hello"]
    assert len(lookups.asked) == 1


async def test_an_ambiguous_send_without_a_lookup_fails_instead_of_risking_a_duplicate(world: World) -> None:
    world.channel.failures.append(SendError("timed out", retryable=True, outcome_unknown=True))
    await world.mo("hello")
    state = await _final_state(world)
    await asyncio.wait_for(world.rt.engine.idle(), 5)
    assert (state["new_state"], state["reason_code"]) == ("FAILED", "outcome_unknown")
    assert world.channel.outbox == []
