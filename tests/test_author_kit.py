"""The fixtures core registers for plugin authors (pytest11), used as an author would."""

from __future__ import annotations

import pytest

from botbridge.loopback import serve_app

pytestmark = pytest.mark.anyio


async def test_host_with_only_the_named_plugin(botbridge_host) -> None:  # type: ignore[no-untyped-def]
    async with botbridge_host("sinch") as (_app, client):
        plugins = {p["name"] for p in (await client.get("/v1/plugins")).json()["plugins"]}
        assert plugins == {"sinch", "memory", "sqlite"}
        assert (await client.post("/v1/senders", json={"channel": "bird", "address": "+1"})).status_code == 422


async def test_a_signed_webhook_through_a_host(botbridge_host, provider_fake) -> None:  # type: ignore[no-untyped-def]
    phone = provider_fake("channel", "sinch")
    with serve_app(phone.app) as fake_url:
        async with botbridge_host("sinch", public_url="http://127.0.0.1") as (_app, client):
            sender = (await client.post("/v1/senders", json=phone.sender_body(fake_url))).json()
            body = phone.fake.inbound_body("hi", "15551230001", "m-1")
            headers = phone.fake.sign(body)
            response = await client.post(
                sender["webhook_url"].replace("http://127.0.0.1", ""), content=body, headers=headers
            )
            assert response.json() == {"status": "accepted", "accepted": 1, "duplicates": 0}
            forged = await client.post(sender["webhook_url"], content=body + b" ", headers=headers)
            assert forged.status_code == 401


async def test_fake_clock_moves_only_when_told(fake_clock) -> None:  # type: ignore[no-untyped-def]
    start = fake_clock.now()
    fake_clock.advance(30)
    assert fake_clock.now() == start + 30
