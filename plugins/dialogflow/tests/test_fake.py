"""The fake against Google's documented request rules, responses and error shapes."""

from __future__ import annotations

import base64
import json
import socket
import subprocess
import sys
from collections.abc import AsyncIterator
from typing import Any

import anyio
import httpx
import pytest
import uvicorn
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from botbridge import FakeClock, InboundMessage, SystemClock
from botbridge_dialogflow import DialogflowBackend
from botbridge_dialogflow.auth import GRANT_TYPE, sign_assertion
from botbridge_dialogflow.credentials import load_private_key, parse_service_account
from botbridge_dialogflow.testing import FakeDialogflow, service_account_info

from .conftest import PROJECT

pytestmark = pytest.mark.anyio

ES_URL = f"https://dialogflow.googleapis.com/v2/projects/{PROJECT}/agent/sessions/abc-123:detectIntent"


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


@pytest.fixture
async def client(fake: FakeDialogflow) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=fake.app)) as c:
        yield c


def assertion(account: dict[str, str], now: float, key: rsa.RSAPrivateKey | None = None, **claims: Any) -> str:
    """A JWT grant as the backend signs it, with some claims replaced (and re-signed)."""
    parsed = parse_service_account(json.dumps(account))
    private = key or load_private_key(parsed.private_key_pem)
    signed = sign_assertion(parsed, private, now)
    if not claims:
        return signed
    header, body, _ = signed.split(".")
    payload = {**json.loads(base64.urlsafe_b64decode(body + "=" * (-len(body) % 4))), **claims}
    body = b64url(json.dumps(payload).encode())
    signature = private.sign(f"{header}.{body}".encode(), padding.PKCS1v15(), hashes.SHA256())
    return f"{header}.{body}.{b64url(signature)}"


async def grant(client: httpx.AsyncClient, value: str, grant_type: str = GRANT_TYPE) -> httpx.Response:
    return await client.post("https://oauth2.googleapis.com/token", data={"grant_type": grant_type, "assertion": value})


async def token(client: httpx.AsyncClient, account: dict[str, str], clock: FakeClock) -> str:
    response = await grant(client, assertion(account, clock.now()))
    assert response.status_code == 200, response.text
    return str(response.json()["access_token"])


def detect_body(text: str = "hello", language: str = "en") -> dict[str, Any]:
    return {"queryInput": {"text": {"text": text, "languageCode": language}}}


# --- token endpoint ---------------------------------------------------------------


async def test_a_signed_grant_gets_a_bearer_token(
    client: httpx.AsyncClient, account: dict[str, str], clock: FakeClock
) -> None:
    response = await grant(client, assertion(account, clock.now()))
    assert response.status_code == 200
    body = response.json()
    assert body["token_type"] == "Bearer" and body["expires_in"] == 3600
    assert body["access_token"].startswith("ya29.")


@pytest.mark.parametrize(
    ("claims", "error", "description"),
    [
        ({"aud": "https://evil.test/token"}, "invalid_grant", "Invalid JWT: Failed audience check."),
        ({"scope": "https://www.googleapis.com/auth/drive"}, "invalid_scope", "Invalid OAuth scope"),
        ({"iss": "someone@else.iam.gserviceaccount.com"}, "invalid_grant", "Invalid grant: account not found"),
        ({"exp": 1_700_000_000 + 7200}, "invalid_grant", "Token must be a short-lived token"),
        ({"iat": 1_700_000_000 - 7200, "exp": 1_700_000_000 - 3600}, "invalid_grant", "Token must be a short-lived"),
        ({"iat": "now"}, "invalid_grant", "Token must be a short-lived token"),
    ],
)
async def test_bad_claims_are_refused_like_google(
    client: httpx.AsyncClient,
    account: dict[str, str],
    clock: FakeClock,
    claims: dict[str, Any],
    error: str,
    description: str,
) -> None:
    response = await grant(client, assertion(account, clock.now(), **claims))
    assert response.status_code == 400
    assert response.json()["error"] == error
    assert description in response.json()["error_description"]


async def test_a_forged_signature_is_refused(
    client: httpx.AsyncClient, account: dict[str, str], clock: FakeClock, other_key: rsa.RSAPrivateKey
) -> None:
    response = await grant(client, assertion(account, clock.now(), key=other_key))
    assert (response.status_code, response.json()) == (
        400,
        {"error": "invalid_grant", "error_description": "Invalid JWT Signature."},
    )


async def test_unsigned_and_malformed_grants_are_refused(
    client: httpx.AsyncClient, account: dict[str, str], clock: FakeClock
) -> None:
    signed = assertion(account, clock.now())
    header, body, _ = signed.split(".")
    none_header = b64url(json.dumps({"alg": "none", "typ": "JWT"}).encode())
    for value in (f"{none_header}.{body}.", f"{header}.{body}", "a.b.c", ""):
        response = await grant(client, value)
        assert response.status_code == 400
        assert response.json()["error"] in ("invalid_grant", "invalid_request")
    response = await grant(client, signed, grant_type="client_credentials")
    assert response.json()["error"] == "unsupported_grant_type"


@settings(max_examples=60, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(value=st.text(alphabet="abcdefghijklmnopqrstuvwxyzABCDEFGHIJ0123456789-_.=", max_size=300))
async def test_no_garbage_assertion_is_accepted_or_crashes_the_fake(client: httpx.AsyncClient, value: str) -> None:
    response = await grant(client, value)
    assert response.status_code == 400
    assert set(response.json()) == {"error", "error_description"}


# --- detectIntent -----------------------------------------------------------------


async def test_detect_intent_answers_the_documented_shape(
    client: httpx.AsyncClient, account: dict[str, str], clock: FakeClock, fake: FakeDialogflow
) -> None:
    bearer = {"authorization": f"Bearer {await token(client, account, clock)}"}
    response = await client.post(ES_URL, json=detect_body(), headers=bearer)
    assert response.status_code == 200
    result = response.json()["queryResult"]
    assert result["queryText"] == "hello" and result["languageCode"] == "en"
    assert result["fulfillmentText"] == "echo: hello"
    assert result["fulfillmentMessages"] == [{"text": {"text": ["echo: hello"]}}]
    assert result["intent"]["name"].startswith(f"projects/{PROJECT}/agent/intents/")
    assert fake.sessions == ["abc-123"]


async def test_detect_intent_needs_a_live_token_for_the_project(
    client: httpx.AsyncClient, account: dict[str, str], clock: FakeClock, fake: FakeDialogflow, key: rsa.RSAPrivateKey
) -> None:
    response = await client.post(ES_URL, json=detect_body())
    assert response.status_code == 401
    assert response.json()["error"]["status"] == "UNAUTHENTICATED" and response.json()["error"]["code"] == 401
    live = await token(client, account, clock)
    other = service_account_info(key, project_id="other-project-1", client_email="x@other-project-1.iam.test")
    fake.register(other)
    foreign = await token(client, other, clock)
    response = await client.post(ES_URL, json=detect_body(), headers={"authorization": f"Bearer {foreign}"})
    assert response.status_code == 403 and response.json()["error"]["status"] == "PERMISSION_DENIED"
    clock.advance(3600)
    response = await client.post(ES_URL, json=detect_body(), headers={"authorization": f"Bearer {live}"})
    assert response.status_code == 401
    assert fake.calls == []


@pytest.mark.crafted_requests
@pytest.mark.parametrize(
    ("session", "body", "message"),
    [
        ("a" * 37, detect_body(), "must not exceed 36"),
        ("has+plus", detect_body(), "[A-Za-z0-9_-]"),
        ("ok", detect_body("x" * 257), "exceeds the limit of 256"),
        ("ok", detect_body(""), "Input text not set"),
        ("ok", {"queryInput": {"text": {"text": "hi"}}}, "Language code is required"),
        ("ok", detect_body(language="xx_YY"), "Invalid language code"),
        ("ok", {**detect_body(), "extra": 1}, 'Unknown name "extra"'),
        ("ok", {"queryInput": {"text": {"text": "hi", "languageCode": "en", "lang": "en"}}}, 'Unknown name "lang"'),
        ("ok", {**detect_body(), "queryParams": {"tz": "x"}}, 'Unknown name "tz"'),
    ],
)
async def test_invalid_requests_get_invalid_argument(
    client: httpx.AsyncClient, account: dict[str, str], clock: FakeClock, session: str, body: Any, message: str
) -> None:
    bearer = {"authorization": f"Bearer {await token(client, account, clock)}"}
    url = ES_URL.replace("abc-123", session)
    response = await client.post(url, json=body, headers=bearer)
    assert response.status_code == 400
    error = response.json()["error"]
    assert error["status"] == "INVALID_ARGUMENT" and error["code"] == 400
    assert message in error["message"]


async def test_regional_agents_need_the_regional_host_and_path(
    client: httpx.AsyncClient, clock: FakeClock, fake: FakeDialogflow, key: rsa.RSAPrivateKey
) -> None:
    info = service_account_info(key, project_id="eu-agent-42")
    fake.register(info, location="europe-west2")
    bearer = {"authorization": f"Bearer {await token(client, info, clock)}"}
    path = "/v2/projects/eu-agent-42/locations/europe-west2/agent/sessions/s1:detectIntent"
    wrong_host = await client.post("https://dialogflow.googleapis.com" + path, json=detect_body(), headers=bearer)
    assert wrong_host.status_code == 400 and "europe-west2-dialogflow.googleapis.com" in wrong_host.text
    no_location = await client.post(
        "https://europe-west2-dialogflow.googleapis.com/v2/projects/eu-agent-42/agent/sessions/s1:detectIntent",
        json=detect_body(),
        headers=bearer,
    )
    assert no_location.status_code == 400  # a regional host needs a regional path
    global_path = await client.post(
        "https://dialogflow.googleapis.com/v2/projects/eu-agent-42/agent/sessions/s1:detectIntent",
        json=detect_body(),
        headers=bearer,
    )
    assert global_path.status_code == 404 and global_path.json()["error"]["status"] == "NOT_FOUND"
    right = await client.post(
        "https://europe-west2-dialogflow.googleapis.com" + path, json=detect_body(), headers=bearer
    )
    assert right.status_code == 200


async def test_scripted_failures_and_answers(
    client: httpx.AsyncClient, account: dict[str, str], clock: FakeClock, fake: FakeDialogflow
) -> None:
    bearer = {"authorization": f"Bearer {await token(client, account, clock)}"}
    fake.fail_next(503, retry_after=2)
    failed = await client.post(ES_URL, json=detect_body(), headers=bearer)
    assert failed.status_code == 503 and failed.headers["retry-after"] == "2"
    assert failed.json()["error"]["status"] == "UNAVAILABLE"
    fake.rule("weather", text="Sunny", messages=[{"text": {"text": ["Sunny"]}}])
    answered = await client.post(ES_URL, json=detect_body("weather today?"), headers=bearer)
    assert answered.json()["queryResult"]["fulfillmentText"] == "Sunny"
    menu = await client.post(ES_URL, json=detect_body("menu"), headers=bearer)
    buttons = menu.json()["queryResult"]["fulfillmentMessages"][0]["card"]["buttons"]
    assert buttons == [{"text": "Billing", "postback": "billing"}, {"text": "Sales", "postback": "sales"}]
    quick = await client.post(ES_URL, json=detect_body("quick"), headers=bearer)
    assert quick.json()["queryResult"]["fulfillmentMessages"][0]["quickReplies"]["quickReplies"] == ["Billing", "Sales"]


async def test_cx_channel_specific_messages_are_answered_only_to_their_channel(
    client: httpx.AsyncClient, account: dict[str, str], fake: FakeDialogflow
) -> None:
    agent = "0b5c8a0e-1a2b-4c3d-9e8f-0123456789ab"
    fake.add_cx_agent(PROJECT, "global", agent)
    fake.rule(
        "hours",
        messages=[
            {"text": {"text": ["default"]}},
            {"channel": "sms", "text": {"text": ["sms"]}},
            {"channel": "sms", "payload": {"richContent": []}},
            {"channel": "web", "text": {"text": ["web"]}},
        ],
    )
    url = f"https://dialogflow.googleapis.com/v3/projects/{PROJECT}/locations/global/agents/{agent}/sessions/s:detectIntent"
    bearer = {"authorization": f"Bearer {fake.issue_token(account['client_email'])}"}

    async def answered(channel: str | None) -> list[dict[str, Any]]:
        body: dict[str, Any] = {"queryInput": {"text": {"text": "hours"}, "languageCode": "en"}}
        if channel is not None:
            body["queryParams"] = {"channel": channel}
        response = await client.post(url, json=body, headers=bearer)
        assert response.status_code == 200, response.text
        return list(response.json()["queryResult"]["responseMessages"])

    assert await answered("sms") == [
        {"channel": "sms", "text": {"text": ["sms"]}},
        {"channel": "sms", "payload": {"richContent": []}},
    ]
    assert await answered(None) == [{"text": {"text": ["default"]}}]
    assert await answered("telegram") == [{"text": {"text": ["default"]}}]  # falls back to channel-less
    es = await client.post(ES_URL, json=detect_body("hours"), headers=bearer)
    assert es.json()["queryResult"]["fulfillmentMessages"] == [{"text": {"text": ["default"]}}]


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=10),
    lambda children: st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=10), children, max_size=3),
    max_leaves=15,
)


@pytest.mark.crafted_requests
@settings(max_examples=60, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(body=st.one_of(json_values, st.builds(lambda t: {"queryInput": {"text": t}}, json_values)))
async def test_any_body_gets_a_google_answer_never_a_crash(
    client: httpx.AsyncClient, account: dict[str, str], fake: FakeDialogflow, body: Any
) -> None:
    bearer = {"authorization": f"Bearer {fake.issue_token(account['client_email'])}"}
    response = await client.post(
        ES_URL, content=json.dumps(body), headers={**bearer, "content-type": "application/json"}
    )
    assert response.status_code in (200, 400)
    if response.status_code == 400:
        assert set(response.json()["error"]) == {"code", "message", "status"}


# --- on loopback -------------------------------------------------------------------


async def test_the_backend_talks_to_the_fake_on_loopback(
    account: dict[str, str], credentials: str, make_session: Any
) -> None:
    fake = FakeDialogflow()  # the system clock: a real server, real time
    fake.register(account)
    server = uvicorn.Server(uvicorn.Config(fake.app, host="127.0.0.1", port=0, log_level="warning", lifespan="off"))
    async with anyio.create_task_group() as tasks:
        tasks.start_soon(server.serve)
        with anyio.fail_after(10):
            while not server.started:  # noqa: ASYNC110 - uvicorn offers no start event
                await anyio.sleep(0.01)
        port = server.servers[0].sockets[0].getsockname()[1]
        base = f"http://127.0.0.1:{port}"
        async with httpx.AsyncClient() as http:
            backend = DialogflowBackend(http, FakeClock())
            fake.clock = backend.clock
            session = make_session(credentials, {"base_url": base, "token_url": base + "/token"})
            replies = await backend.send(session, _message(session, "over the wire"))
        server.should_exit = True
    assert replies[0].text == "echo: over the wire"
    assert fake.calls[-1].host == f"127.0.0.1:{port}"


def _message(session: Any, text: str) -> InboundMessage:
    return InboundMessage(channel="test", sender_id="s", provider_message_id="m1", contact=session.contact, text=text)


async def test_the_command_line_fake_serves_a_generated_key(tmp_path: Any, make_session: Any) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    key_file = tmp_path / "sa.json"
    command = [sys.executable, "-m", "botbridge_dialogflow.testing", "--port", str(port), "--generate", str(key_file)]
    process = await anyio.open_process(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        base = f"http://127.0.0.1:{port}"
        async with httpx.AsyncClient() as http:
            with anyio.fail_after(20):
                while True:
                    try:
                        await http.post(base + "/token")
                        break
                    except httpx.TransportError:
                        await anyio.sleep(0.05)
            credentials = key_file.read_text()
            assert json.loads(credentials)["token_uri"] == base + "/token"
            backend = DialogflowBackend(http, SystemClock())
            session = make_session(credentials, {"base_url": base})
            replies = await backend.send(session, _message(session, "from a file"))
        assert replies[0].text == "echo: from a file"
    finally:
        process.terminate()
        with anyio.fail_after(10):
            await process.wait()
        await process.aclose()
