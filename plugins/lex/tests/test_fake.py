"""The strict fake against Lex's documented shapes, its signature checks and botocore itself."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest
from botocore.config import Config
from botocore.exceptions import ClientError
from botocore.session import Session
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from botbridge import FakeClock
from botbridge.loopback import serve_app
from botbridge_lex import parse_credentials
from botbridge_lex.bot import signed_headers
from botbridge_lex.testing import (
    ACCESS_KEY_ID,
    FAKE_BASE_URL,
    SECRET_KEY,
    V1_BOT,
    V2_BOT,
    FakeLex,
    fake_credentials,
)

from .conftest import model_problems

pytestmark = pytest.mark.anyio

V1_PATH = f"/bot/{V1_BOT['name']}/alias/{V1_BOT['alias']}/user/user-1/text"
V2_PATH = f"/bots/{V2_BOT['id']}/botAliases/{V2_BOT['aliasId']}/botLocales/{V2_BOT['localeId']}/sessions/s-1/text"


async def call(
    http: httpx.AsyncClient,
    clock: FakeClock,
    path: str,
    payload: Any,
    *,
    credentials: str | None = None,
    at: float | None = None,
    tamper: bytes | None = None,
) -> httpx.Response:
    url = FAKE_BASE_URL + path
    body = json.dumps(payload).encode()
    when = datetime.fromtimestamp(clock.now() if at is None else at, UTC)
    headers = signed_headers(parse_credentials(credentials or fake_credentials()), url, body, when)
    return await http.post(url, content=tamper if tamper is not None else body, headers=headers)


def error_type(response: httpx.Response) -> str:
    return response.headers["x-amzn-errortype"].split(":")[0]


async def test_v2_echo_has_documented_shape(http: httpx.AsyncClient, clock: FakeClock, fake: FakeLex) -> None:
    response = await call(http, clock, V2_PATH, {"text": "hi"})
    assert response.status_code == 200
    data = response.json()
    assert data["messages"] == [{"content": "echo: hi", "contentType": "PlainText"}]
    assert data["sessionId"] == "s-1"
    assert data["sessionState"]["sessionAttributes"] == {"turns": "1"}
    assert data["sessionState"]["intent"]["state"] == "Fulfilled"
    assert fake.sessions["s-1"].turns == 1


async def test_v1_options_is_a_generic_response_card(http: httpx.AsyncClient, clock: FakeClock) -> None:
    response = await call(http, clock, V1_PATH, {"inputText": "options"}, credentials=fake_credentials("v1"))
    data = response.json()
    assert data["messageFormat"] == "PlainText"
    card = data["responseCard"]
    assert card["contentType"] == "application/vnd.amazonaws.card.generic"
    assert card["genericAttachments"][0]["buttons"] == [
        {"text": "Billing", "value": "billing"},
        {"text": "Sales", "value": "sales"},
    ]


async def test_v2_options_is_an_image_response_card(http: httpx.AsyncClient, clock: FakeClock) -> None:
    data = (await call(http, clock, V2_PATH, {"text": "Options"})).json()
    card = next(m for m in data["messages"] if m["contentType"] == "ImageResponseCard")["imageResponseCard"]
    assert [(b["text"], b["value"]) for b in card["buttons"]] == [("Billing", "billing"), ("Sales", "sales")]


async def test_v1_composite_message_is_json_of_messages(http: httpx.AsyncClient, clock: FakeClock) -> None:
    data = (await call(http, clock, V1_PATH, {"inputText": "composite"}, credentials=fake_credentials("v1"))).json()
    assert data["messageFormat"] == "Composite"
    assert [m["value"] for m in json.loads(data["message"])["messages"]] == ["First part.", "Second part."]


async def test_v1_session_attributes_come_only_from_the_request(http: httpx.AsyncClient, clock: FakeClock) -> None:
    v1 = fake_credentials("v1")
    first = (await call(http, clock, V1_PATH, {"inputText": "a"}, credentials=v1)).json()
    assert first["sessionAttributes"] == {"turns": "1"}
    forgot = (await call(http, clock, V1_PATH, {"inputText": "b"}, credentials=v1)).json()
    assert forgot["sessionAttributes"] == {"turns": "1"}
    sent = {"inputText": "c", "sessionAttributes": {"turns": "7", "k": "v"}}
    kept = (await call(http, clock, V1_PATH, sent, credentials=v1)).json()
    assert kept["sessionAttributes"] == {"turns": "8", "k": "v"}


async def test_keyword_rules(http: httpx.AsyncClient, clock: FakeClock, fake: FakeLex) -> None:
    fake.rules["hours"] = "We are open 9-5."
    data = (await call(http, clock, V2_PATH, {"text": "HOURS"})).json()
    assert data["messages"][0]["content"] == "We are open 9-5."


@pytest.mark.parametrize(
    ("status", "code"),
    [(400, "ValidationException"), (429, "ThrottlingException"), (503, "ServiceUnavailableException")],
)
async def test_fail_next_answers_in_lex_error_shape(
    http: httpx.AsyncClient, clock: FakeClock, fake: FakeLex, status: int, code: str
) -> None:
    fake.fail_next(status)
    failed = await call(http, clock, V2_PATH, {"text": "hi"})
    assert failed.status_code == status
    assert error_type(failed) == code
    assert set(failed.json()) == {"message"}
    assert (await call(http, clock, V2_PATH, {"text": "hi"})).status_code == 200


# --- signature checks ----------------------------------------------------------


async def test_unsigned_request_is_refused(http: httpx.AsyncClient) -> None:
    response = await http.post(FAKE_BASE_URL + V2_PATH, json={"text": "hi"})
    assert response.status_code == 403
    assert error_type(response) == "MissingAuthenticationTokenException"


async def test_unknown_access_key(http: httpx.AsyncClient, clock: FakeClock) -> None:
    other = json.dumps({**json.loads(fake_credentials()), "accessKeyId": "AKIAUNKNOWN000000000"})
    response = await call(http, clock, V2_PATH, {"text": "hi"}, credentials=other)
    assert response.status_code == 403
    assert error_type(response) == "UnrecognizedClientException"


async def test_wrong_secret_is_a_signature_mismatch(http: httpx.AsyncClient, clock: FakeClock) -> None:
    response = await call(http, clock, V2_PATH, {"text": "hi"}, credentials=fake_credentials(secret="not-the-secret"))
    assert response.status_code == 403
    assert error_type(response) == "InvalidSignatureException"
    assert "does not match" in response.json()["message"]
    assert SECRET_KEY not in response.text


async def test_body_changed_after_signing_is_refused(http: httpx.AsyncClient, clock: FakeClock) -> None:
    response = await call(http, clock, V2_PATH, {"text": "hi"}, tamper=b'{"text": "ho"}')
    assert response.status_code == 403
    assert error_type(response) == "InvalidSignatureException"


@pytest.mark.parametrize(("offset", "status"), [(-299, 200), (-301, 403), (299, 200), (301, 403)])
async def test_date_skew_window_is_five_minutes(
    http: httpx.AsyncClient, clock: FakeClock, offset: int, status: int
) -> None:
    response = await call(http, clock, V2_PATH, {"text": "hi"}, at=clock.now() + offset)
    assert response.status_code == status
    if status == 403:
        assert error_type(response) == "InvalidSignatureException"
        assert "Signature expired" in response.text or "not yet current" in response.text


async def test_wrong_region_in_scope(http: httpx.AsyncClient, clock: FakeClock) -> None:
    response = await call(http, clock, V2_PATH, {"text": "hi"}, credentials=fake_credentials(region="eu-west-1"))
    assert response.status_code == 403
    assert "valid region" in response.json()["message"]


@pytest.mark.invalid_lex_requests
async def test_wrong_service_and_date_in_scope(http: httpx.AsyncClient, clock: FakeClock) -> None:
    url = FAKE_BASE_URL + V2_PATH
    body = b'{"text":"hi"}'
    headers = signed_headers(parse_credentials(fake_credentials()), url, body, datetime.fromtimestamp(clock.now(), UTC))
    wrong_service = headers["Authorization"].replace("/lex/", "/execute-api/")
    response = await http.post(url, content=body, headers={**headers, "Authorization": wrong_service})
    assert "correct service" in response.json()["message"]
    date = headers["X-Amz-Date"][:8]
    wrong_date = headers["Authorization"].replace(f"/{date}/", "/20200101/")
    response = await http.post(url, content=body, headers={**headers, "Authorization": wrong_date})
    assert "Date in Credential scope" in response.json()["message"]


# --- path and body validation ----------------------------------------------------


async def test_unknown_bots_are_not_found(http: httpx.AsyncClient, clock: FakeClock) -> None:
    v1 = await call(
        http, clock, V1_PATH.replace("Testing", "Prod"), {"inputText": "hi"}, credentials=fake_credentials("v1")
    )
    assert (v1.status_code, error_type(v1)) == (404, "NotFoundException")
    v2 = await call(http, clock, V2_PATH.replace("en_US", "fr_FR"), {"text": "hi"})
    assert (v2.status_code, error_type(v2)) == (404, "ResourceNotFoundException")


@pytest.mark.invalid_lex_requests
@pytest.mark.parametrize("session_id", ["%2B15551234567", "x", "a" * 101, "a%20b"])
async def test_invalid_session_ids(http: httpx.AsyncClient, clock: FakeClock, session_id: str) -> None:
    v2 = await call(http, clock, V2_PATH.replace("/s-1/", f"/{session_id}/"), {"text": "hi"})
    assert (v2.status_code, error_type(v2)) == (400, "ValidationException")
    v1_path = V1_PATH.replace("/user-1/", f"/{session_id}/")
    v1 = await call(http, clock, v1_path, {"inputText": "hi"}, credentials=fake_credentials("v1"))
    assert (v1.status_code, error_type(v1)) == (400, "BadRequestException")


@pytest.mark.invalid_lex_requests
@pytest.mark.parametrize(
    "payload",
    [{}, {"text": ""}, {"text": "x" * 1025}, {"text": 5}, {"inputText": "hi"}, [1], {"text": "hi", "sessionState": 1}],
)
async def test_v2_body_is_checked(http: httpx.AsyncClient, clock: FakeClock, payload: Any) -> None:
    response = await call(http, clock, V2_PATH, payload)
    assert (response.status_code, error_type(response)) == (400, "ValidationException")


@pytest.mark.invalid_lex_requests
@pytest.mark.parametrize(
    "payload", [{}, {"text": "hi"}, {"inputText": "hi", "sessionAttributes": {"a": 1}}, {"inputText": ""}]
)
async def test_v1_body_is_checked(http: httpx.AsyncClient, clock: FakeClock, payload: Any) -> None:
    response = await call(http, clock, V1_PATH, payload, credentials=fake_credentials("v1"))
    assert (response.status_code, error_type(response)) == (400, "BadRequestException")


@pytest.mark.invalid_lex_requests
@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(flip=st.integers(min_value=0, max_value=10_000), byte=st.integers(min_value=1, max_value=255))
async def test_any_changed_byte_breaks_the_signature(
    http: httpx.AsyncClient, clock: FakeClock, flip: int, byte: int
) -> None:
    body = json.dumps({"text": "hello there"}).encode()
    index = flip % len(body)
    changed = body[:index] + bytes([body[index] ^ byte]) + body[index + 1 :]
    response = await call(http, clock, V2_PATH, {"text": "hello there"}, tamper=changed)
    assert response.status_code == 403
    assert error_type(response) == "InvalidSignatureException"


# --- the official SDK against the fake on loopback -------------------------------


@pytest.fixture(scope="module")
def loopback_fake() -> FakeLex:
    return FakeLex()


@pytest.fixture(scope="module")
def loopback(loopback_fake: FakeLex) -> Iterator[str]:
    with serve_app(loopback_fake.app) as url:
        yield url


def _sdk(service: str, endpoint: str, secret: str = SECRET_KEY) -> Any:
    return Session().create_client(
        service,
        region_name="us-east-1",
        endpoint_url=endpoint,
        aws_access_key_id=ACCESS_KEY_ID,
        aws_secret_access_key=secret,
        config=Config(retries={"max_attempts": 1}),
    )


def test_botocore_lexv2_client_accepts_the_fake(loopback: str, loopback_fake: FakeLex) -> None:
    client = _sdk("lexv2-runtime", loopback)
    answer = client.recognize_text(
        botId=V2_BOT["id"], botAliasId=V2_BOT["aliasId"], localeId="en_US", sessionId="user:1.a-b", text="options"
    )
    assert answer["messages"][0]["content"] == "What can we help you with?"
    assert answer["messages"][1]["imageResponseCard"]["buttons"][1] == {"text": "Sales", "value": "sales"}
    assert answer["sessionState"]["sessionAttributes"] == {"turns": "1"}
    with pytest.raises(ClientError) as caught:
        _sdk("lexv2-runtime", loopback, secret="wrong").recognize_text(
            botId=V2_BOT["id"], botAliasId=V2_BOT["aliasId"], localeId="en_US", sessionId="s1", text="hi"
        )
    assert caught.value.response["Error"]["Code"] == "InvalidSignatureException"
    # What the SDK itself sends passes the oracle: a check of the oracle, not only of the fake.
    assert [e.api for e in loopback_fake.exchanges if e.api == "v2"] == ["v2", "v2"]
    assert model_problems(loopback_fake.exchanges) == []


def test_botocore_lex_v1_client_accepts_the_fake(loopback: str, loopback_fake: FakeLex) -> None:
    client = _sdk("lex-runtime", loopback)
    answer = client.post_text(
        botName=V1_BOT["name"], botAlias=V1_BOT["alias"], userId="u.1", inputText="hi", sessionAttributes={"k": "v"}
    )
    assert answer["message"] == "echo: hi"
    assert answer["sessionAttributes"] == {"k": "v", "turns": "1"}
    with pytest.raises(ClientError) as caught:
        client.post_text(botName="Nope", botAlias=V1_BOT["alias"], userId="u.1", inputText="hi")
    assert caught.value.response["Error"]["Code"] == "NotFoundException"
    assert [e.api for e in loopback_fake.exchanges if e.api == "v1"] == ["v1", "v1"]
    assert model_problems(loopback_fake.exchanges) == []
