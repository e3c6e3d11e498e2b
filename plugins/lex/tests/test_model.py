"""botocore's Lex service models as the oracle: of the plugin's requests, of the fake, of the parsers."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from botbridge import ConfigInvalid, FakeClock, InboundMessage
from botbridge_lex import LexBot, parse_credentials, replies_from_v1, replies_from_v2
from botbridge_lex.bot import signed_headers
from botbridge_lex.model import (
    RequestCheck,
    check_request,
    model_examples,
    model_source,
    operation_model,
    response_errors,
    shape_errors,
)
from botbridge_lex.testing import FAKE_BASE_URL, V1_BOT, V2_BOT, Exchange, FakeLex, fake_credentials

from .conftest import NO_WAIT, make_session, model_problems
from .test_bot import VALIDATOR
from .test_fake import call

pytestmark = pytest.mark.anyio

README = Path(__file__).resolve().parents[1] / "README.md"
WHEN = datetime(2024, 1, 1, tzinfo=UTC)
DEFAULT_BODY: dict[str, dict[str, Any]] = {"v2": {"text": "hi"}, "v1": {"inputText": "hi"}}


def path_for(api: str, session: str = "s-1", *, encode: bool = True) -> str:
    user = quote(session, safe="") if encode else session
    if api == "v1":
        return f"/bot/{V1_BOT['name']}/alias/{V1_BOT['alias']}/user/{user}/text"
    return f"/bots/{V2_BOT['id']}/botAliases/{V2_BOT['aliasId']}/botLocales/{V2_BOT['localeId']}/sessions/{user}/text"


def check(
    api: str = "v2",
    *,
    method: str = "POST",
    path: str | None = None,
    body: Any = None,
    raw: bytes | None = None,
    headers: dict[str, str] | None = None,
) -> RequestCheck:
    """The oracle's verdict on one signed request built like the plugin builds it, with one thing changed."""
    target = path if path is not None else path_for(api)
    content = raw if raw is not None else json.dumps(DEFAULT_BODY[api] if body is None else body).encode()
    signed = signed_headers(parse_credentials(fake_credentials(api)), FAKE_BASE_URL + target, content, WHEN)
    return check_request(api, method, target, {**signed, **(headers or {})}, content)


# --- the oracle refuses what Lex's model refuses -------------------------------------------

WRONG_REQUESTS: list[tuple[str, dict[str, Any], str]] = [
    ("v2", {"body": {"text": "hi", "locale": "en"}}, 'Unknown parameter in body: "locale"'),
    # a body key named like a URI member must not pass as that member
    ("v2", {"body": {"text": "hi", "sessionId": "s-2"}}, 'Unknown parameter in body: "sessionId"'),
    ("v2", {"path": path_for("v2", "+15551234567")}, "'sessionId' failed to satisfy constraint: Member must satisfy"),
    ("v2", {"path": path_for("v2", "x")}, "sessionId, value: 1, valid min length: 2"),
    ("v2", {"path": path_for("v2", "a" * 101)}, "'sessionId' failed to satisfy constraint: Member must have length"),
    ("v2", {"path": path_for("v2").replace("BOTID12345", "BOTID1234")}, "botId, value: 9, valid min length: 10"),
    ("v2", {"path": path_for("v2").replace("BOTID12345", "BOTID-1234")}, "at 'botId' failed to satisfy"),
    ("v2", {"body": {}}, 'Missing required parameter in input: "text"'),
    ("v2", {"body": {"text": ""}}, "text, value: 0, valid min length: 1"),
    ("v2", {"body": {"text": "x" * 1025}}, "'text' failed to satisfy constraint: Member must have length less"),
    ("v2", {"body": {"text": 5}}, "Invalid type for parameter text"),
    ("v2", {"body": {"text": "hi", "sessionState": 1}}, "Invalid type for parameter sessionState"),
    (
        "v2",
        {"body": {"text": "hi", "sessionState": {"dialogAction": {"type": "Finish"}}}},
        "Member must satisfy enum value set: [Close, ConfirmIntent",
    ),
    ("v2", {"body": {"text": "hi", "sessionState": {"intent": {}}}}, 'in sessionState.intent: "name"'),
    (
        "v2",
        {"body": {"text": "hi", "sessionState": {"intent": {"name": "Book", "slots": {"day": {"value": {}}}}}}},
        'sessionState.intent.slots.day.value: "interpretedValue"',
    ),
    (
        "v2",
        {"body": {"text": "hi", "sessionState": {"intent": {"name": "Book", "state": "Done"}}}},
        "at 'sessionState.intent.state' failed to satisfy constraint: Member must satisfy enum",
    ),
    ("v2", {"body": {"text": "hi", "sessionState": {"sessionAttributes": {"": "x"}}}}, "valid min length: 1"),
    ("v2", {"body": {"text": "hi", "requestAttributes": {"k": 1}}}, "Invalid type for parameter requestAttributes.k"),
    (
        "v2",
        {
            "body": {
                "text": "hi",
                "sessionState": {
                    "activeContexts": [
                        {
                            "name": "ctx",
                            "timeToLive": {"timeToLiveInSeconds": 60, "turnsToLive": 21},
                            "contextAttributes": {},
                        }
                    ]
                },
            }
        },
        "Member must have value less than or equal to 20",
    ),
    ("v2", {"method": "PUT"}, "RecognizeText is POST, not PUT"),
    ("v2", {"path": "/bots/BOTID12345/text"}, "does not match RecognizeText's"),
    ("v2", {"raw": b"text=hi"}, "Body is not JSON"),
    ("v2", {"raw": b'["hi"]'}, "Body is not a JSON object"),
    ("v1", {"path": path_for("v1", "+15551234567")}, "'userId' failed to satisfy constraint: Member must satisfy"),
    ("v1", {"body": {"text": "hi"}}, 'Unknown parameter in body: "text"'),
    ("v1", {"body": {"inputText": "hi", "sessionAttributes": {"a": 1}}}, "sessionAttributes.a"),
    (
        "v1",
        {
            "body": {
                "inputText": "hi",
                "activeContexts": [{"name": "ctx-1", "timeToLive": {}, "parameters": {}}],
            }
        },
        "at 'activeContexts[0].name' failed to satisfy constraint",
    ),
]

# Accepted by the model, but not what botocore's serializer or signer would send.
WRONG_WIRE: list[tuple[str, dict[str, Any], str]] = [
    # Lex ignores query parameters it does not know; botocore never sends one.
    ("v2", {"path": path_for("v2") + "?debug=1"}, "Unknown query parameter 'debug'"),
    ("v2", {"headers": {"Content-Type": "text/plain"}}, "Header Content-Type: 'text/plain'"),
    ("v2", {"path": path_for("v2", "user:1", encode=False)}, "encoded differently from botocore's"),
    (
        "v2",
        {"headers": {"Authorization": "AWS4-HMAC-SHA256 Credential=AKIA/20240101/us-east-1/execute-api/aws4_request"}},
        "signingName is 'lex'",
    ),
]


def test_the_plugins_own_request_passes_and_maps_back_to_its_parameters() -> None:
    verdict = check("v2", body={"text": "hi", "sessionState": {"sessionAttributes": {"turns": "1"}}})
    assert verdict.errors == []
    assert verdict.params == {
        "botId": "BOTID12345",
        "botAliasId": "TSTALIASID",
        "localeId": "en_US",
        "sessionId": "s-1",
        "text": "hi",
        "sessionState": {"sessionAttributes": {"turns": "1"}},
    }
    assert check("v1").errors == []


@pytest.mark.parametrize(("api", "change", "expected"), WRONG_REQUESTS)
def test_the_oracle_refuses_what_the_model_refuses(api: str, change: dict[str, Any], expected: str) -> None:
    verdict = check(api, **change)
    assert any(expected in error for error in verdict.api), verdict.errors


@pytest.mark.parametrize(("api", "change", "expected"), WRONG_WIRE)
def test_the_oracle_refuses_what_botocore_would_not_send(api: str, change: dict[str, Any], expected: str) -> None:
    verdict = check(api, **change)
    assert verdict.api == []
    assert any(expected in error for error in verdict.wire), verdict.errors


@pytest.mark.invalid_lex_requests
@pytest.mark.parametrize(("api", "change", "expected"), [c for c in WRONG_REQUESTS if "method" not in c[1]])
async def test_the_fake_refuses_what_the_model_refuses(
    http: httpx.AsyncClient, clock: FakeClock, fake: FakeLex, api: str, change: dict[str, Any], expected: str
) -> None:
    target = change.get("path", path_for(api))
    content = change.get("raw") or json.dumps(change.get("body", DEFAULT_BODY[api])).encode()
    url = FAKE_BASE_URL + target
    headers = signed_headers(
        parse_credentials(fake_credentials(api)), url, content, datetime.fromtimestamp(clock.now(), UTC)
    )
    response = await http.post(url, content=content, headers=headers)
    unknown_path = target == "/bots/BOTID12345/text"
    assert response.status_code == (404 if unknown_path else 400)
    assert response.headers["x-amzn-errortype"].split(":")[0] == (
        "UnknownOperationException" if unknown_path else {"v1": "BadRequestException", "v2": "ValidationException"}[api]
    )
    assert fake.requests == []
    assert len(fake.exchanges) == 1


@settings(max_examples=150, deadline=None)
@given(session=st.text(min_size=1, max_size=120))
def test_any_session_id_outside_the_pattern_is_refused(session: str) -> None:
    valid = re.fullmatch(r"[0-9a-zA-Z._:-]{2,100}", session) is not None
    verdict = check("v2", path=path_for("v2", session))
    assert (verdict.errors == []) == valid, verdict.errors


@settings(max_examples=100, deadline=None)
@given(session=st.from_regex(r"[0-9a-zA-Z._:-]{2,100}", fullmatch=True))
def test_any_valid_session_id_encodes_like_botocore(session: str) -> None:
    for api in ("v1", "v2"):
        assert check(api, path=path_for(api, session)).errors == []


@settings(max_examples=100, deadline=None)
@given(
    key=st.text(min_size=1, max_size=30).filter(lambda k: k not in {"text", "sessionState", "requestAttributes"}),
    value=st.text() | st.integers() | st.none(),
)
def test_any_unknown_body_member_is_refused(key: str, value: object) -> None:
    verdict = check("v2", body={"text": "hi", key: value})
    assert any(f'Unknown parameter in body: "{key}"' in error for error in verdict.api), verdict.api


# --- every request the plugin sends, whatever comes from outside ---------------------------

attributes = st.dictionaries(st.text(max_size=20), st.text(max_size=40), max_size=4)
bot_ids = st.from_regex(r"^[0-9A-Za-z]{10}$") | st.text(max_size=12)
locales = st.from_regex(r"^[a-z]{2}_[A-Z0-9]{2,3}$") | st.text(max_size=6)
v1_names = st.from_regex(r"^([A-Za-z]_?)+$") | st.text(max_size=8)


def _capture(answer: dict[str, Any], seen: list[httpx.Request]) -> httpx.MockTransport:
    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(200, json=answer)

    return httpx.MockTransport(handler)


def _mo(text: str) -> InboundMessage:
    return InboundMessage(channel="t", sender_id="s", provider_message_id="m", contact="+15551234567", text=text)


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    api=st.sampled_from(["v1", "v2"]),
    # Text arrives from channels' JSON, where a lone surrogate ("\\ud83d") is valid.
    text=st.text(max_size=1500) | st.text(st.characters(codec=None, categories=["Cs", "L", "Zs"]), max_size=30),
    returned=attributes,
    request_attributes=attributes,
    bot_id=bot_ids,
    alias_id=bot_ids,
    locale=locales,
    name=v1_names,
    alias=v1_names,
)
async def test_every_request_the_plugin_sends_fits_the_model(
    api: str,
    text: str,
    returned: dict[str, str],
    request_attributes: dict[str, str],
    bot_id: str,
    alias_id: str,
    locale: str,
    name: str,
    alias: str,
) -> None:
    """User text, attributes Lex returned, and the operator's ids and config: all from outside."""
    credentials = json.loads(fake_credentials(api))
    credentials["bot"] = (
        {"id": bot_id, "aliasId": alias_id, "localeId": locale} if api == "v2" else {"name": name, "alias": alias}
    )
    config = {"base_url": FAKE_BASE_URL, "request_attributes": request_attributes}
    try:
        VALIDATOR.validate_credentials(json.dumps(credentials), config)
    except ConfigInvalid:
        return  # refused up front (422): nothing is ever sent
    answer = {"sessionState": {"sessionAttributes": returned}} if api == "v2" else {"sessionAttributes": returned}
    seen: list[httpx.Request] = []
    async with httpx.AsyncClient(transport=_capture(answer, seen)) as http:
        bot = LexBot(http, FakeClock(), retry_policy=NO_WAIT)
        session = make_session(json.dumps(credentials), api, request_attributes=request_attributes)
        await bot.send(session, _mo(text))
        await bot.send(session, _mo(text))  # sends back what Lex returned
    for request in seen:
        target = request.url.raw_path.decode()
        verdict = check_request(api, request.method, target, dict(request.headers), request.content)
        assert verdict.errors == [], (target, request.content, verdict.errors)


# --- the fake's answers fit the output shapes ----------------------------------------------

V2_TRIGGERS = ["hi", "options", "picture", "composite", "confirm", "payload", "ssml"]


async def test_the_fakes_v2_answers_fit_the_output_shape_and_cover_every_content_type(
    http: httpx.AsyncClient, clock: FakeClock
) -> None:
    content_types: set[str] = set()
    dialog_actions: set[str] = set()
    for trigger in V2_TRIGGERS:
        response = await call(http, clock, path_for("v2"), {"text": trigger})
        assert response.status_code == 200
        assert response_errors("v2", 200, dict(response.headers), response.content) == [], trigger
        data = response.json()
        content_types |= {m["contentType"] for m in data["messages"]}
        dialog_actions.add(data["sessionState"]["dialogAction"]["type"])
    message_shape = operation_model("v2").output_shape.members["messages"].member
    assert content_types == set(message_shape.members["contentType"].enum)
    assert {"Close", "ConfirmIntent"} <= dialog_actions


async def test_the_fakes_v1_answers_fit_the_output_shape_and_cover_every_format(
    http: httpx.AsyncClient, clock: FakeClock
) -> None:
    formats: set[str] = set()
    states: set[str] = set()
    for trigger in V2_TRIGGERS:
        response = await call(http, clock, path_for("v1"), {"inputText": trigger}, credentials=fake_credentials("v1"))
        assert response_errors("v1", 200, dict(response.headers), response.content) == [], trigger
        data = response.json()
        formats.add(data["messageFormat"])
        states.add(data["dialogState"])
    assert formats == set(operation_model("v1").output_shape.members["messageFormat"].enum)
    assert {"Fulfilled", "ConfirmIntent"} <= states


@pytest.mark.parametrize("api", ["v1", "v2"])
async def test_every_modelled_error_is_answered_in_its_shape(
    http: httpx.AsyncClient, clock: FakeClock, fake: FakeLex, api: str
) -> None:
    body = DEFAULT_BODY[api]
    for shape in operation_model(api).error_shapes:
        status = shape.metadata["error"]["httpStatusCode"]
        fake.fail_next(status)  # the code comes from the model too
        response = await call(http, clock, path_for(api), body, credentials=fake_credentials(api))
        assert response.status_code == status
        assert response.headers["x-amzn-errortype"].split(":")[0] == shape.name
        assert response_errors(api, status, dict(response.headers), response.content) == [], shape.name
        assert set(response.json()) <= set(shape.members)


GOOD_V2 = {
    "messages": [{"contentType": "PlainText", "content": "ok"}],
    "sessionState": {"dialogAction": {"type": "Close"}, "intent": {"name": "Echo", "state": "Fulfilled"}},
    "sessionId": "s-1",
}


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        ({"extra": 1}, 'Unknown parameter in body: "extra"'),
        ({"messages": [{"contentType": "Markdown", "content": "x"}]}, "enum value set: [CustomPayload"),
        ({"messages": [{"content": "x"}]}, 'in messages[0]: "contentType"'),
        ({"messages": [{"contentType": "PlainText", "content": "x" * 1025}]}, "length less than or equal to 1024"),
        ({"messages": [{"contentType": "PlainText", "content": "x"}] * 11}, "'messages' failed"),
        ({"sessionState": {"dialogAction": {}}}, 'in sessionState.dialogAction: "type"'),
        (
            {
                "messages": [
                    {
                        "contentType": "ImageResponseCard",
                        "imageResponseCard": {"title": "t", "buttons": [{"text": "a", "value": "a"}] * 6},
                    }
                ]
            },
            "'messages[0].imageResponseCard.buttons' failed",
        ),
        ({"sessionId": "+1555"}, "'sessionId' failed to satisfy constraint"),
    ],
)
def test_the_answer_oracle_refuses_wrong_answers(change: dict[str, Any], expected: str) -> None:
    body = json.dumps({**GOOD_V2, **change}).encode()
    assert response_errors("v2", 200, {}, json.dumps(GOOD_V2).encode()) == []
    errors = response_errors("v2", 200, {}, body)
    assert any(expected in error for error in errors), errors


def test_the_error_oracle_knows_each_errors_member_names() -> None:
    # V1 models DependencyFailedException's text as `Message`: `message` is not it.
    headers = {"x-amzn-ErrorType": "DependencyFailedException:"}
    assert response_errors("v1", 424, headers, b'{"Message": "Lambda failed"}') == []
    assert any("Unknown parameter" in e for e in response_errors("v1", 424, headers, b'{"message": "x"}'))
    assert any("is HTTP 424" in e for e in response_errors("v1", 500, headers, b'{"Message": "x"}'))
    # Not modelled (common to all AWS APIs): nothing official to check it against.
    assert response_errors("v2", 403, {"x-amzn-ErrorType": "InvalidSignatureException"}, b"<html>") == []


def test_teardown_check_flags_what_the_fake_should_not_have_done() -> None:
    good = path_for("v2")
    accepted_invalid = Exchange(
        "v2", "POST", path_for("v2", "+1555"), {"content-type": "application/json"}, b'{"text":"hi"}', 200, {}, b"{}"
    )
    problems = model_problems([accepted_invalid], requests_may_be_invalid=True)
    assert len(problems) == 1 and "the fake accepted what the model refuses" in problems[0]
    bad_answer = Exchange(
        "v2", "POST", good, {"content-type": "application/json"}, b'{"text":"hi"}', 200, {}, b'{"x":1}'
    )
    assert ["answer breaks the model" in p for p in model_problems([bad_answer])] == [True]
    unknown = Exchange(None, "GET", "/nope", {}, b"", 404, {}, b"")
    assert "No Lex runtime operation" in model_problems([unknown])[0]
    assert model_problems([unknown], requests_may_be_invalid=True) == []


@pytest.mark.invalid_lex_requests
async def test_requests_to_no_operation_are_kept_and_refused(http: httpx.AsyncClient, fake: FakeLex) -> None:
    response = await http.get(FAKE_BASE_URL + path_for("v2"))
    assert (response.status_code, response.headers["x-amzn-errortype"].split(":")[0]) == (
        404,
        "UnknownOperationException",
    )
    await http.post(FAKE_BASE_URL + "/bots/x/text", json={"text": "hi"})
    assert [(e.method, e.api, e.status) for e in fake.exchanges] == [("GET", "v2", 404), ("POST", None, 404)]


# --- the models' own examples ----------------------------------------------------------------


@pytest.mark.parametrize("api", ["v1", "v2"])
def test_the_models_examples_parse_or_the_readme_says_there_are_none(api: str) -> None:
    examples = model_examples(api)
    # The README's claim has to stay true when a botocore upgrade ships examples.
    assert ("ship no examples" in README.read_text()) == (examples == []), model_source(api)
    operation = operation_model(api)
    parse = replies_from_v2 if api == "v2" else replies_from_v1
    for example in examples:
        assert shape_errors(example["input"], operation.input_shape) == []
        output = example.get("output", {})
        assert shape_errors(output, operation.output_shape) == []
        plain = [m["content"].strip() for m in output.get("messages", []) if m.get("contentType") == "PlainText"]
        assert [r.text for r in parse(output)][: len(plain)] == plain
