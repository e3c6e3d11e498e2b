"""The discovery-document oracle: it finds Google's definitions, and refuses what they refuse."""

from __future__ import annotations

import dataclasses
import json
import re
from collections.abc import Callable
from typing import Any
from urllib.parse import urlsplit

import pytest
from jsonschema import Draft202012Validator

from botbridge import BotSession, InboundMessage
from botbridge_dialogflow import DialogflowBackend, detect_intent_url, parse_settings
from botbridge_dialogflow.testing import Exchange, FakeDialogflow

from . import oracle
from .conftest import PROJECT, Oracle

pytestmark = pytest.mark.anyio

ES_REQUEST = "GoogleCloudDialogflowV2DetectIntentRequest"
CX_REQUEST = "GoogleCloudDialogflowCxV3DetectIntentRequest"
AGENT = "0b5c8a0e-1a2b-4c3d-9e8f-0123456789ab"


def test_the_discovery_documents_ship_in_google_api_python_client() -> None:
    for version in oracle.VERSIONS:
        path = oracle.document_path(version)
        assert (
            str(path)
            .replace("\\", "/")
            .endswith(f"googleapiclient/discovery_cache/documents/dialogflow.{version}.json")
        )
        doc = oracle.document(version)
        assert doc["id"] == f"dialogflow:{version}"
        assert re.fullmatch(r"\d{8}", oracle.revision(version))
    assert "GoogleCloudDialogflowV2IntentMessageTableCard" in oracle.document("v2")["schemas"]
    assert (
        oracle.document("v3")["schemas"]["GoogleCloudDialogflowCxV3ResponseMessageKnowledgeInfoCard"]["properties"]
        == {}
    )


@pytest.mark.parametrize(
    ("version", "name"),
    [
        ("v2", ES_REQUEST),
        ("v2", "GoogleCloudDialogflowV2DetectIntentResponse"),
        ("v3", CX_REQUEST),
        ("v3", "GoogleCloudDialogflowCxV3DetectIntentResponse"),
    ],
)
def test_converted_schemas_are_json_schema_and_close_every_message(version: str, name: str) -> None:
    for request in (True, False):
        schema = oracle.json_schema(version, name, request=request)
        Draft202012Validator.check_schema(schema)
        for definition in schema["$defs"].values():
            if isinstance(definition, dict) and definition.get("type") == "object":
                assert "additionalProperties" in definition


ES_TEXT = {"queryInput": {"text": {"text": "hi", "languageCode": "en"}}}
CX_TEXT = {"queryInput": {"text": {"text": "hi"}, "languageCode": "en"}}


@pytest.mark.parametrize(
    ("version", "name", "body", "problem"),
    [
        # CX's channel sent to ES: the fake's hand-written key list could drift, discovery does not.
        ("v2", ES_REQUEST, {**ES_TEXT, "queryParams": {"channel": "sms"}}, "'channel' was unexpected"),
        # ES's text input shape sent to CX: languageCode belongs on queryInput there.
        ("v3", CX_REQUEST, ES_TEXT, "'languageCode' was unexpected"),
        ("v2", ES_REQUEST, {**ES_TEXT, "queryParams": {"timeZone": 5}}, "is not of type 'string'"),
        ("v2", ES_REQUEST, {**ES_TEXT, "queryParams": {"contexts": {}}}, "is not of type 'array'"),
        ("v3", CX_REQUEST, {**CX_TEXT, "responseView": "FULL"}, "is not one of"),
        ("v3", CX_REQUEST, {**CX_TEXT, "queryParams": {"sessionTtl": "600"}}, "does not match"),
        ("v2", ES_REQUEST, [], "is not of type 'object'"),
    ],
)
def test_the_oracle_refuses_unknown_fields_and_wrong_types(version: str, name: str, body: Any, problem: str) -> None:
    found = oracle.problems(version, name, body, request=True)
    assert any(problem in p for p in found), found


def test_output_only_fields_are_refused_in_requests_and_allowed_in_answers() -> None:
    name = "GoogleCloudDialogflowCxV3ResponseMessage"
    assert oracle.problems("v3", name, {"endInteraction": {}}, request=False) == []
    assert oracle.problems("v3", name, {"endInteraction": {}}, request=True) != []
    assert oracle.problems("v3", name, {"knowledgeInfoCard": {"answer": "x"}}, request=False) != []


def test_what_the_plugin_sends_is_valid() -> None:
    from botbridge_dialogflow.bot import request_body

    es = parse_settings({"time_zone": "Europe/Berlin", "language_code": "de"})
    cx = parse_settings({"agent": AGENT, "channel": "sms", "time_zone": "Europe/Berlin"})
    assert oracle.problems("v2", ES_REQUEST, request_body("hallo", es), request=True) == []
    assert oracle.problems("v3", CX_REQUEST, request_body("hi", cx), request=True) == []


CONFIGS = [
    ({}, "dialogflow.projects.agent.sessions.detectIntent"),
    ({"location": "europe-west2"}, "dialogflow.projects.locations.agent.sessions.detectIntent"),
    ({"environment": "production"}, "dialogflow.projects.agent.environments.users.sessions.detectIntent"),
    (
        {"environment": "production", "location": "europe-west2"},
        "dialogflow.projects.locations.agent.environments.users.sessions.detectIntent",
    ),
    ({"agent": AGENT}, "dialogflow.projects.locations.agents.sessions.detectIntent"),
    (
        {"agent": AGENT, "environment": "e-1", "location": "us-central1"},
        "dialogflow.projects.locations.agents.environments.sessions.detectIntent",
    ),
]


def test_every_path_the_plugin_builds_is_a_detect_intent_method_and_every_method_is_reachable() -> None:
    reached = set()
    for config, method_id in CONFIGS:
        settings = parse_settings(config)
        path = urlsplit(detect_intent_url(PROJECT, "a1b2c3", settings)).path
        method = oracle.method_for("v3" if settings.agent else "v2", path)
        assert method is not None and method.id == method_id, path
        reached.add(method.id)
    assert reached == {m.id for version in oracle.VERSIONS for m in oracle.methods(version)}


@pytest.mark.parametrize(
    ("version", "path"),
    [
        ("v2", "/v2/projects/p/agent/environments/production/sessions/s:detectIntent"),  # no users/-
        ("v2", "/v2/projects/p/sessions/s:detectIntent"),
        ("v2", "/v2/projects/p/agent/sessions/s:detectintent"),
        ("v2", "/v2/projects/p/agent/sessions/a/b:detectIntent"),
        ("v3", "/v3/projects/p/agents/a/sessions/s:detectIntent"),  # CX always has a location
        ("v3", "/v3/projects/p/locations/global/agent/sessions/s:detectIntent"),
    ],
)
def test_paths_outside_googles_methods_are_refused(version: str, path: str) -> None:
    assert oracle.method_for(version, path) is None
    exchange = Exchange(version, "POST", path, "", b"{}", 404, b"{}")
    assert oracle.check_exchange(exchange) == [
        f"POST {path}: no detectIntent method of dialogflow.{version} has this path"
    ]


def test_methods_and_query_parameters_are_checked() -> None:
    path = f"/v2/projects/{PROJECT}/agent/sessions/s1:detectIntent"
    body = json.dumps(ES_TEXT).encode()
    assert oracle.check_exchange(Exchange("v2", "POST", path, "alt=json", body, 400, b"{}")) == []
    found = oracle.check_exchange(Exchange("v2", "PUT", path, "debug=1", body, 400, b"{}"))
    assert any("is POST" in p for p in found) and any("'debug'" in p for p in found)


def test_answers_are_held_against_the_response_schema() -> None:
    path = f"/v3/projects/{PROJECT}/locations/global/agents/{AGENT}/sessions/s1:detectIntent"
    # An ES-only message kind in a CX answer: a fake scripted this way would test nothing real.
    answer = {"queryResult": {"responseMessages": [{"basicCard": {"title": "x"}}]}}
    found = oracle.check_exchange(
        Exchange("v3", "POST", path, "", json.dumps(CX_TEXT).encode(), 200, json.dumps(answer).encode())
    )
    assert found and "'basicCard' was unexpected" in found[0]
    # Error answers are Google's envelope, which discovery does not describe: not checked.
    error = Exchange("v3", "POST", path, "", json.dumps(CX_TEXT).encode(), 400, b'{"error": {}}')
    assert oracle.check_exchange(error) == []


def _message(session: BotSession, text: str) -> InboundMessage:
    return InboundMessage(channel="t", sender_id="s", provider_message_id=text, contact=session.contact, text=text)


async def test_the_hook_holds_every_exchange_of_every_fake_against_discovery(
    backend: DialogflowBackend,
    fake: FakeDialogflow,
    make_session: Callable[..., BotSession],
    discovery_oracle: Oracle,
) -> None:
    fake.add_cx_agent(PROJECT, "global", AGENT)
    es, cx = make_session(), make_session(config={"agent": AGENT, "channel": "sms"})
    await backend.send(es, _message(es, "hello"))
    await backend.send(cx, _message(cx, "menu"))
    built_inside_a_test = FakeDialogflow()
    assert discovery_oracle.fakes == [fake, built_inside_a_test]
    assert [(e.api, e.status) for e in fake.exchanges] == [("v2", 200), ("v3", 200)]
    assert json.loads(fake.exchanges[1].body)["queryParams"] == {"channel": "sms"}
    assert discovery_oracle.problems() == []
    # What the hook would have said of the CX body in ES's shape (the fake refuses it too).
    wrong = dataclasses.replace(fake.exchanges[1], body=json.dumps(ES_TEXT).encode())
    assert any("'languageCode' was unexpected" in p for p in oracle.check_exchange(wrong))
