"""The web console and the API reference as files the host serves, and redelivering a dead letter.

The console's behaviour in a real browser is tested in tests/test_console_browser.py;
here: what is served (and only when BOTBRIDGE_CONSOLE is on), that it works under a
mount prefix, that no asset reaches outside the host, and that the sign-in key can
only leave the page as a bearer header.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator
from html.parser import HTMLParser
from typing import Any, get_args
from urllib.parse import urljoin

import httpx
import pytest
from starlette.applications import Starlette
from starlette.routing import Mount

from botbridge import console
from botbridge.host import create_app
from botbridge.models import TimelineItem
from botbridge.openapi import OPERATIONS
from botbridge.settings import Settings
from botbridge.testing import api_client

from .conftest import KEY_A, KEY_B, make_plugins
from .test_engine import World, make_world

pytestmark = pytest.mark.anyio

PAGES = ("/console", "/docs")
# The one absolute URL an asset may hold: SVG's namespace name, an identifier that is never fetched.
SVG_NAMESPACE = "http://www.w3.org/2000/svg"


def console_app(on: bool = True) -> Starlette:
    settings = Settings(
        store="memory://",
        api_keys=f"acct-a:{KEY_A},acct-b:{KEY_B}",  # type: ignore[arg-type]
        secret_key="test-secret-key-0123456789",  # type: ignore[arg-type]
        console=on,
    )
    return create_app(settings, plugins=make_plugins())


@pytest.fixture
async def on() -> AsyncIterator[httpx.AsyncClient]:
    async with api_client(console_app(True)) as client:
        yield client


class Links(HTMLParser):
    """Every URL a page refers to (src, href)."""

    def __init__(self) -> None:
        super().__init__()
        self.urls: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.urls += [value for name, value in attrs if name in ("src", "href") and value]


def links(html: str) -> list[str]:
    parser = Links()
    parser.feed(html)
    return parser.urls


def scripts() -> dict[str, str]:
    return {name: body.decode() for name, (body, _) in console.files().items() if name.endswith(".js")}


# --- served only when on ---------------------------------------------------------


@pytest.mark.parametrize("path", [*PAGES, "/console/assets/app.js", "/console/assets/console.css"])
async def test_off_by_default_and_then_404_like_any_unknown_path(client: httpx.AsyncClient, path: str) -> None:
    assert Settings().console is False
    response = await client.get(path)
    assert response.status_code == 404
    assert response.json() == {"error": {"code": "not_found", "message": "Not Found", "details": None}}
    assert response.json() == (await client.get("/no-such-page")).json()


def test_the_setting_comes_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BOTBRIDGE_CONSOLE", "true")
    assert Settings().console is True


async def test_pages_and_assets_are_served_with_their_types_and_a_strict_policy(on: httpx.AsyncClient) -> None:
    files = console.files()
    assert {
        "console.html",
        "docs.html",
        "assets/app.js",
        "assets/api.js",
        "assets/console.css",
        "assets/docs.js",
    } <= set(files)
    for page in PAGES:
        response = await on.get(page)
        assert response.status_code == 200
        assert response.headers["content-type"] == "text/html; charset=utf-8"
        policy = response.headers["content-security-policy"]
        assert "script-src 'self'" in policy and "connect-src 'self'" in policy and "form-action 'none'" in policy
        assert response.headers["x-content-type-options"] == "nosniff"
    expected = {".js": "text/javascript; charset=utf-8", ".css": "text/css; charset=utf-8", ".svg": "image/svg+xml"}
    for name in files:
        if name.startswith("assets/"):
            response = await on.get("/console/" + name)
            assert response.status_code == 200, name
            assert response.headers["content-type"] == expected["." + name.rsplit(".", 1)[1]], name
            assert response.content == files[name][0]
    for wrong in ("/console/assets/nope.js", "/console/assets/%2e%2e/console.html", "/console/assets/"):
        assert (await on.get(wrong)).status_code == 404, wrong


def test_no_asset_reaches_outside_the_host() -> None:
    for name, (body, _) in console.files().items():
        text = body.decode()
        found = [
            url for url in re.findall(r"(?:https?:)?//[\w.-]+\.[a-z]{2,}[^\s\"'`)]*", text) if url != SVG_NAMESPACE
        ]
        assert not found, (name, found)
        # no fonts, scripts or styles from elsewhere either
        assert "@import" not in text and "cdn" not in text.lower(), name


def test_the_pages_refer_only_to_relative_urls_that_are_served() -> None:
    files = console.files()
    for page in ("console.html", "docs.html"):
        for url in links(files[page][0].decode()):
            assert not url.startswith(("/", "http:", "https:", "//")), (page, url)
            if url.startswith("#"):
                continue
            target = urljoin("http://h/bridge/" + page.removesuffix(".html"), url)
            assert target.startswith("http://h/bridge/"), (page, url)
            path = target.removeprefix("http://h/bridge/")
            assert path in ("console", "docs", "openapi.json") or path.removeprefix("console/") in files, (page, url)
    # every module a script imports is shipped beside it
    for name, text in scripts().items():
        for imported in re.findall(r"""from\s+["']([^"']+)["']""", text):
            assert imported.startswith("./") and "assets/" + imported[2:] in files, (name, imported)


def test_scripts_build_api_urls_below_the_pages_root_never_from_the_host_root() -> None:
    for name, text in scripts().items():
        # a URL written from "/" would leave a mount prefix (`/bridge/v1/...` needed, not `/v1/...`)
        rooted = re.findall(r"""["'`]/(?:v1|openapi|metrics|readyz|healthz|console|docs)\b""", text)
        assert not rooted, (name, rooted)
        assert "location.origin" not in text, name
    api = scripts()["assets/api.js"]
    assert 'export const ROOT = new URL(".", window.location.href);' in api
    assert 'new URL(path.replace(/^\\/+/, ""), ROOT)' in api
    # every request goes through apiUrl(), relative to ROOT
    calls = []
    for name, text in scripts().items():
        for call in re.findall(r"\bfetch\((?!\))([^,)]*)", text):
            assert call.startswith("apiUrl("), (name, call)
            calls.append(call)
    assert len(calls) >= 4  # api(), publicGet(), the stream, the docs page


def test_the_stream_is_read_with_the_bearer_header_and_resumes_with_last_event_id() -> None:
    api = scripts()["assets/api.js"]
    assert "new EventSource" not in api  # it cannot send an Authorization header
    assert 'fetch(apiUrl("v1/events/stream"), {\n          headers: headersWith(extra),' in api
    assert 'if (this.lastId) extra["last-event-id"] = this.lastId;' in api
    assert "response.body.pipeThrough(new TextDecoderStream()).getReader()" in api


async def test_under_a_mount_prefix_the_page_and_everything_it_loads_answer(on: httpx.AsyncClient) -> None:
    app = console_app(True)
    outer = Starlette(routes=[Mount("/bridge", app=app)])
    async with api_client(app):  # the inner app's lifespan
        transport = httpx.ASGITransport(app=outer)
        async with httpx.AsyncClient(transport=transport, base_url="http://botbridge.test") as client:
            for page in PAGES:
                response = await client.get("/bridge" + page)
                assert response.status_code == 200, page
                for url in links(response.text):
                    if url.startswith("#"):
                        continue
                    target = urljoin(str(response.url), url)
                    assert target.startswith("http://botbridge.test/bridge/"), (page, url, target)
                    assert (await client.get(target)).status_code == 200, target
            # what api.js builds from /bridge/console: ROOT is /bridge/, the API below it
            root = urljoin("http://botbridge.test/bridge/console#/senders", ".")
            assert root == "http://botbridge.test/bridge/"
            keys = await client.get(urljoin(root, "v1/keys"), headers={"authorization": f"Bearer {KEY_A}"})
            assert keys.status_code == 200
            assert (await client.get(urljoin(root, "openapi.json"))).status_code == 200
            assert (await client.get(urljoin(root, "metrics"))).status_code == 200


def test_the_key_leaves_the_page_only_as_a_bearer_header() -> None:
    sources = scripts()
    # kept in sessionStorage, and only api.js touches it
    for name, text in sources.items():
        assert ("sessionStorage" in text) == (name == "assets/api.js"), name
        assert "localStorage" not in text and "document.cookie" not in text, name
        # never logged
        assert not re.search(r"\bconsole\.(log|info|warn|error|debug|trace)\b", text), name
        # no query parameter or URL can carry a key
        assert not re.search(r"(api_key|apikey|token|key|bearer|authorization)=", text, re.IGNORECASE), name
        assert "searchParams.set(" not in text or name == "assets/api.js", name
    api = sources["assets/api.js"]
    reads = [line.strip() for line in api.splitlines() if "sessionStorage.getItem" in line]
    assert reads == [
        "return Boolean(window.sessionStorage.getItem(STORAGE_NAME));",
        "const bearer = key ?? window.sessionStorage.getItem(STORAGE_NAME);",
    ]
    uses = [line.strip() for line in api.splitlines() if re.search(r"\bbearer\b", line)]
    assert uses == [
        "const bearer = key ?? window.sessionStorage.getItem(STORAGE_NAME);",
        'if (bearer) headers.authorization = "Bearer " + bearer;',
    ]
    # api()'s `key` option (the key being checked at sign-in) goes to the headers only
    key_uses = [line.strip() for line in api.splitlines() if re.search(r"\bkey\b", line) and "//" not in line]
    assert key_uses == [
        "export function remember(key) {",
        "window.sessionStorage.setItem(STORAGE_NAME, key);",
        "function headersWith(extra, key) {",
        "const bearer = key ?? window.sessionStorage.getItem(STORAGE_NAME);",
        "const { query, body, signal, key, quiet401 } = options;",
        "headers: headersWith(extra, key),",
        "export async function checkKey(key) {",
        'await api("GET", "v1/keys", { query: { limit: 1 }, key, quiet401: true });',
    ]
    # the query a URL gets is only what a caller passes as `query`, never built from headers
    assert re.search(r"url\.searchParams\.set\(name, String\(value\)\)", api)
    # the sign-in field is a password field and the form never submits itself (CSP form-action 'none' besides)
    app = sources["assets/app.js"]
    assert 'name: "api_key"' in app and 'type: "password"' in app
    assert "event.preventDefault();" in sources["assets/dom.js"]


def test_every_input_has_a_label() -> None:
    dom = scripts()["assets/dom.js"]
    # field() is how every page makes an input: it always pairs a <label for> with the id it gives
    assert 'h("label", { for: id }' in dom
    for name, text in scripts().items():
        if name != "assets/dom.js":
            assert not re.search(r"""h\(\s*["'](input|select|textarea)["']""", text), name


def test_the_transcript_reads_every_timeline_type_and_uses_the_hand_off_endpoints() -> None:
    page = scripts()["assets/page-conversations.js"]
    for kind in get_args(TimelineItem.model_fields["type"].annotation):
        assert f'case "{kind}":' in page, kind
    for action in ("handoff", "resume"):
        assert f'"{action}"' in page and (f"/v1/conversations/{{conversation_id}}/{action}", "post") in OPERATIONS
    assert 'api("POST", "v1/messages"' in page


def test_the_console_routes_are_documented_as_pages_without_a_key() -> None:
    for path in ("/console", "/docs"):
        operation = OPERATIONS[(path, "get")]
        assert "security" not in operation
        assert "text/html" in operation["responses"]["200"]["content"]
        assert "404" in operation["responses"]


# --- POST /v1/subscriptions/{id}/failures/{failure_id}/redeliver ------------------


async def dead_letter(world: World) -> tuple[str, dict[str, Any]]:
    """An MO whose mo_message_received event the subscriber refuses until it is dead-lettered."""
    world.rt.engine.settings.event_attempts = 2
    world.subscriber.answers = {"mo_message_received": [500, 500]}
    await world.mo("hello")
    subscription = (await world.client.get("/v1/subscriptions")).json()["items"][0]["id"]
    failures: list[Any] = []

    async def poll() -> None:
        while not failures:
            failures[:] = (await world.client.get(f"/v1/subscriptions/{subscription}/failures")).json()["items"]
            world.clock.advance(5)
            await asyncio.sleep(0.01)

    await asyncio.wait_for(poll(), 10)
    return subscription, failures[0]


async def test_redeliver_queues_the_dead_letter_again_with_its_event_id(tmp_path: Any) -> None:
    async with make_world(tmp_path) as world:
        subscription, failure = await dead_letter(world)
        event_id = failure["event"]["event-id"]
        refused = world.subscriber.of_type("mo_message_received")
        assert [e["attempt"] for e in refused] == [1, 2]

        response = await world.client.post(f"/v1/subscriptions/{subscription}/failures/{failure['id']}/redeliver")
        assert response.status_code == 202
        assert response.json() == {"redelivering": True}
        await world.until(lambda: len(world.subscriber.of_type("mo_message_received")) == 3)
        again = world.subscriber.of_type("mo_message_received")[-1]
        assert again["event-id"] == event_id and again["attempt"] == 1
        assert again["event"] == failure["event"]["event"]
        # the failure is kept: the store cannot remove one record today
        listed = (await world.client.get(f"/v1/subscriptions/{subscription}/failures")).json()["items"]
        assert [f["id"] for f in listed] == [failure["id"]]


async def test_redeliver_is_tenant_scoped_and_404s_unknown_failures(tmp_path: Any) -> None:
    async with make_world(tmp_path) as world:
        subscription, failure = await dead_letter(world)
        delivered = len(world.subscriber.received)
        url = f"/v1/subscriptions/{subscription}/failures/{failure['id']}/redeliver"
        async with world.client_of(KEY_B) as other:
            refused = await other.post(url)
            assert refused.status_code == 404
            assert refused.json()["error"]["code"] == "not_found"
            # the other account's own subscription does not reach this account's failure either
            mine = await other.post(
                "/v1/subscriptions", json={"url": "http://subscriber.test/b", "secret": "secret-b-1"}
            )
            crossed = await other.post(f"/v1/subscriptions/{mine.json()['id']}/failures/{failure['id']}/redeliver")
            assert crossed.status_code == 404
        unknown = await world.client.post(f"/v1/subscriptions/{subscription}/failures/no-such-failure/redeliver")
        assert unknown.status_code == 404
        assert (
            await world.client.post(f"/v1/subscriptions/nope/failures/{failure['id']}/redeliver")
        ).status_code == 404
        unauthenticated = await world.client.post(url, headers={"authorization": "Bearer wrong-key-123"})
        assert unauthenticated.status_code == 401
        for _ in range(20):
            world.clock.advance(5)
            await asyncio.sleep(0.01)
        assert len(world.subscriber.received) == delivered
