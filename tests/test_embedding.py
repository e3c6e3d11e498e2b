"""docs/embedding.md, run as written: botbridge mounted in a FastAPI app, a bot of the app's own, its events logged."""

from __future__ import annotations

import asyncio
import logging
import re
import types
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anyio
import httpx
import pytest
from starlette.applications import Starlette
from starlette.routing import Mount

from botbridge import Botbridge
from botbridge.settings import Settings

from .providers import CHANNELS
from .servers import eventually, serve_app

pytestmark = pytest.mark.anyio
ROOT = Path(__file__).resolve().parents[1]
KEY = "embedding-test-key-1"


def guide_example() -> str:
    text = (ROOT / "docs" / "embedding.md").read_text()
    [code] = re.findall(r"## A complete example.*?```python\n(.*?)```", text, re.DOTALL)
    return code


@pytest.fixture
def environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[None]:
    monkeypatch.setenv("BOTBRIDGE_STORE", f"sqlite:///{tmp_path}/orders.db")
    monkeypatch.setenv("BOTBRIDGE_API_KEYS", f"shop:{KEY}")
    monkeypatch.setenv("BOTBRIDGE_SECRET_KEY", "embedding-secret-key-01")
    monkeypatch.setenv("BOTBRIDGE_LOAD_PLUGINS", "sinch,bird")
    yield


@pytest.mark.parametrize("channel_name", ["sinch", "bird"])  # Bird signs over the URL: the prefix must be in it
async def test_the_guides_example_runs_end_to_end(
    environment: None, monkeypatch: Any, caplog: Any, channel_name: str
) -> None:
    caplog.set_level("INFO", logger="orders")
    channel = CHANNELS[channel_name]()
    with serve_app(channel.app) as channel_url, serve_app_on_free_port() as (port, start):
        monkeypatch.setenv("BOTBRIDGE_PUBLIC_URL", f"http://127.0.0.1:{port}")
        example = types.ModuleType("orders")
        exec(compile(guide_example(), "docs/embedding.md", "exec"), example.__dict__)  # noqa: S102 - our own guide
        with start(example.app) as url:
            async with httpx.AsyncClient(base_url=url, headers={"Authorization": f"Bearer {KEY}"}) as api:
                sender = (await api.post("/bridge/v1/senders", json=channel.sender_body(channel_url))).json()
                assert sender["webhook_url"] == f"{url}/bridge/v1/webhooks/{channel_name}/{sender['id']}"
                connector = await api.post(
                    "/bridge/v1/connectors", json={"type": "ORDERS", "sender_id": sender["id"], "credentials": "-"}
                )
                assert connector.status_code == 201, connector.text
                # a phone asks through the provider's fake: the app's own bot answers
                assert await channel.phone_says(sender["webhook_url"], "status?", "+14085551212") == 200
                await eventually(lambda: channel.texts_to("+14085551212") == ["order 42 ships tomorrow"], "the reply")
                # the app's own endpoint sends through botbridge without HTTP
                sent = await api.post(
                    f"/orders/{sender['id']}/notify", params={"to": "+14085551212", "text": "Your parcel is out"}
                )
                assert sent.status_code == 200, sent.text
                await eventually(lambda: len(channel.texts_to("+14085551212")) == 2, "the notification")
                assert channel.texts_to("+14085551212")[1] == "Your parcel is out"
        bridge: Botbridge = example.bridge
        assert bridge.runtime.engine._tasks == []  # the outer app's shutdown stopped every worker
    logged = [r.getMessage() for r in caplog.records if r.name == "orders"]
    assert any("mo_message_received" in line for line in logged), logged


class serve_app_on_free_port:
    """A free port known before the app exists (the example reads BOTBRIDGE_PUBLIC_URL when it is built)."""

    def __enter__(self) -> tuple[int, Any]:
        from botbridge.loopback import listening_socket

        self.sock = listening_socket()  # held: no other process can take the port meanwhile
        self.port = int(self.sock.getsockname()[1])
        return self.port, lambda app: serve_app(app, sock=self.sock, lifespan="on")

    def __exit__(self, *exc: object) -> None:
        self.sock.close()


def plain_plugin_bot() -> Any:
    from botbridge import BotBackend, Reply, hookimpl

    class Upper(BotBackend):
        type = "UPPER"

        def validate_credentials(self, credentials: str, config: dict[str, Any]) -> None:
            return None

        async def send(self, session: Any, message: Any) -> list[Any]:
            return [Reply(text=message.text.upper())]

    class Plugin:
        seen: list[str] = []  # noqa: RUF012

        @hookimpl
        def register_bot_backends(self, register: Any) -> None:
            register(Upper)

        @hookimpl
        def on_inbound_message(self, message: Any, sender: Any) -> None:
            self.seen.append(message.text)

    return Plugin()


async def test_mounted_in_starlette_under_a_learnt_prefix_with_the_programmatic_api(
    environment: None, monkeypatch: Any
) -> None:
    channel = CHANNELS["sinch"]()
    plugin = plain_plugin_bot()
    bridge = Botbridge(plugins=[plugin])  # no mount_path: learnt from the requests it serves
    outer = Starlette(routes=[Mount("/chat", app=bridge.app)], lifespan=bridge.lifespan)
    with serve_app(channel.app) as channel_url, serve_app(outer, lifespan="on") as url:
        async with httpx.AsyncClient(base_url=url, headers={"Authorization": f"Bearer {KEY}"}) as api:
            sender = (await api.post("/chat/v1/senders", json=channel.sender_body(channel_url))).json()
            assert sender["webhook_url"].endswith(f"/chat/v1/webhooks/sinch/{sender['id']}")
            body = {"type": "UPPER", "sender_id": sender["id"], "credentials": "-"}
            assert (await api.post("/chat/v1/connectors", json=body)).status_code == 201
            webhook = url + "/chat/v1/webhooks/sinch/" + sender["id"]
            assert await channel.phone_says(webhook, "hello there", "+14085550001") == 200
            await eventually(lambda: channel.texts_to("+14085550001") == ["HELLO THERE"], "the reply")
            assert plugin.seen == ["hello there"]  # the in-process observer saw it
            # the API without HTTP: the conversation, its timeline, a message sent, the live stream
            [conversation] = await bridge.conversations("shop")
            items = await bridge.timeline(conversation.id)
            assert [i.type for i in items] == ["conversation_opened", "mo", "mt"]
            message = await bridge.send_message(
                sender["id"], "+14085550001", "an agent here", conversation_id=conversation.id
            )
            await eventually(lambda: len(channel.texts_to("+14085550001")) == 2, "the agent's message")
            # the fake has the request before the worker has written what Sinch answered
            stored = await bridge.message(message.id)
            with anyio.fail_after(10):
                while stored is None or stored.state == "CREATED":
                    await anyio.sleep(0.02)
                    stored = await bridge.message(message.id)
            assert stored.state == "QUEUED" and stored.origin == "api"  # Sinch queues it
            assert [i.type for i in await bridge.timeline(conversation.id)][-1] == "mt"
            seen = []
            with anyio.fail_after(10):
                async for item in bridge.events("shop"):
                    seen.append(item.data["type"])
                    if seen.count("event") >= 3:
                        break
            assert seen[0] == "event" and "conversation" in seen
    assert bridge.runtime.engine._tasks == []


async def test_the_lifespan_leaves_no_task_running(environment: None) -> None:
    bridge = Botbridge(settings=Settings(store="memory://"))
    before = {t.get_name() for t in asyncio.all_tasks()}
    async with bridge.lifespan():
        names = {t.get_name() for t in asyncio.all_tasks()} - before
        assert any(name.startswith("worker-") for name in names) and "retention" in names
    await asyncio.sleep(0)
    left = {t.get_name() for t in asyncio.all_tasks() if not t.done()} - before
    assert not [name for name in left if name.startswith(("worker-", "events-", "retention"))], left
    logging.getLogger("orders").handlers.clear()
