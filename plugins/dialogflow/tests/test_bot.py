from __future__ import annotations

import asyncio
import base64
import json
from collections.abc import Callable

import httpx
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from botbridge import (
    BotCredentialsInvalid,
    BotError,
    BotSession,
    ConfigInvalid,
    FakeClock,
    InboundMessage,
    Media,
)
from botbridge.http import RetryPolicy
from botbridge.testing import BotBackendContract, BotHarness
from botbridge_dialogflow import DialogflowBackend, detect_intent_url, parse_settings, session_id_for
from botbridge_dialogflow.auth import REFRESH_MARGIN
from botbridge_dialogflow.bot import SESSION_KEY, truncate_text
from botbridge_dialogflow.credentials import GOOGLE_TOKEN_URL, parse_service_account
from botbridge_dialogflow.testing import FakeDialogflow, service_account_info

from .conftest import EMAIL, PROJECT

pytestmark = pytest.mark.anyio

SessionFactory = Callable[..., BotSession]


def message(session: BotSession, text: str = "", **extra: object) -> InboundMessage:
    return InboundMessage(
        channel="test",
        sender_id=session.conversation.sender_id,
        provider_message_id=f"m-{text[:20]}",
        contact=session.contact,
        text=text,
        **extra,  # type: ignore[arg-type]
    )


# --- the core contract ---------------------------------------------------------


class TestDialogflowContract(BotBackendContract):
    @pytest.fixture
    def harness(
        self,
        backend: DialogflowBackend,
        fake: FakeDialogflow,
        make_session: SessionFactory,
        credentials: str,
        other_key: rsa.RSAPrivateKey,
    ) -> BotHarness:
        # Same account and key id, another private key: well-formed, refused by Google.
        forged = json.loads(credentials)
        forged["private_key"] = service_account_info(other_key)["private_key"]
        return BotHarness(
            bot=backend,
            session=make_session,
            valid_credentials=credentials,
            refused_credentials=json.dumps(forged),
            expected_echo=lambda text: f"echo: {text}",
            options_trigger="menu",
            backend_session_id=lambda session: session.state[SESSION_KEY],
            fail_next=fake.fail_next,
            schedule_late=None,
        )


# --- credentials and config ------------------------------------------------------

SEED_CREDENTIALS = (
    '{ "type": "service_account","project_id": "kolanator-9600e","private_key_id": '
    '"de59b6b44e99ae45068ac0892a7657d46904bbab","private_key": "-----BEGIN PRIVATE KEY-----\\n'
    'MIIEvgIBADANBgkqhkiG9w0BAQEFAASCBKgwggSkAgEAAoIBAQDBPBzgaldPc9n7\\n-----END PRIVATE KEY-----\\n", '
    '"client_email" : "", "client_id": "112680765748998725783","auth_uri": "","token_uri": "",'
    '"auth_provider_x509_cert_url": "","client_x509_cert_url": "" }'
)


def test_the_seeds_example_is_refused_for_its_key_without_echoing_it() -> None:
    with pytest.raises(ConfigInvalid) as caught:
        parse_service_account(SEED_CREDENTIALS)
    assert caught.value.field == "credentials.private_key"
    assert "MIIEvg" not in str(caught.value) and "MIIEvg" not in json.dumps(caught.value.body())


def test_a_seed_shaped_key_with_empty_uris_is_accepted(account: dict[str, str]) -> None:
    seed_like = {**account, "token_uri": "", "auth_uri": "", "client_x509_cert_url": ""}
    parsed = parse_service_account(json.dumps(seed_like))
    assert parsed.audience == GOOGLE_TOKEN_URL
    assert parsed.project_id == PROJECT


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"type": "authorized_user"}, "credentials.type"),
        ({"project_id": ""}, "credentials.project_id"),
        ({"project_id": "Not A Project"}, "credentials.project_id"),
        ({"private_key": "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n"}, "credentials.private_key"),
        ({"private_key": 42}, "credentials.private_key"),
        ({"client_email": ""}, "credentials.client_email"),
        ({"client_email": "no-at-sign"}, "credentials.client_email"),
        ({"token_uri": "ftp://x"}, "credentials.token_uri"),
    ],
)
def test_bad_credentials_name_their_field(account: dict[str, str], change: dict[str, object], field: str) -> None:
    with pytest.raises(ConfigInvalid) as caught:
        parse_service_account(json.dumps({**account, **change}))
    assert caught.value.field == field
    assert account["private_key"][40:80] not in str(caught.value)


def test_a_non_rsa_key_is_refused(account: dict[str, str]) -> None:
    ec_pem = (
        ec.generate_private_key(ec.SECP256R1())
        .private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
        .decode()
    )
    with pytest.raises(ConfigInvalid) as caught:
        parse_service_account(json.dumps({**account, "private_key": ec_pem}))
    assert caught.value.field == "credentials.private_key"


@pytest.mark.parametrize(
    ("config", "field"),
    [
        ({"language_code": "english please"}, "config.language_code"),
        ({"language_code": 7}, "config.language_code"),
        ({"location": "Europe West"}, "config.location"),
        ({"base_url": "not a url"}, "config.base_url"),
        ({"token_url": "file:///etc/passwd"}, "config.token_url"),
        ({"agent": "../../other"}, "config.agent"),
        ({"platform": "MYSPACE"}, "config.platform"),
        ({"time_zone": "in the afternoon"}, "config.time_zone"),
    ],
)
async def test_bad_config_names_its_key(
    backend: DialogflowBackend, credentials: str, config: dict[str, object], field: str
) -> None:
    with pytest.raises(ConfigInvalid) as caught:
        backend.validate_credentials(credentials, config)
    assert caught.value.field == field


async def test_core_config_keys_and_good_values_pass(backend: DialogflowBackend, credentials: str) -> None:
    backend.validate_credentials(
        credentials,
        {
            "conversation_timeout": 1800.0,
            "rate_limit": 30.0,
            "language_code": "pt-BR",
            "location": "europe-west2",
            "base_url": "https://europe-west2-dialogflow.googleapis.com/",
            "token_url": "https://oauth2.googleapis.com/token",
            "time_zone": "Europe/London",
            "platform": "facebook",
        },
    )


@settings(max_examples=150, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(text=st.one_of(st.text(max_size=200), st.builds(json.dumps, st.dictionaries(st.text(max_size=20), st.text()))))
def test_any_credentials_text_fails_only_with_config_invalid(text: str) -> None:
    try:
        parse_service_account(text)
    except ConfigInvalid as exc:
        assert exc.field.startswith("credentials")
        assert exc.status_code == 422


# --- session ids, urls, bodies -------------------------------------------------


@given(st.text(min_size=1, max_size=300))
def test_session_ids_fit_dialogflow_limits(conversation_id: str) -> None:
    session_id = session_id_for(conversation_id)
    assert 1 <= len(session_id) <= 36
    assert all(c in "0123456789abcdef" for c in session_id)
    assert session_id == session_id_for(conversation_id)


@given(st.lists(st.text(min_size=1, max_size=40), min_size=2, max_size=20, unique=True))
def test_distinct_conversations_get_distinct_sessions(ids: list[str]) -> None:
    assert len({session_id_for(i) for i in ids}) == len(ids)


def test_regional_agents_use_the_regional_host_and_a_locations_path() -> None:
    assert detect_intent_url("p-12345", "s1", parse_settings({"location": "europe-west2"})) == (
        "https://europe-west2-dialogflow.googleapis.com/v2/projects/p-12345/locations/europe-west2"
        "/agent/sessions/s1:detectIntent"
    )
    assert detect_intent_url("p-12345", "s1", parse_settings({})) == (
        "https://dialogflow.googleapis.com/v2/projects/p-12345/agent/sessions/s1:detectIntent"
    )
    assert detect_intent_url("p-12345", "s1", parse_settings({"base_url": "http://fake.test/"})) == (
        "http://fake.test/v2/projects/p-12345/agent/sessions/s1:detectIntent"
    )
    assert detect_intent_url("p-12345", "s1", parse_settings({"agent": "a-1", "location": "us-central1"})) == (
        "https://us-central1-dialogflow.googleapis.com/v3/projects/p-12345/locations/us-central1"
        "/agents/a-1/sessions/s1:detectIntent"
    )


@given(st.text(max_size=600))
def test_truncation_keeps_at_most_256_characters(text: str) -> None:
    cut = truncate_text(text)
    assert len(cut) <= 256 and text.startswith(cut)
    assert cut == text or len(cut) == 256


# --- turns against the fake ------------------------------------------------------


async def test_a_turn_reaches_the_agent_with_language_and_session(
    backend: DialogflowBackend, fake: FakeDialogflow, make_session: SessionFactory
) -> None:
    session = make_session(config={"language_code": "en-GB", "time_zone": "Europe/London"})
    await backend.open(session)
    replies = await backend.send(session, message(session, "  hello  "))
    assert [r.text for r in replies] == ["echo: hello"]
    call = fake.calls[-1]
    assert call.session_id == session.state[SESSION_KEY] == session_id_for(session.conversation_id)
    assert (call.text, call.language_code, call.project_id) == ("hello", "en-GB", PROJECT)
    assert call.body["queryParams"] == {"timeZone": "Europe/London"}
    assert call.host == "dialogflow.googleapis.com"


async def test_long_input_is_truncated_to_what_dialogflow_accepts(
    backend: DialogflowBackend, fake: FakeDialogflow, make_session: SessionFactory
) -> None:
    session = make_session()
    text = "x" * 250 + "abcdefghij"
    replies = await backend.send(session, message(session, text))
    assert fake.calls[-1].text == text[:256]
    assert replies[0].text == f"echo: {text[:256]}"


async def test_a_chosen_option_sends_its_value(
    backend: DialogflowBackend, fake: FakeDialogflow, make_session: SessionFactory
) -> None:
    session = make_session()
    await backend.send(session, message(session, "2", postback="sales"))
    assert fake.calls[-1].text == "sales"


async def test_media_only_messages_send_their_links_and_empty_ones_nothing(
    backend: DialogflowBackend, fake: FakeDialogflow, make_session: SessionFactory
) -> None:
    session = make_session()
    await backend.send(session, message(session, "", media=[Media(url="https://img.test/a.png")]))
    assert fake.calls[-1].text == "https://img.test/a.png"
    assert await backend.send(session, message(session, "   ")) == []
    assert len(fake.calls) == 1


async def test_send_without_open_still_derives_the_session(
    backend: DialogflowBackend, fake: FakeDialogflow, make_session: SessionFactory
) -> None:
    session = make_session()
    await backend.send(session, message(session, "hi"))
    assert fake.sessions == [session_id_for(session.conversation_id)]


async def test_regional_agent_end_to_end(
    clock: FakeClock, key: rsa.RSAPrivateKey, make_session: SessionFactory
) -> None:
    fake = FakeDialogflow(clock)
    info = service_account_info(key, project_id="regional-agent-1")
    fake.register(info, location="europe-west2")
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=fake.app)) as client:
        backend = DialogflowBackend(client, clock)
        session = make_session(json.dumps(info), {"location": "europe-west2"})
        replies = await backend.send(session, message(session, "bonjour"))
        assert replies[0].text == "echo: bonjour"
        assert fake.calls[-1].host == "europe-west2-dialogflow.googleapis.com"
        assert fake.calls[-1].location == "europe-west2"
        # Without the location the global endpoint does not know the agent.
        with pytest.raises(BotError) as caught:
            await backend.send(make_session(json.dumps(info)), message(session, "bonjour"))
        assert caught.value.status_code == 404 and not caught.value.retryable


async def test_base_url_and_token_url_point_at_another_host(
    backend: DialogflowBackend, fake: FakeDialogflow, make_session: SessionFactory
) -> None:
    session = make_session(config={"base_url": "http://fake.test", "token_url": "http://fake.test/token"})
    assert (await backend.send(session, message(session, "hi")))[0].text == "echo: hi"
    assert fake.calls[-1].host == "fake.test"


async def test_cx_agents(backend: DialogflowBackend, fake: FakeDialogflow, make_session: SessionFactory) -> None:
    fake.add_cx_agent(PROJECT, "global", "0b4e7a1c-agent")
    session = make_session(config={"agent": "0b4e7a1c-agent", "language_code": "en"})
    await backend.open(session)
    assert [r.text for r in await backend.send(session, message(session, "hi"))] == ["echo: hi"]
    call = fake.calls[-1]
    assert (call.api, call.agent, call.location) == ("v3", "0b4e7a1c-agent", "global")
    assert call.body == {"queryInput": {"text": {"text": "hi"}, "languageCode": "en"}}
    replies = await backend.send(session, message(session, "menu"))
    assert [(o.label, o.value) for r in replies for o in r.options] == [("Billing", "Billing"), ("Sales", "Sales")]


# --- tokens ----------------------------------------------------------------------


def _decode(segment: str) -> dict[str, object]:
    return json.loads(base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4)))


async def test_the_grant_is_a_google_jwt_and_the_token_is_cached(
    backend: DialogflowBackend, fake: FakeDialogflow, make_session: SessionFactory, clock: FakeClock
) -> None:
    session = make_session()
    for text in ("one", "two", "three"):
        await backend.send(session, message(session, text))
    assert len(fake.token_grants) == 1
    grant = fake.token_grants[0]
    assert grant["iss"] == EMAIL
    assert grant["aud"] == GOOGLE_TOKEN_URL  # the key's token_uri is empty
    assert grant["scope"] == "https://www.googleapis.com/auth/cloud-platform"
    assert grant["iat"] == int(clock.now()) and grant["exp"] == int(clock.now()) + 3600


async def test_tokens_are_refreshed_before_they_expire(
    backend: DialogflowBackend, fake: FakeDialogflow, make_session: SessionFactory, clock: FakeClock
) -> None:
    session = make_session()
    await backend.send(session, message(session, "one"))
    clock.advance(3600 - REFRESH_MARGIN - 1)
    await backend.send(session, message(session, "two"))
    assert len(fake.token_grants) == 1
    clock.advance(2)
    await backend.send(session, message(session, "three"))
    assert len(fake.token_grants) == 2


async def test_concurrent_conversations_share_one_refresh(
    backend: DialogflowBackend, fake: FakeDialogflow, make_session: SessionFactory
) -> None:
    sessions = [make_session() for _ in range(20)]
    results = await asyncio.gather(*(backend.send(s, message(s, f"hi {i}")) for i, s in enumerate(sessions)))
    assert [r[0].text for r in results] == [f"echo: hi {i}" for i in range(20)]
    assert len(fake.token_grants) == 1
    assert len(set(fake.sessions)) == 20


async def test_a_revoked_token_is_replaced_once(
    backend: DialogflowBackend, fake: FakeDialogflow, make_session: SessionFactory
) -> None:
    session = make_session()
    await backend.send(session, message(session, "one"))
    fake.revoke_tokens()
    assert (await backend.send(session, message(session, "two")))[0].text == "echo: two"
    assert len(fake.token_grants) == 2


async def test_a_401_that_persists_is_a_credentials_error(
    backend: DialogflowBackend, fake: FakeDialogflow, make_session: SessionFactory
) -> None:
    session = make_session()
    fake.fail_next(401)
    fake.fail_next(401)
    with pytest.raises(BotCredentialsInvalid):
        await backend.send(session, message(session, "one"))


async def test_same_account_with_another_key_does_not_reuse_the_cached_token(
    backend: DialogflowBackend,
    fake: FakeDialogflow,
    make_session: SessionFactory,
    account: dict[str, str],
    other_key: rsa.RSAPrivateKey,
) -> None:
    await backend.send(make_session(), message(make_session(), "warm the cache"))
    forged = {**account, "private_key": service_account_info(other_key)["private_key"]}
    session = make_session(json.dumps(forged))
    with pytest.raises(BotCredentialsInvalid) as caught:
        await backend.send(session, message(session, "hello"))
    assert "Invalid JWT Signature" in str(caught.value)
    assert fake.token_refusals == ["Invalid JWT Signature."]


async def test_token_endpoint_outage_is_retryable(
    backend: DialogflowBackend, fake: FakeDialogflow, make_session: SessionFactory
) -> None:
    for _ in range(5):
        fake.fail_next_token(503)
    session = make_session()
    with pytest.raises(BotError) as caught:
        await backend.send(session, message(session, "hello"))
    assert caught.value.retryable and not isinstance(caught.value, BotCredentialsInvalid)
    # The outage over, the next turn works.
    assert (await backend.send(session, message(session, "again")))[0].text == "echo: again"


async def test_unparseable_stored_credentials_are_a_credentials_error(
    backend: DialogflowBackend, make_session: SessionFactory
) -> None:
    session = make_session("{not json")
    with pytest.raises(BotCredentialsInvalid):
        await backend.send(session, message(session, "hello"))


# --- errors from detectIntent ---------------------------------------------------


async def test_403_is_a_credentials_error(
    backend: DialogflowBackend, fake: FakeDialogflow, make_session: SessionFactory
) -> None:
    session = make_session()
    fake.fail_next(403)
    with pytest.raises(BotCredentialsInvalid) as caught:
        await backend.send(session, message(session, "hello"))
    assert caught.value.status_code == 403


async def test_400_is_final_and_carries_googles_message(
    backend: DialogflowBackend, fake: FakeDialogflow, make_session: SessionFactory
) -> None:
    session = make_session(config={"language_code": "fr"})  # the agent speaks English only
    with pytest.raises(BotError) as caught:
        await backend.send(session, message(session, "bonjour"))
    assert not caught.value.retryable and caught.value.status_code == 400
    assert str(caught.value) == "Dialogflow answered 400: INVALID_ARGUMENT: Agent does not support language 'fr'."
    assert len(fake.calls) == 0


async def test_429_is_retried_after_retry_after(
    http: httpx.AsyncClient, fake: FakeDialogflow, make_session: SessionFactory, clock: FakeClock
) -> None:
    backend = DialogflowBackend(http, clock, retry_policy=RetryPolicy(attempts=2, base=0.0, cap=30.0))
    session = make_session()
    fake.fail_next(429, retry_after=7)
    turn = asyncio.create_task(backend.send(session, message(session, "hello")))
    for _ in range(200):
        if clock.sleepers:
            break
        await asyncio.sleep(0.001)
    assert clock.sleepers == 1 and not turn.done()
    clock.advance(6.9)
    await asyncio.sleep(0.01)
    assert not turn.done()
    clock.advance(0.2)
    assert (await turn)[0].text == "echo: hello"


@pytest.mark.parametrize("status", [500, 503, 504])
async def test_detect_intent_is_not_repeated_after_a_5xx_it_is_not_idempotent(
    backend: DialogflowBackend, fake: FakeDialogflow, make_session: SessionFactory, status: int
) -> None:
    session = make_session()
    fake.fail_next(status)
    with pytest.raises(BotError) as caught:
        await backend.send(session, message(session, "hello"))
    assert fake.received == 1
    assert caught.value.outcome_unknown and not backend.safe_to_retry(caught.value)


async def test_a_429_burst_is_absorbed_it_proves_nothing_was_processed(
    backend: DialogflowBackend, fake: FakeDialogflow, make_session: SessionFactory
) -> None:
    session = make_session()
    fake.fail_next(429)
    fake.fail_next(429)
    assert (await backend.send(session, message(session, "hello")))[0].text == "echo: hello"
    assert fake.received == 3


async def test_an_environment_sends_es_traffic_to_the_published_agent(
    backend: DialogflowBackend, fake: FakeDialogflow, make_session: SessionFactory
) -> None:
    fake.draft_traffic = False  # the fake refuses draft traffic: the old path fails here
    session = make_session(config={"environment": "production"})
    assert (await backend.send(session, message(session, "hello")))[0].text == "echo: hello"
    assert fake.calls[-1].environment == "production"
    regional = parse_settings({"environment": "production", "location": "europe-west1"})
    assert f"/v2/projects/{PROJECT}/locations/europe-west1/agent/environments/production/users/-/sessions/s:" in (
        detect_intent_url(PROJECT, "s", regional)
    )


def test_a_cx_environment_is_in_the_session_path_and_bad_ids_are_refused() -> None:
    agent = "0b5c8a0e-1a2b-4c3d-9e8f-0123456789ab"
    settings = parse_settings({"agent": agent, "environment": "e-1", "location": "global"})
    assert detect_intent_url("p", "s", settings).endswith(
        f"/v3/projects/p/locations/global/agents/{agent}/environments/e-1/sessions/s:detectIntent"
    )
    with pytest.raises(ConfigInvalid) as caught:
        parse_settings({"environment": "../draft"})
    assert caught.value.field == "config.environment"


async def test_non_json_answer_is_a_retryable_error(make_session: SessionFactory, clock: FakeClock) -> None:
    async def handler(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/token":
            return httpx.Response(200, json={"access_token": "t", "expires_in": 3600})
        return httpx.Response(200, text="<html>proxy</html>")

    async with httpx.AsyncClient(transport=httpx.MockTransport(handler)) as client:
        backend = DialogflowBackend(client, clock)
        session = make_session()
        with pytest.raises(BotError) as caught:
            await backend.send(session, message(session, "hello"))
        assert caught.value.retryable


def test_the_jwt_audience_is_googles_token_url_whatever_the_key_file_says() -> None:
    from botbridge_dialogflow.auth import sign_assertion

    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    info = service_account_info(key, token_uri="https://accounts.google.com/o/oauth2/token")
    account = parse_service_account(json.dumps(info))
    payload = sign_assertion(account, key, 1_700_000_000).split(".")[1]
    claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    assert claims["aud"] == GOOGLE_TOKEN_URL == "https://oauth2.googleapis.com/token"


async def test_cx_sends_the_configured_channel_in_query_params() -> None:
    from botbridge_dialogflow.bot import request_body

    settings = parse_settings({"agent": "0b5c8a0e-1a2b-4c3d-9e8f-0123456789ab", "channel": "sms"})
    assert request_body("hi", settings)["queryParams"] == {"channel": "sms"}
    with pytest.raises(ConfigInvalid) as caught:
        parse_settings({"channel": "sms"})
    assert caught.value.field == "config.channel"
