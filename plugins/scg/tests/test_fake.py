"""The fake against SCG's documented examples and error shapes."""

from __future__ import annotations

import base64
import json
from typing import Any

import httpx
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from botbridge.models import Event
from botbridge_scg.testing import API, EssAuth, FakeScg, ScgReject, delivered

pytestmark = pytest.mark.anyio

REQUESTS = "/scg-external-api/api/v1/messaging/message_requests"
MESSAGES = "/scg-external-api/api/v1/messaging/messages"


@pytest.fixture
def api(fake: FakeScg, consts) -> httpx.AsyncClient:  # type: ignore[no-untyped-def]
    return httpx.AsyncClient(
        transport=httpx.ASGITransport(app=fake.app),
        base_url="http://scg.fake",
        headers={"authorization": f"Bearer {consts.token}"},
    )


def error(response: httpx.Response) -> tuple[int, str]:
    body = response.json()
    assert set(body) == {"error_code", "error_description"}
    return response.status_code, body["error_code"]


async def test_documented_example_is_accepted(api: httpx.AsyncClient, fake: FakeScg) -> None:
    body = {
        "from": "channel:DJm-vHcnSBKbeK4b2FAOLQ",
        "to": ["+447700900123"],
        "body": "Testing SMS via API!",
        "external_id": "order-1234",
        "verify_number": True,
    }
    for path in (REQUESTS, REQUESTS + "/"):
        response = await api.post(path, json=body)
        assert response.status_code == 200
        request_id = response.json()["id"]
        assert len(request_id) == 22
        assert set(response.json()) == {"id"}
    stored = (await api.get(f"{REQUESTS}/{request_id}")).json()
    assert stored["to"] == ["+447700900123"] and stored["external_id"] == "order-1234"
    [message] = (await api.get(f"{REQUESTS}/{request_id}/messages")).json()["list"]
    assert message["state"] == "CREATED" and message["message_request_id"] == request_id
    assert (await api.get(f"{MESSAGES}/{message['id']}")).json()["to_address"] == "+447700900123"
    assert len(fake.sent) == 2


async def test_single_message_endpoint_takes_a_string(api: httpx.AsyncClient) -> None:
    body = {"from": "channel:1KJPMkuHQkair_o15etpmg", "external_id": "1122334455", "to": "+18135370000", "body": "x"}
    response = await api.post(MESSAGES, json=body)
    assert response.status_code == 200
    message_id = response.json()["id"]
    assert (await api.get(f"{MESSAGES}/{message_id}")).json()["external_id"] == "1122334455"
    assert error(await api.post(MESSAGES, json={**body, "to": ["+18135370000"]})) == (400, "SCG_ERROR_4002")


async def test_auth_errors(api: httpx.AsyncClient, consts) -> None:  # type: ignore[no-untyped-def]
    body = {"from": "channel:abc", "to": ["+15551230002"], "body": "x"}
    assert error(await api.post(REQUESTS, json=body, headers={"authorization": ""})) == (401, "SCG_ERROR_4010")
    assert error(await api.post(REQUESTS, json=body, headers={"authorization": "Bearer nope"})) == (
        401,
        "SCG_ERROR_4010",
    )
    assert error(await api.post(REQUESTS, json=body, headers={"authorization": f"Basic {consts.token}"})) == (
        401,
        "SCG_ERROR_4010",
    )
    expired = {"authorization": f"Bearer {consts.expired_token}"}
    assert error(await api.post(REQUESTS, json=body, headers=expired)) == (404, "SCG_ERROR_4046")
    assert error(await api.get(f"{REQUESTS}/unknown", headers=expired)) == (404, "SCG_ERROR_4046")


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        ({"from": "+19999999999"}, "SCG_ERROR_40018"),
        ({"from": "channel:bad id"}, "SCG_ERROR_40018"),
        ({"from": None}, "SCG_ERROR_4001"),
        ({"to": "+15551230002"}, "SCG_ERROR_40024"),
        ({"to": []}, "SCG_ERROR_40024"),
        ({"to": ["15551230002"]}, "SCG_ERROR_40024"),
        ({"to": [5]}, "SCG_ERROR_40024"),
        ({"to": ["+15551230002"] * 101}, "SCG_ERROR_40015"),
        ({"body": None}, "SCG_ERROR_4001"),
        ({"body": ""}, "SCG_ERROR_4001"),
        ({"body": 5}, "SCG_ERROR_4002"),
        ({"media_urls": ["https://x/a.png"], "attachments": ["Att"]}, "SCG_ERROR_40010"),
        ({"media_urls": ["https://x/a.png"] * 11}, "SCG_ERROR_4009"),
        ({"media_urls": ["not a url"]}, "SCG_ERROR_4004"),
        ({"priority": "high"}, "SCG_ERROR_40020"),
    ],
)
async def test_validation_errors(api: httpx.AsyncClient, fake: FakeScg, change: dict[str, Any], expected: str) -> None:
    body: dict[str, Any] = {"from": "channel:abc", "to": ["+15551230002"], "body": "x"}
    body.update(change)
    body = {k: v for k, v in body.items() if v is not None}
    assert error(await api.post(REQUESTS, json=body)) == (400, expected)
    assert fake.sent == []


async def test_from_needs_a_prefix_and_ott_recipients_pass(api: httpx.AsyncClient, consts) -> None:  # type: ignore[no-untyped-def]
    body = {"from": consts.address, "to": ["wa:+447700900123", "Contact000000000000001"], "media_urls": ["https://x/a"]}
    # Swagger `Message_Request.from`: `channel:<id>` or `sender_id:<id>`; a bare address is refused.
    assert error(await api.post(REQUESTS, json=body)) == (400, "SCG_ERROR_40018")
    body["from"] = "sender_id:Fy4db1bd4RE9A665JjY4v6"
    assert (await api.post(REQUESTS, json=body)).status_code == 200


@pytest.mark.parametrize("raw", [b"[]", b'"text"', b"{not json", b"\xff"])
async def test_non_objects_are_40025(api: httpx.AsyncClient, raw: bytes) -> None:
    response = await api.post(REQUESTS, content=raw, headers={"content-type": "application/json"})
    assert error(response) == (400, "SCG_ERROR_40025")


async def test_injected_failures_carry_retry_after(api: httpx.AsyncClient, fake: FakeScg) -> None:
    fake.failures.append((429, "4290", "3"))
    response = await api.post(REQUESTS, json={"from": "channel:abc", "to": ["+15551230002"], "body": "x"})
    assert response.status_code == 429 and response.headers["retry-after"] == "3"


async def test_delivery_configurations(api: httpx.AsyncClient, fake: FakeScg) -> None:
    config = {"del-cfg-nm": "w", "del-prtcl-cd": "REST", "addr": "https://h/x", "del-fmt-cd": "JSON", "is-active": True}
    response = await api.post("/ess/v1/delivery-configurations", json=config)
    assert response.status_code == 201
    config_id = response.json()["id"]
    assert (await api.get(f"/ess/v1/delivery-configurations/{config_id}")).json()["addr"] == "https://h/x"
    assert error(await api.post("/ess/v1/delivery-configurations", json={**config, "del-prtcl-cd": "FTP"}))[0] == 400
    assert (await api.delete(f"/ess/v1/delivery-configurations/{config_id}")).status_code == 204
    assert (await api.get(f"/ess/v1/delivery-configurations/{config_id}")).status_code == 404


# --- the ESS side -------------------------------------------------------------------


class Receiver:
    """A webhook endpoint that records what ESS posts and answers scripted statuses."""

    def __init__(self, statuses: list[int] | None = None) -> None:
        self.statuses = statuses or []
        self.seen: list[tuple[dict[str, str], bytes]] = []
        self.app = Starlette(routes=[Route("/hook", self.hook, methods=["POST"])])
        self.client = httpx.AsyncClient(transport=httpx.ASGITransport(app=self.app), base_url="http://receiver")

    async def hook(self, request: Request) -> Response:
        self.seen.append((dict(request.headers), await request.body()))
        status = self.statuses.pop(0) if self.statuses else 200
        return JSONResponse({}, status_code=status)

    def events(self) -> list[dict[str, Any]]:
        return [json.loads(body) for _, body in self.seen]


async def test_mo_event_has_the_exact_ess_shape(fake: FakeScg) -> None:
    receiver = Receiver()
    await fake.emit_inbound(
        "http://receiver/hook", text="Test MO message", contact="+14085551212", auth=EssAuth.bearer("s3cret-s3cret"),
        client=receiver.client,
    )  # fmt: skip
    [(headers, body)] = receiver.seen
    assert headers["content-type"] == "application/json; charset=UTF-8"
    assert headers["x-ess-event-key"] == "+14085551212,"
    assert headers["x-ess-event-timestamp"] == "2023-11-14T22:13:20.000Z"
    assert headers["authorization"] == "Bearer s3cret-s3cret"
    event = json.loads(body)
    assert set(event) == {"topic", "attempt", "event", "event-id"}
    assert set(event["event"]) == {"fld-val-list", "evt-tp", "timestamp"}
    assert (event["topic"], event["attempt"], event["event"]["evt-tp"]) == ("SCG-Message", 1, "mo_message_received")
    fields = event["event"]["fld-val-list"]
    documented = {
        "sender_id_alias", "mo_price", "company-id", "sender_id_id", "message_body", "message_id", "to_address",
        "has_attachment", "fragments_count", "from_address", "application_id",
    }  # fmt: skip
    assert documented <= set(fields)
    assert (fields["message_body"], fields["from_address"], fields["to_address"]) == (
        "Test MO message",
        "+14085551212",
        "66000",
    )
    assert len(event["event-id"]) == 22
    assert Event.model_validate_payload(event).event_id == event["event-id"]


async def test_state_change_follows_the_sent_message(fake: FakeScg, api: httpx.AsyncClient) -> None:
    response = await api.post(
        REQUESTS, json={"from": "channel:abc", "to": ["+15551230002"], "body": "x", "external_id": "ext-1"}
    )
    request_id = response.json()["id"]
    receiver = Receiver()
    await fake.emit_lifecycle("http://receiver/hook", request_id, ("SENT", "FAILED"), client=receiver.client)
    first, second = receiver.events()
    assert [e["event"]["fld-val-list"]["new_state"] for e in (first, second)] == ["SENT", "FAILED"]
    assert [e["event"]["fld-val-list"]["previous_state"] for e in (first, second)] == ["QUEUED", "SENT"]
    fields = second["event"]["fld-val-list"]
    assert fields["message_request_id"] == request_id
    assert fields["to_address"] == "+15551230002"
    assert fields["external_message_request_id"] == "ext-1"
    assert (fields["reason_code"], fields["reason_description"]) == ("1009", "Delivery failure")
    assert isinstance(fields["mt_price"], str)
    assert "authorization" not in receiver.seen[0][0]  # no auth configured
    message = (await api.get(f"{REQUESTS}/{request_id}/messages")).json()["list"][0]
    assert (message["state"], message["failure_code"], message["failure_details"]) == (
        "FAILED",
        "OTHER",
        "Delivery failure",
    )


async def test_non_2xx_is_retried_with_the_same_event_id(fake: FakeScg) -> None:
    receiver = Receiver([500, 401, 201])
    attempts = await fake.emit_inbound("http://receiver/hook", text="hi", contact="+1", client=receiver.client)
    assert [(a.attempt, a.status) for a in attempts] == [(1, 500), (2, 401), (3, 201)]
    events = receiver.events()
    assert len({e["event-id"] for e in events}) == 1
    assert [e["attempt"] for e in events] == [1, 2, 3]
    assert len(delivered(fake.deliveries)) == 1

    failing = Receiver([500] * 5)
    attempts = await fake.emit_inbound("http://receiver/hook", text="hi", contact="+1", client=failing.client)
    assert len(attempts) == fake.max_attempts and delivered(attempts) == []


async def test_transport_errors_count_as_failed_attempts(fake: FakeScg) -> None:
    def refuse(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("refused", request=request)

    client = httpx.AsyncClient(transport=httpx.MockTransport(refuse))
    attempts = await fake.emit_inbound("http://nowhere/hook", text="hi", contact="+1", client=client)
    assert [a.status for a in attempts] == [None] * fake.max_attempts


async def test_duplicate_out_of_order_and_not_whitelisted_modes(fake: FakeScg) -> None:
    receiver = Receiver()
    fake.duplicate = True
    await fake.emit_inbound("http://receiver/hook", text="hi", contact="+1", client=receiver.client)
    first, second = receiver.events()
    assert first == second

    fake.duplicate = False
    fake.out_of_order = True
    ordered = Receiver()
    await fake.emit_lifecycle("http://receiver/hook", "Req0000000000000000001", client=ordered.client)
    assert [e["event"]["fld-val-list"]["new_state"] for e in ordered.events()] == ["DELIVERED", "SENT"]

    fake.whitelisted = False
    blocked = Receiver()
    assert await fake.emit_inbound("http://receiver/hook", text="hi", contact="+1", client=blocked.client) == []
    assert blocked.seen == []


async def test_basic_auth_header(fake: FakeScg) -> None:
    receiver = Receiver()
    await fake.emit_inbound(
        "http://receiver/hook", text="hi", contact="+1", auth=EssAuth.basic("pw-123", "ess"), client=receiver.client
    )
    header = receiver.seen[0][0]["authorization"]
    assert base64.b64decode(header.removeprefix("Basic ")).decode() == "ess:pw-123"


def test_target_reads_a_delivery_configuration(fake: FakeScg) -> None:
    config_id = fake.add_delivery_configuration(
        {"addr": "https://h/x", "auth": {"type": "BASIC", "username": "u", "password": "p"}}
    )
    assert fake.target(config_id) == ("https://h/x", EssAuth.basic("p", "u"))
    other = fake.add_delivery_configuration({"addr": "https://h/y"})
    assert fake.target(other) == ("https://h/y", EssAuth("none"))


def test_command_line_parses(monkeypatch: pytest.MonkeyPatch) -> None:
    import botbridge_scg.testing as testing

    served: dict[str, Any] = {}
    monkeypatch.setattr(testing, "serve", lambda host, port, fake: served.update(host=host, port=port, fake=fake))
    testing.main(["--port", "9123", "--token", "tok-123456"])
    assert served["port"] == 9123
    assert served["fake"].tokens == {"tok-123456"}


async def test_delivery_configurations_offer_no_static_bearer(api: httpx.AsyncClient, fake: FakeScg) -> None:
    # KB "ESS good practices": none, Basic, OAuth 2.0 (a token from the customer's endpoint) or mTLS.
    base = {"del-cfg-nm": "n", "del-prtcl-cd": "REST", "addr": "https://h/x", "del-fmt-cd": "JSON"}
    bearer = {**base, "auth": {"type": "BEARER", "token": "static"}}
    assert error(await api.post("/ess/v1/delivery-configurations", json=bearer)) == (400, "SCG_ERROR_4004")
    with pytest.raises(ScgReject):
        fake.add_delivery_configuration(bearer)
    half_oauth = {**base, "auth": {"type": "OAUTH2", "client_id": "c"}}
    assert error(await api.post("/ess/v1/delivery-configurations", json=half_oauth)) == (400, "SCG_ERROR_4001")
    oauth = {**base, "auth": {"type": "OAUTH2", "client_id": "c", "client_secret": "s", "token_url": "https://h/t"}}
    config_id = (await api.post("/ess/v1/delivery-configurations", json=oauth)).json()["id"]
    assert fake.target(config_id) == ("https://h/x", EssAuth.oauth2("https://h/t", "c", "s"))


async def test_attachments_are_metadata_and_content_behind_the_token(api: httpx.AsyncClient, fake: FakeScg) -> None:
    attachment = fake.add_attachment(b"GIF89a", "image/gif")
    meta = await api.get(f"{API}/messaging/attachments/{attachment}")
    assert meta.json() == {"id": attachment, "type": "image/gif", "size": 6, "state": "UPLOADED"}
    content = await api.get(f"{API}/messaging/attachments/{attachment}/content")
    assert (content.content, content.headers["content-type"]) == (b"GIF89a", "image/gif")
    anonymous = await api.get(f"{API}/messaging/attachments/{attachment}/content", headers={"authorization": ""})
    assert error(anonymous) == (401, "SCG_ERROR_4010")
    assert error(await api.get(f"{API}/messaging/attachments/nope/content")) == (404, "SCG_ERROR_4040")


async def test_whatsapp_reports_carry_the_routing_suffix(api: httpx.AsyncClient, fake: FakeScg) -> None:
    body = {"from": "channel:abc", "to": ["wa:+447700900123"], "body": "x"}
    request_id = (await api.post(REQUESTS, json=body)).json()["id"]
    to = fake.state_event(request_id, "DELIVERED")["event"]["fld-val-list"]["to_address"]
    assert to.startswith("wa:+447700900123@")
