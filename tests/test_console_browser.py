"""The web console in a real browser: headless Chromium driven by Playwright.

A real host (uvicorn, SQLite, BOTBRIDGE_CONSOLE on, mounted at /bridge) runs beside the SCG and
Direct Line fakes and a subscriber. The test signs in, creates a sender and a
connector through the console's forms (one wrong field first: the API's message
must appear next to it), lets a simulated phone talk to the bot through the SCG
fake, and watches the transcript show the MO, the bot's replies and then their
DELIVERED state without a reload. It then visits subscriptions (redelivering a
dead letter), health, plugins and the API reference, and checks the console at
375 px. A screenshot of each page goes to pytest's tmp dir; the transcript's is
also written to docs/screenshots/console-transcript.png (the README's) when
that file is missing or BOTBRIDGE_UPDATE_SCREENSHOTS=1.

Needs Chromium (`apt-get install chromium`, at /usr/bin/chromium or
$BOTBRIDGE_CHROMIUM) and Playwright's Python client (`pip install playwright`;
`playwright install` is not needed). Skipped with the reason when either is missing.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import ExitStack, asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import anyio
import httpx
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Mount, Route

from botbridge.fakes import BotFake, ChannelFake
from botbridge.host import create_app
from botbridge.loopback import listening_socket, serve_app
from botbridge.plugins import Plugins
from botbridge.settings import Settings

try:
    from playwright.async_api import Page, async_playwright, expect
except ImportError:  # pragma: no cover - depends on the machine
    pytest.skip(
        "Playwright's Python client is not installed (pip install playwright; python3 tasks.py bootstrap installs it)",
        allow_module_level=True,
    )

CHROMIUM = os.environ.get("BOTBRIDGE_CHROMIUM", "/usr/bin/chromium")
if not (Path(CHROMIUM).is_file() and os.access(CHROMIUM, os.X_OK)):
    pytest.skip(
        f"no Chromium at {CHROMIUM} (apt-get install chromium, as .ci/run does; or set BOTBRIDGE_CHROMIUM)",
        allow_module_level=True,
    )

pytestmark = [pytest.mark.slow, pytest.mark.anyio]

ROOT = Path(__file__).resolve().parents[1]
SCREENSHOT = ROOT / "docs" / "screenshots" / "console-transcript.png"
KEY = "console-browser-key-" + secrets.token_hex(6)
CONTACT = "+14085551212"
# The host is mounted below a prefix: every URL the console builds must keep it.
PREFIX = "/bridge"
BROWSER_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
TIMEOUT_MS = 15_000


class Subscriber:
    """An event webhook that refuses everything until it is fixed."""

    def __init__(self) -> None:
        self.accepting = False
        self.accepted: list[dict[str, Any]] = []
        self.app = Starlette(routes=[Route("/events", self.receive, methods=["POST"])])

    async def receive(self, request: Request) -> Response:
        if not self.accepting:
            return Response(status_code=500)
        self.accepted.append(json.loads(await request.body()))
        return Response(status_code=204)


@dataclass
class World:
    url: str
    app: Any
    channel: ChannelFake
    channel_url: str
    bot: BotFake
    bot_url: str
    subscriber: Subscriber
    subscriber_url: str


@pytest.fixture
def world(tmp_path: Path) -> Iterator[World]:
    settings = Settings(
        store=f"sqlite:///{tmp_path}/console.db",
        api_keys=f"acct1:{KEY}",  # type: ignore[arg-type]
        secret_key="console-browser-secret-" + secrets.token_hex(8),  # type: ignore[arg-type]
        allow_private_urls=True,
        load_plugins="scg,azure_directline",
        console=True,
    )
    plugins = Plugins.discover(settings)
    channel = plugins.fakes[("channel", "scg")]()
    bot = plugins.fakes[("bot", "AZURE_BOT_DIRECT_LINE")]()
    subscriber = Subscriber()
    with ExitStack() as stack:
        channel_url = stack.enter_context(serve_app(channel.app))
        bot_url = stack.enter_context(serve_app(bot.app))
        subscriber_url = stack.enter_context(serve_app(subscriber.app)) + "/events"
        host_socket = listening_socket()  # held until the host serves on it
        port = host_socket.getsockname()[1]
        settings.public_url = f"http://127.0.0.1:{port}"  # the host adds the mount prefix (root_path)
        app = create_app(settings, plugins=plugins)
        # a refused event is dead-lettered at once (no backoff to wait through)
        app.state.runtime.engine.settings.event_attempts = 1

        @asynccontextmanager
        async def lifespan(_: Starlette) -> AsyncIterator[None]:
            async with app.router.lifespan_context(app):
                yield

        # behind a path prefix, as a reverse proxy or a bigger ASGI app would put it
        mounted = Starlette(routes=[Mount(PREFIX, app=app)], lifespan=lifespan)
        url = stack.enter_context(serve_app(mounted, sock=host_socket, lifespan="on")) + PREFIX
        yield World(url, app, channel, channel_url, bot, bot_url, subscriber, subscriber_url)


@pytest.fixture
async def page(tmp_path: Path) -> AsyncIterator[Page]:
    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(executable_path=CHROMIUM, headless=True, args=BROWSER_ARGS)
        context = await browser.new_context(viewport={"width": 1200, "height": 900}, device_scale_factor=1)
        page = await context.new_page()
        page.set_default_timeout(TIMEOUT_MS)
        expect.set_options(timeout=TIMEOUT_MS)
        try:
            yield page
        finally:
            # close the page's live stream before the host stops
            await context.close()
            await browser.close()


async def nav(page: Page, name: str) -> None:
    await page.get_by_role("navigation").get_by_role("link", name=name, exact=True).click()


async def wait_until(condition: Any, what: str, within: float = 15.0) -> None:
    deadline = time.monotonic() + within
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await anyio.sleep(0.05)


async def test_the_console_in_a_browser(world: World, page: Page, tmp_path: Path) -> None:
    started = time.monotonic()
    shots = tmp_path / "screenshots"
    shots.mkdir()
    requests: list[str] = []
    problems: list[str] = []
    page.on("request", lambda request: requests.append(request.url))
    page.on("pageerror", lambda error: problems.append(f"page error: {error}"))
    page.on("console", lambda message: problems.append(message.text) if message.type == "error" else None)

    async def shot(name: str, *, full_page: bool = True) -> Path:
        path = shots / f"{name}.png"
        await page.screenshot(path=str(path), full_page=full_page)
        return path

    # --- sign in: a wrong key is refused next to the field, the right one gets in
    await page.goto(world.url + "/console")
    await expect(page.get_by_role("heading", name="Sign in")).to_be_visible()
    key_input = page.get_by_label("API key")
    await shot("sign-in")
    await key_input.fill("not-the-key-0000")
    await page.get_by_role("button", name="Sign in").click()
    await expect(page.locator(".field-error")).to_have_text("This key was refused (unknown or revoked).")
    await expect(key_input).to_have_attribute("aria-invalid", "true")
    await key_input.fill(KEY)
    await key_input.press("Enter")
    await expect(page.get_by_role("heading", name="Conversations", exact=True)).to_be_visible()
    await expect(page.locator("#stream-status")).to_have_text("Live updates: on")
    assert await page.evaluate("() => window.localStorage.length") == 0
    assert await page.evaluate("() => Object.values(window.sessionStorage)") == [KEY]

    # --- a sender through the form; first with credentials the SCG plugin refuses
    await nav(page, "Senders")
    await expect(page.get_by_role("heading", name="Senders", exact=True)).to_be_visible()
    await page.get_by_role("button", name="New sender").click()
    body = world.channel.sender_body(world.channel_url)
    form = page.get_by_role("form", name="New sender")
    await form.get_by_label("Channel").select_option("scg")
    await form.get_by_label("Address").fill(body["address"])
    await form.get_by_label("Credentials", exact=True).fill("short")
    await form.get_by_label("Webhook secret").fill(body["webhook_secret"])
    await form.get_by_label("Config (JSON object)").fill(json.dumps(body["config"]))
    await form.get_by_role("button", name="Create sender").click()
    credentials = form.get_by_label("Credentials", exact=True)
    error_id = (await credentials.get_attribute("aria-describedby") or "").split()[-1]
    await expect(page.locator(f"#{error_id}")).to_have_text("token: must be 8+ printable characters without spaces")
    await expect(credentials).to_have_attribute("aria-invalid", "true")
    await expect(credentials).to_be_focused()
    await shot("sender-error")
    await credentials.fill(body["credentials"])
    await form.get_by_role("button", name="Create sender").click()
    await expect(page.get_by_role("status").filter(has_text="Sender 66000 created")).to_be_visible()
    sender_card = page.locator("li.record").filter(has_text="scg · 66000")
    await expect(sender_card).to_have_count(1)
    # write-only: neither secret is on the page
    content = await page.content()
    assert body["credentials"] not in content and body["webhook_secret"] not in content
    webhook_url = (await sender_card.locator("dd code").nth(1).text_content() or "").strip()
    assert webhook_url.startswith(world.url + "/v1/webhooks/scg/")
    await shot("senders")

    # --- a connector through the form
    await nav(page, "Connectors")
    await page.get_by_role("button", name="New connector").click()
    form = page.get_by_role("form", name="New connector")
    connector = world.bot.connector_body("", world.bot_url)
    await form.get_by_label("Bot type").select_option(connector["type"])
    await form.get_by_label("Sender").select_option(label="scg · 66000")
    await form.get_by_label(re.compile(r"^Credentials")).fill(connector["credentials"])
    await form.get_by_label("External id").fill("console-test")
    await form.get_by_label("Config (JSON object)").fill(json.dumps(connector["config"]))
    await form.get_by_role("button", name="Create connector").click()
    connector_card = page.locator("li.record").filter(has_text="AZURE_BOT_DIRECT_LINE → scg · 66000")
    await expect(connector_card).to_have_count(1)
    assert connector["credentials"] not in await page.content()
    # an edit carries version_number; the credentials stay as they are unless replaced
    await connector_card.get_by_role("button", name="Edit").click()
    edit = page.get_by_role("form", name="Edit connector AZURE_BOT_DIRECT_LINE")
    await expect(edit.get_by_label("Replace credentials")).to_have_value("")
    await edit.get_by_label("External id").fill("console-test-2")
    await edit.get_by_role("button", name="Save connector").click()
    await expect(page.get_by_role("status").filter(has_text="Connector saved (version 2).")).to_be_visible()
    await expect(connector_card).to_contain_text("console-test-2")
    await shot("connectors")

    # --- a subscription (created through the API) whose subscriber refuses events for now
    async with httpx.AsyncClient(base_url=world.url, headers={"authorization": f"Bearer {KEY}"}) as api:
        created = await api.post("/v1/subscriptions", json={"url": world.subscriber_url, "secret": "sub-secret-123"})
        assert created.status_code == 201, created.text
        subscription_id = created.json()["id"]

    # --- the phone talks; the list and then the transcript follow live
    await nav(page, "Conversations")
    await expect(page.get_by_text("No conversations yet.")).to_be_visible()
    assert await world.channel.phone_says(webhook_url, "Hi there!", CONTACT) == 200
    conversation_link = page.locator("a.conversation-link").filter(has_text=CONTACT)
    await expect(conversation_link).to_be_visible()  # no reload: the stream brought it
    await conversation_link.click()
    await expect(page.get_by_role("heading", name=f"Conversation with {CONTACT}")).to_be_visible()
    await page.evaluate("() => { window.notReloaded = true; }")
    transcript = page.get_by_role("list", name="Transcript")
    await expect(transcript.locator("li.turn.user").filter(has_text="Hi there!")).to_be_visible()
    await expect(transcript.locator("li.turn.bot")).to_have_count(1)
    await wait_until(lambda: len(world.channel.texts_to(CONTACT)) == 1, "the bot's first reply")

    for turn, replies in ((world.bot.options_trigger, 2), ("2", 3)):
        assert await world.channel.phone_says(webhook_url, turn, CONTACT) == 200
        await wait_until(lambda n=replies: len(world.channel.texts_to(CONTACT)) >= n, f"reply {replies}")  # type: ignore[misc]
        await expect(transcript.locator("li.turn.user").filter(has_text=turn).last).to_be_visible()
    sent = world.channel.texts_to(CONTACT)
    bot_turns = transcript.locator("li.turn.bot")
    await expect(bot_turns).to_have_count(len(sent))
    for i, text in enumerate(sent):
        # the text as the phone got it (numbered options included) is in the bot's bubble
        first_line = text.splitlines()[0]
        await expect(bot_turns.nth(i).locator(".bubble")).to_contain_text(first_line)
    await expect(transcript.locator("li.turn.bot .bubble").filter(has_text="1. Billing")).to_have_count(1)
    await expect(transcript.locator("li.turn.bot[data-state='DELIVERED']")).to_have_count(0)

    # the provider reports delivery: each reply turns DELIVERED in place
    assert await world.channel.report_delivered(webhook_url) == len(sent)
    await expect(transcript.locator("li.turn.bot[data-state='DELIVERED']")).to_have_count(len(sent))
    await expect(bot_turns.first.locator(".badge")).to_have_text("DELIVERED")
    assert await page.evaluate("() => window.notReloaded") is True
    await page.mouse.move(0, 0)
    await shot("transcript")
    # the README's picture: 1200 px wide, at most 1500 tall; written when missing or asked for
    # (BOTBRIDGE_UPDATE_SCREENSHOTS=1), so a test run does not rewrite a committed file each time
    full = await page.evaluate("() => document.documentElement.scrollHeight")
    clip = {"x": 0, "y": 0, "width": 1200, "height": min(full, 1500)}
    await page.screenshot(path=str(shots / "console-transcript.png"), full_page=True, clip=clip)
    if not SCREENSHOT.exists() or os.environ.get("BOTBRIDGE_UPDATE_SCREENSHOTS") == "1":
        SCREENSHOT.parent.mkdir(parents=True, exist_ok=True)
        SCREENSHOT.write_bytes((shots / "console-transcript.png").read_bytes())

    # --- hand the conversation to an agent, answer as one, give it back to the bot
    await page.get_by_role("button", name="Hand to an agent").click()
    await expect(page.locator(".handoff-state")).to_contain_text("With an agent since")
    await expect(page.locator(".handoff-state")).to_contain_text("handed off by an operator")
    await expect(transcript.locator("li[data-type='handoff']")).to_contain_text("Handed to an agent by an operator")
    reply = page.get_by_role("form", name="Reply as an agent")
    message = reply.get_by_label("Message")
    await reply.get_by_role("button", name="Send as agent").click()  # empty: refused next to the field
    await expect(message).to_have_attribute("aria-invalid", "true")
    agent_text = "Hello, this is Dana from support."
    await message.fill(agent_text)
    await reply.get_by_role("button", name="Send as agent").click()
    await wait_until(lambda: agent_text in world.channel.texts_to(CONTACT), "the agent's reply at the phone")
    await expect(message).to_have_value("")
    await expect(message).not_to_have_attribute("aria-invalid", "true")
    await expect(transcript.locator("li.turn.bot .bubble").filter(has_text=agent_text)).to_have_count(1)
    await shot("transcript-handoff")
    await page.get_by_role("button", name="Give back to the bot").click()
    await expect(page.get_by_role("button", name="Hand to an agent")).to_be_visible()
    await expect(page.locator(".handoff-state")).to_have_count(0)
    resumed = transcript.locator("li[data-type='resumed']")
    await expect(resumed).to_contain_text("Given back to the bot (by an operator)")
    assert await page.evaluate("() => window.notReloaded") is True

    # at 375 px: nothing wider than the screen
    await page.set_viewport_size({"width": 375, "height": 800})
    await expect(transcript.locator("li.turn.user").first).to_be_visible()
    assert await page.evaluate("() => document.documentElement.scrollWidth") <= 375
    await shot("transcript-375px")
    await nav(page, "Senders")
    await expect(page.get_by_role("heading", name="Senders", exact=True)).to_be_visible()
    assert await page.evaluate("() => document.documentElement.scrollWidth") <= 375
    await shot("senders-375px")
    await page.set_viewport_size({"width": 1200, "height": 900})

    # --- subscriptions: the refused events are dead letters; redeliver one once the subscriber is fixed
    await nav(page, "Subscriptions")
    card = page.locator(f"li.record[data-id='{subscription_id}']")
    await expect(card).to_be_visible()
    await card.get_by_role("button", name="Show dead letters").click()
    dead = card.locator("li.record")
    await expect(dead.first).to_be_visible()
    assert await dead.count() >= 3  # MOs, sends, delivery reports were all refused
    world.subscriber.accepting = True
    first_dead = dead.first
    event_id = (await first_dead.locator("dd code").first.text_content() or "").strip()
    await first_dead.get_by_role("button", name="Redeliver").click()
    await expect(first_dead.get_by_role("button", name=re.compile("queued"))).to_be_disabled()
    await wait_until(lambda: any(e["event-id"] == event_id for e in world.subscriber.accepted), "the redelivery")
    await shot("subscriptions")

    # --- health: charts from /metrics, readiness
    await nav(page, "Health")
    await expect(page.get_by_role("heading", name="Health")).to_be_visible()
    await expect(page.locator("figure.chart")).to_have_count(3)
    await expect(page.locator("figure.chart svg polyline").first).to_be_attached()
    await expect(page.get_by_text("ready", exact=True)).to_be_visible()
    await expect(page.get_by_text("none with load errors")).to_be_visible()
    await shot("health")

    # --- plugins
    await nav(page, "Plugins")
    await expect(page.locator("li.record[data-name='scg']")).to_contain_text("scg")
    await expect(page.locator("li.record[data-name='azure_directline']")).to_contain_text("AZURE_BOT_DIRECT_LINE")
    await shot("plugins")

    # --- keyboard: the first Tab reaches the skip link, the next ones the navigation, focus visible
    await page.keyboard.press("Tab")
    assert await page.evaluate("() => document.activeElement.id") == "skip-link"
    await page.keyboard.press("Tab")
    assert await page.evaluate("() => document.activeElement.getAttribute('href')") == "#/conversations"
    outline = await page.evaluate("() => getComputedStyle(document.activeElement).outlineStyle")
    assert outline == "solid"
    await page.keyboard.press("Enter")
    await expect(page.get_by_role("heading", name="Conversations", exact=True)).to_be_visible()

    # --- the API reference, from the console's navigation
    await nav(page, "API reference")
    await expect(page.get_by_role("heading", name="API reference")).to_be_visible()
    redeliver = page.locator("section.operation").filter(has_text="/v1/subscriptions/{subscription_id}/failures/")
    await expect(redeliver.filter(has_text="redeliver")).to_have_count(1)
    await expect(page.locator("section#schema-SenderCreate")).to_contain_text("webhook_secret")
    await shot("docs")

    # --- the key never travelled in a URL, and the pages had no errors
    assert requests and not [url for url in requests if KEY in url]
    assert all(url.startswith(world.url) for url in requests), {u for u in requests if not u.startswith(world.url)}
    # the browser logs the two refusals the test asked for (the wrong key, the wrong field); nothing else
    refused = "Failed to load resource: the server responded with a status of "
    assert sorted(p.removeprefix(refused)[:3] for p in problems if p.startswith(refused)) == ["401", "422"]
    assert not [p for p in problems if not p.startswith(refused)], problems
    assert {p.name for p in shots.iterdir()} >= {
        f"{name}.png"
        for name in ("sign-in", "senders", "connectors", "transcript", "subscriptions", "health", "plugins", "docs")
    }
    assert (shots / "console-transcript.png").stat().st_size < 400_000
    print(f"screenshots in {shots}; console browser test took {time.monotonic() - started:.1f} s")
