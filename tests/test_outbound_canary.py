"""With default settings no tenant-set URL makes the host connect inside the operator's network.

A loopback canary server counts every connection. A tenant points every URL
field of every plugin's sender and connector, and its subscription, at it:
by address (127.0.0.1, [::1], IPv4 inside IPv6), by name (localhost, a name
resolving to the metadata address) and through DNS rebinding (a name that is
public when the URL is stored and loopback when the host connects). It then
sends MTs, has phones send MOs (bot turns, fallbacks) and so events. The
canary must see no connection at all, and what the tenant reads back about
the failures is bounded.
"""

from __future__ import annotations

import asyncio
import json
import re
import socket
from collections.abc import AsyncIterator
from contextlib import ExitStack, asynccontextmanager
from typing import Any

import httpx
import pytest

from botbridge.host import create_app
from botbridge.http import create_http_client
from botbridge.outbound import OutboundPolicy
from botbridge.plugins import Plugins
from botbridge.settings import Settings
from botbridge.testing.canary import Canary
from botbridge.testing.servers import listening_socket, serve_app

from .providers import BOTS, CHANNELS

pytestmark = [pytest.mark.anyio, pytest.mark.outbound_policy]
KEY = "canary-test-key-1"
PUBLIC = "93.184.215.14"
URL_KEY = re.compile(r"(url|uri|endpoint)$", re.IGNORECASE)


class Names:
    """The resolver the host sees: fixed names, and one that rebinds when told to."""

    def __init__(self) -> None:
        self.rebound = False

    async def resolve(self, host: str, port: int) -> list[tuple[int, str]]:
        table = {
            "localhost": ["127.0.0.1", "::1"],
            "metadata.test": ["169.254.169.254"],
            "rebind.test": ["127.0.0.1"] if self.rebound else [PUBLIC],
        }
        if host not in table:
            raise OSError(f"{host} does not resolve")
        return [(socket.AF_INET6 if ":" in a else socket.AF_INET, a) for a in table[host]]


def aimed(body: dict[str, Any], url: str) -> dict[str, Any]:
    """`body` with every URL field of its config and JSON credentials set to `url`."""

    def point(tree: Any) -> Any:
        if isinstance(tree, dict):
            return {k: url if isinstance(v, str) and URL_KEY.search(k) else point(v) for k, v in tree.items()}
        return tree

    body = {**body, "config": point(body.get("config", {}))}
    try:
        credentials = json.loads(body["credentials"])
    except (KeyError, ValueError):
        return body
    if isinstance(credentials, dict):
        body["credentials"] = json.dumps(point(credentials))
    return body


def targets(port: int) -> list[str]:
    return [
        f"http://127.0.0.1:{port}",
        f"http://localhost:{port}",
        f"http://[::1]:{port}",
        f"http://[::ffff:127.0.0.1]:{port}",
        f"http://[::7f00:1]:{port}",
        f"http://[64:ff9b::7f00:1]:{port}",
        f"http://metadata.test:{port}",
        "http://169.254.169.254",
        f"http://user:pw@{PUBLIC}:{port}",
    ]


@asynccontextmanager
async def host(names: Names) -> AsyncIterator[httpx.AsyncClient]:
    sock = listening_socket()  # held until the host serves on it: no other process can take the port
    port = sock.getsockname()[1]
    settings = Settings(
        store="memory://",
        api_keys=f"acct:{KEY}",  # type: ignore[arg-type]
        secret_key="canary-secret-key-0001",  # type: ignore[arg-type]
        public_url=f"http://127.0.0.1:{port}",
        load_plugins="azure_directline,dialogflow,lex,sinch,bird,scg",
    )
    assert not settings.allow_private_urls and not settings.allow_private_webhook_urls
    policy = OutboundPolicy.from_settings(settings, names.resolve)
    app = create_app(settings, plugins=Plugins.discover(settings), http=create_http_client(settings, policy))
    app.state.runtime.outbound = policy
    with ExitStack() as stack:
        url = stack.enter_context(serve_app(app, sock=sock, lifespan="on"))
        async with httpx.AsyncClient(base_url=url, headers={"Authorization": f"Bearer {KEY}"}, timeout=30) as api:
            yield api


def refused_field(response: httpx.Response) -> str:
    assert response.status_code == 422, response.text
    field = response.json()["error"]["details"][0]["field"]
    assert isinstance(field, str)
    return field


async def test_no_tenant_url_reaches_the_canary() -> None:
    names = Names()
    async with Canary() as canary, host(names) as api:
        rebind = f"http://rebind.test:{canary.port}"
        channels = {name: factory() for name, factory in CHANNELS.items()}
        bots = {name: factory() for name, factory in BOTS.items()}

        # Stored URLs are refused, naming the field.
        for side in channels.values():
            for url in targets(canary.port):
                field = refused_field(await api.post("/v1/senders", json=aimed(side.sender_body(url), url)))
                assert field.startswith(("config.", "credentials")), field
        spare = await api.post("/v1/senders", json=aimed(next(iter(channels.values())).sender_body(rebind), rebind))
        assert spare.status_code == 201, spare.text
        for bot in bots.values():
            for url in targets(canary.port):
                body = aimed(bot.connector_body(spare.json()["id"], url), url)
                assert refused_field(await api.post("/v1/connectors", json=body)).startswith(("config.", "credentials"))
        for url in targets(canary.port):
            response = await api.post("/v1/subscriptions", json={"url": url + "/events", "secret": "s" * 16})
            assert refused_field(response) == "url"
        assert (await api.delete(f"/v1/senders/{spare.json()['id']}")).status_code == 204

        # What was stored while public is refused when the host connects (DNS rebinding).
        subscription = await api.post("/v1/subscriptions", json={"url": rebind + "/events", "secret": "s" * 16})
        assert subscription.status_code == 201, subscription.text
        pairs = list(zip(channels.items(), bots.items(), strict=False))
        senders = []
        for (_, side), (_, bot) in pairs:
            sender = await api.post("/v1/senders", json=aimed(side.sender_body(rebind), rebind))
            assert sender.status_code == 201, sender.text
            connector_body = aimed(bot.connector_body(sender.json()["id"], rebind), rebind)
            connector_body["config"]["fallback_text"] = "sorry"
            connector = await api.post("/v1/connectors", json=connector_body)
            assert connector.status_code == 201, connector.text
            senders.append((side, sender.json()))

            # Changing a stored record is checked the same way, by each route that changes one.
            url = f"http://[::1]:{canary.port}"
            changed = aimed(side.sender_body(url), url)
            update = {k: changed[k] for k in ("config", "credentials") if k in changed}
            response = await api.patch(f"/v1/senders/{sender.json()['id']}", json=update)
            assert refused_field(response).startswith(("config.", "credentials")), response.text
            changed = aimed(bot.connector_body(sender.json()["id"], url), url)
            update = {k: changed[k] for k in ("config", "credentials") if k in changed}
            version = str(connector.json()["version_number"])
            for method in ("PATCH", "POST"):
                response = await api.request(
                    method, f"/v1/connectors/{connector.json()['id']}", json={**update, "version_number": version}
                )
                assert refused_field(response).startswith(("config.", "credentials")), (method, response.text)
        names.rebound = True

        sent = []
        for index, (side, sender) in enumerate(senders):
            status = await side.phone_says(sender["webhook_url"], "hello", f"+1555010{index:04d}")
            assert status is not None and 200 <= status < 300, (side.name, status)
            message = await api.post("/v1/messages", json={"sender_id": sender["id"], "to": "+15550199", "text": "x"})
            assert message.status_code in (200, 201, 202), message.text
            sent.append(message.json()["id"])

        def counted(metrics: str, name: str) -> float:
            return sum(float(v) for v in re.findall(rf"^{name}_total\{{[^}}]*\}} (\S+)$", metrics, re.MULTILINE))

        async def settled() -> bool:
            states = [(await api.get(f"/v1/messages/{m}")).json()["state"] for m in sent]
            metrics = (await api.get("/metrics")).text
            failures = (await api.get(f"/v1/subscriptions/{subscription.json()['id']}/failures")).json()["items"]
            return (
                all(state == "FAILED" for state in states)
                and len(failures) > 0
                and counted(metrics, "botbridge_bot_errors") >= len(senders)
                and counted(metrics, "botbridge_mt_failed") >= 2 * len(senders)  # the MT and the fallback
            )

        for _ in range(300):
            if await settled():
                break
            await asyncio.sleep(0.1)
        else:
            raise AssertionError("not every call has failed yet: " + (await api.get("/metrics")).text)
        failures = (await api.get(f"/v1/subscriptions/{subscription.json()['id']}/failures")).json()["items"]
        assert all(f["last_error"].startswith("refused url") for f in failures)

        for message_id in sent:
            reason = (await api.get(f"/v1/messages/{message_id}")).json()["reason_description"]
            assert reason and len(reason) <= 200 and "\n" not in reason
        assert canary.hits == 0
