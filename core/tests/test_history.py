"""The operator's view: conversations, their timelines, outbound messages, retention and erasure."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest

from botbridge.clock import FakeClock
from botbridge.errors import BotError

from .conftest import KEY_B
from .test_engine import World, make_world

pytestmark = pytest.mark.anyio


@pytest.fixture
async def world(tmp_path: Any) -> Any:
    # time as the wall clock shows it: message times come from it, retention compares with the engine's clock
    async with make_world(tmp_path, clock=FakeClock(start=time.time()), config={"fallback_text": "Sorry."}) as w:
        yield w


async def settled(world: World) -> None:
    await asyncio.wait_for(world.rt.engine.idle(), 10)


async def test_a_conversations_timeline_shows_what_happened_in_order(world: World) -> None:
    contact = "+15550111"
    await world.mo("menu", contact=contact)
    await world.until(lambda: len(world.channel.outbox) == 1)
    await world.mo("2", contact=contact)  # answers the numbered option
    await world.until(lambda: len(world.channel.outbox) == 2)
    await world.report("sent-" + world.channel.outbox[0]["id"], "DELIVERED")
    world.bot.failures.append(BotError("bot answered 400"))
    await world.mo("break", contact=contact)
    await world.until(lambda: len(world.channel.outbox) == 3)  # the fallback
    await settled(world)

    [listed] = (await world.client.get("/v1/conversations", params={"contact": contact})).json()["items"]
    assert listed["state"] == "open" and listed["sender_id"] == world.sender_id
    assert listed["connector_id"] == world.connector_id and listed["contact"] == contact
    conversation = (await world.client.get(f"/v1/conversations/{listed['id']}")).json()
    assert conversation == listed
    items = (await world.client.get(f"/v1/conversations/{listed['id']}/messages")).json()["items"]
    kinds = [(i["type"], i.get("text") or (i.get("message") or {}).get("text")) for i in items]
    assert kinds == [
        ("conversation_opened", None),
        ("mo", "menu"),
        ("mt", "Pick one"),
        ("mo", "2"),
        ("mt", "echo: sales"),
        ("mo", "break"),
        ("bot_error", None),
        ("mt", "Sorry."),
    ]
    first_reply = items[2]["message"]
    assert [s["state"] for s in first_reply["states"]] == ["CREATED", "SENT", "DELIVERED"]
    assert first_reply["origin"] == "bot" and [o["label"] for o in first_reply["options"]] == ["Billing", "Sales"]
    assert items[6]["reason"] == "bot answered 400"
    assert items[7]["message"]["origin"] == "fallback"
    assert items[1]["provider_message_id"] and items[1]["message_id"]
    times = [i["at"] for i in items]
    assert times == sorted(times)


async def test_a_retried_turn_is_in_the_timeline_once(world: World) -> None:
    world.bot.failures.append(BotError("bot answered 503", retryable=True))
    await world.mo("again", contact="+15550112")
    await world.until(lambda: len(world.channel.outbox) == 1, step=2.0)  # after the retry's backoff
    await settled(world)
    [conversation] = (await world.client.get("/v1/conversations", params={"contact": "+15550112"})).json()["items"]
    items = (await world.client.get(f"/v1/conversations/{conversation['id']}/messages")).json()["items"]
    assert [i["type"] for i in items] == ["conversation_opened", "mo", "mt"]


async def test_conversations_are_listed_newest_first_in_pages_with_filters(world: World) -> None:
    for n in range(3):
        await world.mo("hi", contact=f"+1555012{n}")
        await world.until(lambda n=n: len(world.channel.outbox) == n + 1)
    world.clock.advance(3600)  # past the default conversation_timeout: the next MO opens a new one
    await world.mo("back", contact="+15550120")
    await world.until(lambda: len(world.channel.outbox) == 4)
    await settled(world)

    first = (await world.client.get("/v1/conversations", params={"limit": 3})).json()
    assert [c["contact"] for c in first["items"]] == ["+15550120", "+15550122", "+15550121"]
    assert first["next_cursor"] == first["items"][-1]["id"]
    rest = (await world.client.get("/v1/conversations", params={"limit": 3, "cursor": first["next_cursor"]})).json()
    assert [c["contact"] for c in rest["items"]] == ["+15550120"] and rest["next_cursor"] is None  # the last page
    closed = (await world.client.get("/v1/conversations", params={"state": "closed"})).json()["items"]
    assert [(c["contact"], c["closed_at"] is not None) for c in closed] == [("+15550120", True)]
    mine = (await world.client.get("/v1/conversations", params={"contact": "+15550120"})).json()["items"]
    assert [c["state"] for c in mine] == ["open", "closed"]
    opened = mine[0]["opened_at"]
    since = (await world.client.get("/v1/conversations", params={"since": opened})).json()["items"]
    assert [c["id"] for c in since] == [mine[0]["id"]]
    until = (await world.client.get("/v1/conversations", params={"until": opened})).json()["items"]
    assert mine[0]["id"] not in [c["id"] for c in until] and len(until) == 3
    for bad in ({"state": "gone"}, {"since": "yesterday"}, {"until": "2026-12-01T10:00:00"}, {"limit": "0"}):
        response = await world.client.get("/v1/conversations", params=bad)
        assert response.status_code == 422, (bad, response.text)
        assert response.json()["error"]["code"] == "validation_error"


async def test_outbound_messages_are_listed_with_filters(world: World) -> None:
    sent = []
    for n, external in enumerate(["crm-1", "crm-2", None]):
        body = {"sender_id": world.sender_id, "to": f"+1555013{n % 2}", "text": f"notice {n}"}
        if external:
            body["external_id"] = external
        sent.append((await world.client.post("/v1/messages", json=body)).json())
    await world.until(lambda: len(world.channel.outbox) == 3)
    await settled(world)
    listed = (await world.client.get("/v1/messages")).json()
    assert [m["id"] for m in listed["items"]] == [m["id"] for m in reversed(sent)] and listed["next_cursor"] is None
    assert all(
        m["origin"] == "api" and [s["state"] for s in m["states"]] == ["CREATED", "SENT"] for m in listed["items"]
    )
    by_external = (await world.client.get("/v1/messages", params={"external_id": "crm-2"})).json()["items"]
    assert [m["text"] for m in by_external] == ["notice 1"]
    to = (await world.client.get("/v1/messages", params={"to": "+15550130"})).json()["items"]
    assert sorted(m["text"] for m in to) == ["notice 0", "notice 2"]
    assert (await world.client.get("/v1/messages", params={"state": "FAILED"})).json()["items"] == []
    page = (await world.client.get("/v1/messages", params={"limit": 2})).json()
    assert len(page["items"]) == 2 and page["next_cursor"] == page["items"][-1]["id"]


async def test_history_is_the_accounts_own(world: World) -> None:
    await world.mo("private", contact="+15550140")
    await world.until(lambda: len(world.channel.outbox) == 1)
    await settled(world)
    [conversation] = (await world.client.get("/v1/conversations")).json()["items"]
    async with world.client_of(KEY_B) as other:
        assert (await other.get("/v1/conversations")).json() == {"items": [], "next_cursor": None}
        assert (await other.get("/v1/messages")).json()["items"] == []
        for path in (f"/v1/conversations/{conversation['id']}", f"/v1/conversations/{conversation['id']}/messages"):
            response = await other.get(path)
            assert response.status_code == 404 and response.json()["error"]["code"] == "not_found"
        filtered = await other.get("/v1/conversations", params={"sender_id": world.sender_id})
        assert filtered.json()["items"] == []
        erased = await other.delete("/v1/contacts/+15550140")  # erases nothing of another account's
        assert erased.status_code == 200 and erased.json()["records_erased"] == 0
    assert len((await world.client.get("/v1/conversations")).json()["items"]) == 1


async def test_history_older_than_the_retention_is_forgotten(world: World) -> None:
    await world.mo("long ago", contact="+15550150")
    await world.until(lambda: len(world.channel.outbox) == 1)
    await settled(world)
    world.clock.advance(2 * 86400)
    await world.mo("still here", contact="+15550151")
    await world.until(lambda: len(world.channel.outbox) == 2)
    await settled(world)
    world.rt.retention.days = 1.5
    # the old conversation is the latest of its contact and still open: it stays, its timeline goes
    assert await world.rt.retention.purge() > 0
    listed = {c["contact"]: c["id"] for c in (await world.client.get("/v1/conversations")).json()["items"]}
    old = (await world.client.get(f"/v1/conversations/{listed['+15550150']}/messages")).json()["items"]
    assert old == []
    recent = (await world.client.get(f"/v1/conversations/{listed['+15550151']}/messages")).json()["items"]
    assert [i["type"] for i in recent] == ["conversation_opened", "mo", "mt"]


async def test_the_retention_task_stops_when_a_store_call_loses_the_cancel() -> None:
    from botbridge.retention import Retention
    from botbridge.stores.memory import MemoryStore

    entered = asyncio.Event()

    class LosesCancels(MemoryStore):
        async def purge_history(self, before: float) -> int:
            # What asyncio.wait_for does on Python 3.11 when a cancel lands as its inner await finishes.
            entered.set()
            try:
                await asyncio.sleep(30)
            except asyncio.CancelledError:
                pass
            return 0

    clock = FakeClock()
    retention = Retention(LosesCancels(clock), clock, days=30)
    retention.start()
    await asyncio.wait_for(entered.wait(), 5)
    await asyncio.wait_for(retention.stop(), 5)  # used to sleep an hour of the clock's time: forever here
    assert clock.sleepers == 0


async def test_erasing_a_contact_through_the_api_leaves_nothing_of_them(world: World) -> None:
    await world.mo("erase me", contact="+15550160")
    await world.mo("keep me", contact="+15550161")
    await world.until(lambda: len(world.channel.outbox) == 2)
    await settled(world)
    response = await world.client.delete("/v1/contacts/+15550160")
    assert response.status_code == 200, response.text
    assert response.json()["contact"] == "+15550160" and response.json()["records_erased"] >= 4
    assert (await world.client.get("/v1/conversations", params={"contact": "+15550160"})).json()["items"] == []
    assert (await world.client.get("/v1/messages", params={"to": "+15550160"})).json()["items"] == []
    assert len((await world.client.get("/v1/conversations", params={"contact": "+15550161"})).json()["items"]) == 1
    store = world.rt.store  # the memory store: every record it holds
    held = [*store.conversations.values(), *store.conversation_log.values(), *store.history.values()]
    held += [m for _, m in store.outbound.values()] + list(store.failures.values())
    held += [q.job for q in store.jobs.values()]
    assert not [r for r in held if "+15550160" in r.model_dump_json()]
