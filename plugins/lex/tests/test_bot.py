"""The Lex backend against the strict fake: turns, sessions, rich content, errors, credentials."""

from __future__ import annotations

import json
import re
from typing import Any

import anyio
import httpx
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from botbridge import BotCredentialsInvalid, BotError, ConfigInvalid, FakeClock, InboundMessage, Reply
from botbridge.http import RetryPolicy
from botbridge_lex import LexBot, replies_from_v1, replies_from_v2, session_id_for
from botbridge_lex.model import check_request, service_model
from botbridge_lex.testing import SECRET_KEY, FakeLex, fake_credentials

from .conftest import NO_WAIT, make_session

pytestmark = pytest.mark.anyio

SEED_CREDENTIALS = (
    '{"accessKeyId":"AKIB236OJSYDXOYS44UW","secretKey":"Qh6nZHoFcVZ+bAp/LTsLUn3FEXeM8CTH6HlQg4vE",'
    '"region":"us-east-1","bot":{"name":"TestGreeter","alias":"Testing"}}'
)
LEX_ID = re.compile(r"^[0-9a-zA-Z._:-]{2,100}$")


def mo(text: str = "", postback: str | None = None) -> InboundMessage:
    return InboundMessage(
        channel="test",
        sender_id="sender-1",
        provider_message_id="m",
        contact="+15551234567",
        text=text,
        postback=postback,
    )


def texts(replies: list[Reply]) -> list[str]:
    return [r.text for r in replies]


# --- turns and sessions ---------------------------------------------------------


@pytest.mark.parametrize("api", ["v1", "v2"])
async def test_session_attributes_round_trip(bot: LexBot, fake: FakeLex, api: str) -> None:
    session = make_session(api=api)
    await bot.open(session)
    for text in ("one", "two", "three"):
        assert texts(await bot.send(session, mo(text))) == [f"echo: {text}"]
    assert session.state["session_attributes"] == {"turns": "3"}
    sent = fake.requests[-1].body
    attributes = sent["sessionAttributes"] if api == "v1" else sent["sessionState"]["sessionAttributes"]
    assert attributes == {"turns": "2"}
    assert json.loads(json.dumps(session.state)) == session.state


@pytest.mark.parametrize("api", ["v1", "v2"])
async def test_session_id_is_valid_stable_and_free_of_the_phone_number(bot: LexBot, fake: FakeLex, api: str) -> None:
    session = make_session(api=api)
    await bot.open(session)
    await bot.send(session, mo("a"))
    await bot.send(session, mo("b"))
    ids = {r.session_id for r in fake.requests}
    assert ids == {session.state["session_id"]}
    (session_id,) = ids
    assert LEX_ID.match(session_id)
    assert "5551234567" not in session_id


async def test_send_without_open_still_gets_a_session(bot: LexBot, fake: FakeLex) -> None:
    session = make_session()
    assert texts(await bot.send(session, mo("hi"))) == ["echo: hi"]
    assert fake.requests[0].session_id == session.state["session_id"]


async def test_postback_is_sent_instead_of_the_text_and_long_text_is_cut(bot: LexBot, fake: FakeLex) -> None:
    session = make_session()
    await bot.send(session, mo("2", postback="sales"))
    assert fake.requests[-1].body["text"] == "sales"
    await bot.send(session, mo("x" * 1500))
    assert len(fake.requests[-1].body["text"]) == 1024


async def test_empty_text_makes_no_call(bot: LexBot, fake: FakeLex) -> None:
    assert await bot.send(make_session(), mo("   ")) == []
    assert fake.requests == []


async def test_request_attributes_from_config(bot: LexBot, fake: FakeLex) -> None:
    session = make_session(request_attributes={"channel": "sms"})
    await bot.send(session, mo("hi"))
    assert fake.requests[-1].body["requestAttributes"] == {"channel": "sms"}


async def test_signature_is_dated_by_the_injected_clock(bot: LexBot, fake: FakeLex, clock: FakeClock) -> None:
    clock.advance(86400 * 400)  # the fake shares the clock: a year on, still inside the window
    session = make_session()
    assert texts(await bot.send(session, mo("hi"))) == ["echo: hi"]
    assert fake.requests[-1].headers["x-amz-date"] == "20241218T221320Z"
    assert "content-type" in fake.requests[-1].headers["authorization"]


async def test_signature_from_another_clock_is_expired(http: httpx.AsyncClient, fake: FakeLex) -> None:
    late_bot = LexBot(http, FakeClock(start=1_700_000_000.0 - 600), retry_policy=NO_WAIT)
    with pytest.raises(BotCredentialsInvalid, match="Signature expired"):
        await late_bot.send(make_session(), mo("hi"))


# --- rich content -----------------------------------------------------------------


@pytest.mark.parametrize("api", ["v1", "v2"])
async def test_response_card_becomes_options(bot: LexBot, api: str) -> None:
    replies = await bot.send(make_session(api=api), mo("options"))
    assert texts(replies) == ["What can we help you with?", "Choose a topic"]
    assert [(o.label, o.value) for o in replies[1].options] == [("Billing", "billing"), ("Sales", "sales")]


@pytest.mark.parametrize("api", ["v1", "v2"])
async def test_card_image_becomes_media(bot: LexBot, api: str) -> None:
    replies = await bot.send(make_session(api=api), mo("picture"))
    assert replies[1].text == "Our shop\nOpen 9-5"
    assert [(m.url, m.caption) for m in replies[1].media] == [("https://example.com/shop.png", "Our shop")]


@pytest.mark.parametrize("api", ["v1", "v2"])
async def test_several_messages_become_several_replies(bot: LexBot, api: str) -> None:
    assert texts(await bot.send(make_session(api=api), mo("composite"))) == ["First part.", "Second part."]


def test_v1_message_formats() -> None:
    assert texts(replies_from_v1({"message": "<speak>Hi <break/>there</speak>", "messageFormat": "SSML"})) == [
        "Hi there"
    ]
    custom = {"message": json.dumps({"text": "from payload", "x": 1}), "messageFormat": "CustomPayload"}
    assert texts(replies_from_v1(custom)) == ["from payload"]
    assert replies_from_v1({"message": json.dumps([1, 2]), "messageFormat": "CustomPayload"}) == []
    composite = {
        "messageFormat": "Composite",
        "message": json.dumps(
            {
                "messages": [
                    {"type": "PlainText", "group": 1, "value": "a"},
                    {"type": "CustomPayload", "group": 2, "value": '{"text": "b"}'},
                ]
            }
        ),
    }
    assert texts(replies_from_v1(composite)) == ["a", "b"]
    assert replies_from_v1({"message": "not json", "messageFormat": "Composite"}) == []


def test_v2_card_without_image_or_buttons_and_unsafe_image_url() -> None:
    data = {
        "messages": [
            {"contentType": "ImageResponseCard", "imageResponseCard": {"title": "T", "imageUrl": "javascript:x"}},
            {"contentType": "PlainText"},
            "junk",
        ]
    }
    replies = replies_from_v2(data)
    assert [(r.text, r.media, r.options) for r in replies] == [("T", [], [])]


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=20),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=12), children, max_size=5),
    max_leaves=20,
)
keys_v1 = st.sampled_from(["message", "messageFormat", "responseCard", "sessionAttributes", "x"])
keys_v2 = st.sampled_from(["messages", "sessionState", "contentType", "imageResponseCard", "buttons", "content"])


@settings(max_examples=200, deadline=None)
@given(data=json_values | st.dictionaries(keys_v1 | keys_v2, json_values, max_size=5))
def test_parsers_never_fail_on_outside_input(data: Any) -> None:
    for parse in (replies_from_v1, replies_from_v2):
        for reply in parse(data):
            assert reply.text or reply.media or reply.options
            assert all(o.label and o.value for o in reply.options)


button_text = st.text(alphabet=st.characters(categories=("L", "N")), min_size=1, max_size=15)


@settings(max_examples=100, deadline=None)
@given(
    title=button_text,
    buttons=st.lists(st.tuples(button_text, button_text), max_size=5),
    plain=st.lists(button_text, max_size=3),
)
def test_v2_messages_map_one_to_one(title: str, buttons: list[tuple[str, str]], plain: list[str]) -> None:
    card = {"title": title, "buttons": [{"text": t, "value": v} for t, v in buttons]}
    data = {
        "messages": [{"contentType": "PlainText", "content": p} for p in plain]
        + [{"contentType": "ImageResponseCard", "imageResponseCard": card}]
    }
    replies = replies_from_v2(data)
    assert texts(replies) == [*plain, title]
    assert [(o.label, o.value) for o in replies[-1].options] == buttons


@settings(max_examples=200, deadline=None)
@given(connector=st.text(max_size=64), first=st.text(max_size=64), second=st.text(max_size=64))
def test_session_ids_are_valid_and_distinct(connector: str, first: str, second: str) -> None:
    a, b = session_id_for(connector, first), session_id_for(connector, second)
    assert LEX_ID.match(a) and LEX_ID.match(b)
    assert (a == b) == (first == second)


# --- errors -------------------------------------------------------------------------


@pytest.mark.parametrize("api", ["v1", "v2"])
@pytest.mark.parametrize("code", [None, "UnrecognizedClientException", "InvalidSignatureException"])
async def test_403_is_credentials_invalid(bot: LexBot, fake: FakeLex, api: str, code: str | None) -> None:
    fake.fail_next(403, code)
    with pytest.raises(BotCredentialsInvalid) as caught:
        await bot.send(make_session(api=api), mo("hi"))
    assert "retired" not in str(caught.value)
    assert len(fake.requests) == 1


async def test_wrong_secret_never_appears_in_the_error(bot: LexBot) -> None:
    credentials = fake_credentials(secret="my-very-own-secret-value")
    with pytest.raises(BotCredentialsInvalid) as caught:
        await bot.send(make_session(credentials), mo("hi"))
    assert "InvalidSignatureException" in str(caught.value)
    assert "my-very-own-secret-value" not in str(caught.value)
    assert SECRET_KEY not in str(caught.value)


async def test_throttling_and_conflicts_are_retried_then_succeed(bot: LexBot, fake: FakeLex) -> None:
    fake.fail_next(429)
    fake.fail_next(409)  # ConflictException: another call on the session was in progress
    assert texts(await bot.send(make_session(), mo("hi"))) == ["echo: hi"]
    assert len(fake.requests) == 3


@pytest.mark.parametrize("status", [500, 502, 424])
async def test_a_turn_is_not_repeated_after_a_failure_that_may_have_run_it(
    bot: LexBot, fake: FakeLex, status: int
) -> None:
    fake.fail_next(status)
    with pytest.raises(BotError) as caught:
        await bot.send(make_session(), mo("hi"))
    assert len(fake.requests) == 1
    if status != 424:  # DependencyFailed is final (the bot's Lambda failed)
        assert caught.value.outcome_unknown
    assert not bot.safe_to_retry(caught.value)


async def test_confirm_intent_from_the_fake_offers_yes_and_no(bot: LexBot) -> None:
    (reply,) = await bot.send(make_session(), mo("confirm"))
    assert reply.text == "Book it for Friday?"
    assert [(o.label, o.value) for o in reply.options] == [("Yes", "yes"), ("No", "no")]
    assert "end" not in reply.signals


async def test_close_from_the_fake_ends_the_conversation(bot: LexBot) -> None:
    replies = await bot.send(make_session(), mo("hi"))
    assert replies[-1].signals == ["end"]


@pytest.mark.parametrize("api", ["v1", "v2"])
@pytest.mark.parametrize(("trigger", "expected"), [("payload", "From the payload"), ("ssml", "Hello there")])
async def test_custom_payload_and_ssml_from_the_fake(bot: LexBot, api: str, trigger: str, expected: str) -> None:
    assert texts(await bot.send(make_session(api=api), mo(trigger))) == [expected]


async def test_lone_surrogates_are_sent_as_replacement_characters(bot: LexBot, fake: FakeLex) -> None:
    # JSON from a channel may carry half of an emoji ("\ud83d"): not encodable as UTF-8 as is.
    session = make_session()
    session.state.update(api="v2", session_id="bb.1", session_attributes={"k\udc00": "v\ud83d"})
    assert texts(await bot.send(session, mo("hi \ud83d"))) == ["echo: hi \ufffd"]
    assert fake.requests[-1].body["sessionState"]["sessionAttributes"]["k\ufffd"] == "v\ufffd"


def test_a_custom_payload_that_is_not_json_is_never_shown_as_is() -> None:
    data = {"messages": [{"contentType": "CustomPayload", "content": "<speak cmd='open'/>"}]}
    assert replies_from_v2(data) == []
    assert replies_from_v1({"message": "raw-app-command", "messageFormat": "CustomPayload"}) == []


async def test_china_regions_use_the_amazonaws_com_cn_endpoints(fake: FakeLex) -> None:
    urls: list[str] = []

    def handler(request: httpx.Request) -> httpx.Response:
        urls.append(str(request.url))
        return httpx.Response(200, json={"messages": [{"contentType": "PlainText", "content": "ok"}]})

    async with httpx.AsyncClient(transport=httpx.MockTransport(handler)) as http:
        bot = LexBot(http, FakeClock(), retry_policy=NO_WAIT)
        session = make_session(fake_credentials(region="cn-north-1"))
        session.connector.config.pop("base_url")
        await bot.send(session, mo("hi"))
    assert urls[0].startswith("https://runtime-v2-lex.cn-north-1.amazonaws.com.cn/bots/")


async def test_throttling_past_the_budget_is_retryable(bot: LexBot, fake: FakeLex) -> None:
    for _ in range(3):
        fake.fail_next(429)
    with pytest.raises(BotError) as caught:
        await bot.send(make_session(), mo("hi"))
    assert caught.value.retryable and caught.value.status_code == 429
    assert "ThrottlingException" in str(caught.value)
    assert len(fake.requests) == 3


async def test_retry_after_is_honoured_on_the_clock(http: httpx.AsyncClient, fake: FakeLex, clock: FakeClock) -> None:
    bot = LexBot(http, clock, retry_policy=RetryPolicy(attempts=2, base=0.0, cap=30.0))
    fake.fail_next(429, retry_after=7)
    result: list[list[Reply]] = []
    async with anyio.create_task_group() as tg:

        async def turn() -> None:
            result.append(await bot.send(make_session(), mo("hi")))

        tg.start_soon(turn)
        for _ in range(5000):  # until the retry sleeps on the fake clock
            if clock.sleepers:
                break
            await anyio.sleep(0.001)
        assert clock.sleepers == 1
        clock.advance(6.9)
        await anyio.sleep(0.01)
        assert not result
        clock.advance(0.1)
    assert texts(result[0]) == ["echo: hi"]


async def test_validation_error_is_final_with_aws_code(bot: LexBot, fake: FakeLex) -> None:
    fake.fail_next(400)
    with pytest.raises(BotError) as caught:
        await bot.send(make_session(), mo("hi"))
    assert not caught.value.retryable
    assert str(caught.value).startswith("Lex RecognizeText answered 400 ValidationException: Scripted failure")
    assert len(fake.requests) == 1


@pytest.mark.parametrize("status", [404, 410, 400, 503])
async def test_v1_failures_say_v1_is_retired(bot: LexBot, fake: FakeLex, status: int) -> None:
    for _ in range(3):
        fake.fail_next(status)
    with pytest.raises(BotError) as caught:
        await bot.send(make_session(api="v1"), mo("hi"))
    message = str(caught.value)
    assert "Lex V1 reached end of support" in message and '"aliasId"' in message and '"localeId"' in message
    assert f"answered {status}" in message
    assert caught.value.retryable == (status == 503)
    assert not isinstance(caught.value, BotCredentialsInvalid)


async def test_v2_not_found_does_not_mention_v1(bot: LexBot, fake: FakeLex) -> None:
    credentials = json.loads(fake_credentials())
    credentials["bot"]["aliasId"] = "OTHERALIAS"
    with pytest.raises(BotError) as caught:
        await bot.send(make_session(json.dumps(credentials)), mo("hi"))
    assert "ResourceNotFoundException" in str(caught.value)
    assert "V1" not in str(caught.value)


async def test_transport_errors_and_bad_bodies(clock: FakeClock) -> None:
    def unreachable(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("refused", request=request)

    async with httpx.AsyncClient(transport=httpx.MockTransport(unreachable)) as http:
        with pytest.raises(BotError) as caught:
            await LexBot(http, clock, retry_policy=NO_WAIT).send(make_session(), mo("hi"))
        assert caught.value.retryable

    async with httpx.AsyncClient(transport=httpx.MockTransport(lambda r: httpx.Response(200, text="["))) as http:
        with pytest.raises(BotError, match="not a JSON object") as caught:
            await LexBot(http, clock, retry_policy=NO_WAIT).send(make_session(), mo("hi"))
        assert not caught.value.retryable


@pytest.mark.parametrize(
    ("api", "host", "path"),
    [
        ("v2", "runtime-v2-lex.eu-west-1.amazonaws.com", "/bots/BOTID12345/botAliases/TSTALIASID/botLocales/en_US/"),
        ("v1", "runtime.lex.eu-west-1.amazonaws.com", "/bot/TestGreeter/alias/Testing/user/"),
    ],
)
async def test_regional_host_without_base_url(clock: FakeClock, api: str, host: str, path: str) -> None:
    seen: list[httpx.Request] = []

    def answer(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(200, json={"messages": []} if api == "v2" else {"dialogState": "Fulfilled"})

    session = make_session(fake_credentials(api, region="eu-west-1"), api)
    session.connector.config.pop("base_url")
    async with httpx.AsyncClient(transport=httpx.MockTransport(answer)) as http:
        assert await LexBot(http, clock).send(session, mo("hi")) == []
    (request,) = seen
    assert request.url.scheme == "https" and request.url.host == host
    service = service_model("lexv2-runtime" if api == "v2" else "lex-runtime")
    assert host.startswith(service.endpoint_prefix + ".")
    target = request.url.raw_path.decode()
    assert check_request(api, request.method, target, dict(request.headers), request.content).errors == []
    assert request.url.path.startswith(path)
    assert "/eu-west-1/lex/aws4_request" in request.headers["authorization"]
    field = "text" if api == "v2" else "inputText"
    assert request.content == json.dumps({field: "hi"}, separators=(",", ":")).encode()


# --- credentials validation ---------------------------------------------------------


# Validation makes no call: an unused client is enough.
VALIDATOR = LexBot(httpx.AsyncClient(), FakeClock())


def test_seed_credentials_are_valid() -> None:
    VALIDATOR.validate_credentials(SEED_CREDENTIALS, {})
    VALIDATOR.validate_credentials(fake_credentials("v2"), {"base_url": "http://lex.fake"})


def _with(**changes: Any) -> str:
    data = json.loads(fake_credentials("v2"))
    for key, value in changes.items():
        if value is None:
            data.pop(key)
        else:
            data[key] = value
    return json.dumps(data)


@pytest.mark.parametrize(
    ("credentials", "field"),
    [
        ("[]", "credentials"),
        ("not json", "credentials"),
        (_with(accessKeyId=None), "credentials.accessKeyId"),
        (_with(accessKeyId="short"), "credentials.accessKeyId"),
        (_with(secretKey=""), "credentials.secretKey"),
        (_with(region="mars"), "credentials.region"),
        (_with(region=None), "credentials.region"),
        (_with(bot=None), "credentials.bot"),
        (_with(bot={}), "credentials.bot.aliasId"),
        (_with(bot={"id": "BOTID12345", "localeId": "en_US"}), "credentials.bot.aliasId"),
        (_with(bot={"id": "short", "aliasId": "TSTALIASID", "localeId": "en_US"}), "credentials.bot.id"),
        # a pasted id with its newline: `$` alone would let it through, and Lex refuses it
        (_with(bot={"id": "BOTID12345\n", "aliasId": "TSTALIASID", "localeId": "en_US"}), "credentials.bot.id"),
        (_with(bot={"id": "BOTID12345", "aliasId": "TSTALIASID", "localeId": "en_US\n"}), "credentials.bot.localeId"),
        (_with(bot={"id": "BOTID12345", "aliasId": "TSTALIASID", "localeId": "english"}), "credentials.bot.localeId"),
        (_with(bot={"name": "TestGreeter"}), "credentials.bot.alias"),
        (_with(bot={"name": "Test/Greeter", "alias": "x"}), "credentials.bot.name"),
    ],
)
def test_invalid_credentials_name_the_field(credentials: str, field: str) -> None:
    with pytest.raises(ConfigInvalid) as caught:
        VALIDATOR.validate_credentials(credentials, {})
    assert caught.value.field == field
    assert SECRET_KEY not in str(caught.value)


@pytest.mark.parametrize(
    "config",
    [
        {"base_url": "ftp://x"},
        {"base_url": "lex.fake"},
        {"base_url": 3},
        {"request_attributes": {"a": 1}},
        {"request_attributes": {"": "x"}},  # RecognizeText refuses empty keys
    ],
)
def test_invalid_config(config: dict[str, Any]) -> None:
    with pytest.raises(ConfigInvalid) as caught:
        VALIDATOR.validate_credentials(fake_credentials(), config)
    assert caught.value.field.startswith("config.")


@settings(max_examples=200, deadline=None)
@given(
    data=st.dictionaries(
        st.sampled_from(["accessKeyId", "secretKey", "region", "bot", "x"]),
        json_values | st.dictionaries(st.sampled_from(["id", "aliasId", "localeId", "name", "alias"]), json_values),
    )
)
def test_credentials_validation_only_raises_config_invalid(data: dict[str, Any]) -> None:
    data.setdefault("secretKey", "s3cr3t-value-never-shown")
    try:
        VALIDATOR.validate_credentials(json.dumps(data), {})
    except ConfigInvalid as exc:
        assert "s3cr3t-value-never-shown" not in str(exc)


def test_confirm_intent_offers_yes_and_no_and_close_ends_the_conversation() -> None:
    question = [{"contentType": "PlainText", "content": "Book it for Friday?"}]
    confirm = {"messages": question, "sessionState": {"dialogAction": {"type": "ConfirmIntent"}}}
    (reply,) = replies_from_v2(confirm)
    assert reply.text == "Book it for Friday?"
    assert [(o.label, o.value) for o in reply.options] == [("Yes", "yes"), ("No", "no")]
    done = [{"contentType": "PlainText", "content": "Booked."}]
    closed = {"messages": done, "sessionState": {"dialogAction": {"type": "Close"}}}
    assert replies_from_v2(closed) == [Reply(text="Booked.", signals=["end"])]
    assert replies_from_v2({"sessionState": {"dialogAction": {"type": "Close"}}}) == [Reply(signals=["end"])]
    elicit = {"messages": question, "sessionState": {"dialogAction": {"type": "ElicitSlot"}}}
    assert replies_from_v2(elicit) == [Reply(text="Book it for Friday?")]


# --- hand-off to a person -----------------------------------------------------------


@pytest.mark.parametrize("api", ["v1", "v2"])
async def test_a_configured_intent_hands_the_conversation_off(bot: LexBot, fake: FakeLex, api: str) -> None:
    session = make_session(api=api, handoff_intents=["BookTable"])
    await bot.open(session)
    replies = await bot.send(session, mo("confirm"))  # the fake's BookTable intent
    assert replies[0].text == "Book it for Friday?" and replies[-1].signals == ["handoff"]
    assert all("handoff" not in r.signals for r in await bot.send(session, mo("hello")))  # Echo does not


def test_a_session_attribute_hands_off_when_true() -> None:
    from botbridge_lex.bot import asks_handoff

    config = {"handoff_attribute": "agent"}
    v2 = {"sessionState": {"intent": {"name": "Help"}, "sessionAttributes": {"agent": "True"}}}
    assert asks_handoff(v2, config)
    assert not asks_handoff({"sessionState": {"sessionAttributes": {"agent": "no"}}}, config)
    assert asks_handoff({"intentName": "Help", "sessionAttributes": {"agent": "true"}}, config)  # V1
    assert not asks_handoff({"intentName": "Help", "sessionAttributes": {"agent": "true"}}, {})
    assert asks_handoff({"intentName": "Human"}, {"handoff_intents": ["Human"]})
    assert not asks_handoff("not an answer", config)


@pytest.mark.parametrize(
    "config, field",
    [({"handoff_intents": "Human"}, "config.handoff_intents"), ({"handoff_attribute": 3}, "config.handoff_attribute")],
)
async def test_hand_off_settings_are_checked(bot: LexBot, config: dict[str, Any], field: str) -> None:
    with pytest.raises(ConfigInvalid) as caught:
        bot.validate_credentials(fake_credentials("v2"), config)
    assert caught.value.field == field
