"""`botbridge demo`: the product working end to end, with no provider account.

The host runs on loopback with SQLite in a temporary directory, each
provider's strict fake runs beside it, a sender and a connector are created
through the REST API exactly as the provider documents' curl examples do,
and a simulated phone talks to the bot through the channel fake. The
transcript prints as it happens, then the events a subscriber received.
"""

from __future__ import annotations

import asyncio
import json
import secrets
import sys
import tempfile
import time
from collections.abc import Callable
from contextlib import ExitStack
from typing import Any, TextIO

import httpx
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from botbridge.host import create_app
from botbridge.loopback import listening_socket, serve_app
from botbridge.plugins import Plugins
from botbridge.settings import Settings
from botbridge.signing import verify_standard_webhook

API_KEY = "demo-api-key-0001"
CONTACT = "+14085551212"


class Subscriber:
    """The customer's event webhook: checks each signature, keeps each event."""

    def __init__(self) -> None:
        self.secret = "whsec-demo-" + secrets.token_hex(8)
        self.events: list[dict[str, Any]] = []
        self.app = Starlette(routes=[Route("/events", self.receive, methods=["POST"])])

    async def receive(self, request: Request) -> Response:
        body = await request.body()
        verify_standard_webhook(self.secret, request.headers, body, now=time.time())
        self.events.append(json.loads(body))
        return Response(status_code=204)


def _curl(method: str, url: str, body: dict[str, Any] | None) -> str:
    shown = dict(body or {})
    for secret in ("credentials", "webhook_secret", "secret"):
        if shown.get(secret):
            shown[secret] = "…"
    data = f" -d '{json.dumps(shown, separators=(',', ':'), ensure_ascii=False)}'" if body is not None else ""
    return f"curl -X {method} {url} -H 'Authorization: Bearer {API_KEY}' -H 'Content-Type: application/json'{data}"


class Demo:
    def __init__(self, plugins: Plugins, channel: str, bot: str, out: TextIO) -> None:
        self.channel = plugins.fakes[("channel", channel)]()
        self.bot = plugins.fakes[("bot", bot)]()
        self.plugins = plugins
        self.out = out
        self.subscriber = Subscriber()
        self.shown = 0
        self.turns = 0

    def say(self, line: str = "") -> None:
        print(line, file=self.out, flush=True)

    async def api(self, client: httpx.AsyncClient, method: str, path: str, body: dict[str, Any] | None = None) -> Any:
        self.say("  $ " + _curl(method, str(client.base_url).rstrip("/") + path, body))
        response = await client.request(method, path, json=body)
        if response.status_code >= 400:
            raise RuntimeError(f"{method} {path} answered {response.status_code}: {response.text}")
        return response.json()

    async def wait(self, done: Callable[[], bool], what: str, within: float = 20.0) -> bool:
        """Wait for `done`; a status line appears when it takes more than a second."""
        started = time.monotonic()
        announced = False
        while not done():
            waited = time.monotonic() - started
            if waited > within:
                self.say(f"\n  (gave up waiting for {what} after {within:.0f} s)")
                return False
            if waited > 1.0 and not announced:
                self.say(f"  … waiting for {what}")
                announced = True
            await asyncio.sleep(0.02)
        return True

    async def turn(self, webhook_url: str, text: str) -> None:
        self.say(f"📱 {CONTACT} → {text}")
        self.turns += 1
        status = await self.channel.phone_says(webhook_url, text, CONTACT)
        if status is None or not 200 <= status < 300:
            self.say(f"  (the host answered the provider {status})")
            return
        before = self.shown
        await self.wait(lambda: len(self.channel.texts_to(CONTACT)) > before, "the bot's reply")
        await asyncio.sleep(0.2)  # a bot may answer with several messages
        for reply in self.channel.texts_to(CONTACT)[self.shown :]:
            for i, line in enumerate(reply.splitlines() or [""]):
                self.say(("🤖 bot → " if i == 0 else "         ") + line)
        self.shown = len(self.channel.texts_to(CONTACT))

    async def run(self, script: list[str] | None, read_line: Callable[[], str] | None) -> int:
        with tempfile.TemporaryDirectory(prefix="botbridge-demo-") as workdir, ExitStack() as stack:
            self.say(f"Starting the {self.channel.name} and {self.bot.type} fakes and a subscriber on loopback …")
            channel_url = stack.enter_context(serve_app(self.channel.app))
            bot_url = stack.enter_context(serve_app(self.bot.app))
            subscriber_url = stack.enter_context(serve_app(self.subscriber.app)) + "/events"
            host_socket = listening_socket()  # its port is in the settings before the host serves
            port = host_socket.getsockname()[1]
            settings = Settings(
                store=f"sqlite:///{workdir}/demo.db",
                api_keys=f"demo:{API_KEY}",  # type: ignore[arg-type]
                secret_key="demo-secret-key-" + secrets.token_hex(8),  # type: ignore[arg-type]
                public_url=f"http://127.0.0.1:{port}",
                # the demo's provider fakes and subscriber listen on loopback
                allow_private_urls=True,
                console=True,
            )
            host_url = stack.enter_context(
                serve_app(create_app(settings, plugins=self.plugins), sock=host_socket, lifespan="on")
            )
            self.say(f"botbridge is serving on {host_url} (SQLite in a temporary directory)")
            # the key is shown beside the URL, never in it: the console keeps it in the tab's session only
            self.say(f"Web console: {host_url}/console (sign in with the API key {API_KEY})\n")
            headers = {"authorization": f"Bearer {API_KEY}"}
            async with httpx.AsyncClient(base_url=host_url, headers=headers, timeout=30) as client:
                self.say("Setting up through the REST API:")
                sender = await self.api(client, "POST", "/v1/senders", self.channel.sender_body(channel_url))
                connector_body = self.bot.connector_body(sender["id"], bot_url)
                connector_body["external_id"] = "demo-connector"
                connector = await self.api(client, "POST", "/v1/connectors", connector_body)
                await self.api(
                    client, "POST", "/v1/subscriptions", {"url": subscriber_url, "secret": self.subscriber.secret}
                )
                self.say(
                    f"  connector {connector['id']} (version {connector['version_number']}, {connector['state']})\n"
                )
                self.say("Conversation:")
                if read_line is None:
                    for text in script or []:
                        await self.turn(sender["webhook_url"], text)
                else:
                    self.say("  (type as the phone user; an empty line or end of input stops)")
                    while text := await asyncio.to_thread(read_line):
                        await self.turn(sender["webhook_url"], text)
                replies = len(self.channel.texts_to(CONTACT))
                reported = await self.channel.report_delivered(sender["webhook_url"])
                if reported:
                    self.say(f"\nThe provider reports {reported} message(s) delivered to the phone.")
                expected = self.turns + replies + reported  # MOs, sends, delivery reports
                await self.wait(lambda: len(self.subscriber.events) >= expected, "the events", within=10)
            self.say(f"\nEvents the subscriber received ({len(self.subscriber.events)}, each signature verified):")
            for event in self.subscriber.events:
                fields = event["event"]["fld-val-list"]
                detail = fields.get("message_body") or f"{fields.get('previous_state')} → {fields.get('new_state')}"
                if fields.get("reason_description") and event["event"]["evt-tp"] == "message_state_change":
                    detail += f" ({fields['reason_description']})"
                self.say(f"  {event['event']['evt-tp']:<30} attempt {event['attempt']}  {detail}")
            self.say("\nDone: everything ran on loopback and is cleaned up.")
        return 0


def main(channel: str | None, bot: str | None, interactive: bool, out: TextIO = sys.stdout) -> int:
    plugins = Plugins.discover(Settings())
    channels = sorted(name for kind, name in plugins.fakes if kind == "channel")
    bots = sorted(name for kind, name in plugins.fakes if kind == "bot")
    channel = channel or ("scg" if "scg" in channels else next(iter(channels), None))
    bot = bot or ("AZURE_BOT_DIRECT_LINE" if "AZURE_BOT_DIRECT_LINE" in bots else next(iter(bots), None))
    bot = {
        "directline": "AZURE_BOT_DIRECT_LINE",
        "azure": "AZURE_BOT_DIRECT_LINE",
        "lex": "AMAZON_LEX",
        "dialogflow": "GOOGLE_DIALOG_FLOW",
    }.get(bot or "", bot)
    if channel not in channels or bot not in bots:
        print(
            f"no fake for channel {channel!r} or bot {bot!r}; installed fakes: channels {channels}, bots {bots}",
            file=sys.stderr,
        )
        return 2
    demo = Demo(plugins, channel, bot, out)
    script = ["Hi there!", demo.bot.options_trigger, "2"]
    read_line = (lambda: sys.stdin.readline().rstrip("\n")) if interactive else None
    return asyncio.run(demo.run(script, read_line))
