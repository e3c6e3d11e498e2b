"""`GET /v1/events/stream`: an account's events and conversation changes as Server-Sent Events."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest

from .conftest import KEY_A, KEY_B
from .test_engine import World, make_world

pytestmark = pytest.mark.anyio


class Stream:
    """A client of the stream, speaking ASGI to the app itself (a stream never ends, so no buffering client)."""

    def __init__(self, app: Any, key: str, query: str = "", last_event_id: str | None = None) -> None:
        headers = [(b"authorization", f"Bearer {key}".encode())]
        if last_event_id:
            headers.append((b"last-event-id", last_event_id.encode()))
        self.scope = {
            "type": "http",
            "asgi": {"version": "3.0"},
            "http_version": "1.1",
            "method": "GET",
            "scheme": "http",
            "path": "/v1/events/stream",
            "raw_path": b"/v1/events/stream",
            "query_string": query.encode(),
            "headers": headers,
            "server": ("botbridge.test", 80),
            "client": ("127.0.0.1", 1234),
            "root_path": "",
        }
        self.app = app
        self.status = 0
        self.frames: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        self._buffer = ""
        self._gone = asyncio.Event()
        self._sent_request = False

    async def _receive(self) -> dict[str, Any]:
        if not self._sent_request:
            self._sent_request = True
            return {"type": "http.request", "body": b"", "more_body": False}
        await self._gone.wait()
        return {"type": "http.disconnect"}

    async def _send(self, message: dict[str, Any]) -> None:
        if message["type"] == "http.response.start":
            self.status = message["status"]
            self.headers = {k.decode(): v.decode() for k, v in message["headers"]}
        elif message["type"] == "http.response.body":
            self._buffer += message.get("body", b"").decode()
            while "\n\n" in self._buffer:
                block, self._buffer = self._buffer.split("\n\n", 1)
                frame: dict[str, Any] = {}
                for line in block.split("\n"):
                    name, _, value = line.partition(":")
                    frame[name or "comment"] = value.strip()
                await self.frames.put(frame)

    async def __aenter__(self) -> Stream:
        self.task = asyncio.create_task(self.app(self.scope, self._receive, self._send))
        return self

    async def __aexit__(self, *exc: object) -> None:
        self._gone.set()
        await asyncio.wait_for(self.task, 5)

    async def next(self, event: str | None = None, within: float = 10.0) -> dict[str, Any]:
        """The next frame (of this `event` type, skipping others)."""
        async with asyncio.timeout(within):
            while True:
                frame = await self.frames.get()
                if event is None or frame.get("event") == event:
                    if "data" in frame:
                        frame["json"] = json.loads(frame["data"])
                    return frame


@pytest.fixture
async def world(tmp_path: Any) -> Any:
    async with make_world(tmp_path) as w:
        w.rt.stream_poll = 0.02
        yield w


def evt_tp(frame: dict[str, Any]) -> str:
    return str(frame["json"]["event"]["evt-tp"])


async def test_the_stream_carries_the_bodies_subscribers_get_and_conversation_changes(world: World) -> None:
    async with Stream(world.app, KEY_A) as stream:
        await world.mo("hello", contact="+15550170")
        mo = await stream.next("event")
        assert stream.status == 200 and stream.headers["content-type"].startswith("text/event-stream")
        assert evt_tp(mo) == "mo_message_received" and mo["id"]
        conversation = await stream.next("conversation")
        assert conversation["json"]["contact"] == "+15550170" and conversation["json"]["state"] == "open"
        sent = await stream.next("event")
        assert evt_tp(sent) == "message_request_state_change"
        assert sent["json"]["event"]["fld-val-list"]["new_state"] == "SENT"
    await world.until(lambda: len(world.subscriber.of_type("message_request_state_change")) == 1)
    delivered = {e["event-id"]: e for e in world.subscriber.received}
    for frame in (mo, sent):
        body = frame["json"]
        assert {**body, "attempt": 1} == delivered[body["event-id"]]  # the same body, without the attempt


async def test_a_client_that_reconnects_with_last_event_id_misses_nothing(world: World) -> None:
    async with Stream(world.app, KEY_A) as stream:
        await world.mo("first", contact="+15550171")
        first = await stream.next("event")
    await world.mo("while away", contact="+15550172")
    await world.until(lambda: len(world.channel.outbox) == 2)
    async with Stream(world.app, KEY_A, last_event_id=first["id"]) as stream:
        seen = []
        while len([f for f in seen if f.get("event") == "event"]) < 3:
            seen.append(await stream.next())
    ids = [f["id"] for f in seen if "id" in f]
    assert first["id"] not in ids and ids == sorted(ids)
    bodies = [f["json"] for f in seen if f.get("event") == "event"]
    assert [b["event"]["fld-val-list"].get("message_body") for b in bodies][1] == "while away"


async def test_filters_and_accounts_keep_streams_apart(world: World) -> None:
    async with (
        Stream(world.app, KEY_A, query="contact=%2B15550174") as only_one,
        Stream(world.app, KEY_B) as other_account,
    ):
        await world.mo("not this one", contact="+15550173")
        await world.mo("this one", contact="+15550174")
        frame = await only_one.next("event")
        assert frame["json"]["event"]["fld-val-list"]["from_address"] == "+15550174"
        await world.until(lambda: len(world.channel.outbox) == 2)
        await asyncio.sleep(0.1)
        rest = []
        while not only_one.frames.empty():
            rest.append(only_one.frames.get_nowait())
        assert all("+15550173" not in f.get("data", "") for f in rest)
        assert all("data" not in f for f in list(other_account.frames._queue))  # type: ignore[attr-defined]
    async with Stream(world.app, KEY_A, query=f"sender_id={world.sender_id}") as by_sender:
        await world.mo("by sender", contact="+15550175")
        assert evt_tp(await by_sender.next("event")) == "mo_message_received"


async def test_an_idle_stream_sends_heartbeats(world: World) -> None:
    world.rt.stream_heartbeat = 0.05
    async with Stream(world.app, KEY_A) as stream:
        assert (await stream.next())["retry"] == "2000"
        assert (await stream.next())["comment"] == "keepalive"


async def test_the_stream_needs_a_key(world: World) -> None:
    async with Stream(world.app, "not-a-key") as stream:
        await asyncio.sleep(0.05)
    assert stream.status == 401


async def test_botbridge_tail_prints_a_line_per_event_from_a_running_host(tmp_path: Any) -> None:
    import argparse
    import io

    import httpx

    from botbridge.host import create_app
    from botbridge.loopback import serve_app
    from botbridge.settings import Settings
    from botbridge.tail import follow

    from .conftest import make_plugins, sign_loop

    settings = Settings(store="memory://", api_keys=f"acct:{KEY_A}", secret_key="tail-test-secret-0001")  # type: ignore[arg-type]
    app = create_app(settings, plugins=make_plugins())
    with serve_app(app, lifespan="on") as url:
        app.state.runtime.stream_poll = 0.02
        async with httpx.AsyncClient(base_url=url, headers={"authorization": f"Bearer {KEY_A}"}) as api:
            sender = await api.post("/v1/senders", json={"channel": "loop", "address": "+1555", "webhook_secret": "s3"})
            sender_id = sender.json()["id"]
            connector = {"type": "ECHO", "sender_id": sender_id, "credentials": '{"token": "t"}'}
            assert (await api.post("/v1/connectors", json=connector)).status_code == 201
            out = io.StringIO()
            args = argparse.Namespace(url=url, sender=None, contact="+15550180", json=False, count=3)
            reader = asyncio.create_task(follow(args, KEY_A, out))
            await asyncio.sleep(0.2)
            body, headers = sign_loop("s3", {"id": "mo-tail-1", "from": "+15550180", "text": "tail me"})
            assert (await api.post(f"/v1/webhooks/loop/{sender_id}", content=body, headers=headers)).status_code == 200
            assert await asyncio.wait_for(reader, 10) == 0
    lines = out.getvalue().splitlines()
    assert len(lines) == 3
    assert "mo_message_received" in lines[0] and "+15550180 → +1555" in lines[0] and "'tail me'" in lines[0]
    assert lines[1].startswith("conversation ") and "+15550180  open" in lines[1]
    assert "message_request_state_change" in lines[2] and "CREATED → " in lines[2]
