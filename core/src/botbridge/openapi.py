"""The OpenAPI document, built from the routes and the pydantic models.

Every route of the host must have an entry in OPERATIONS; a test fails
when one is missing, so the document cannot drift from the routes.
"""

from __future__ import annotations

import re
from typing import Any

from pydantic import BaseModel
from starlette.applications import Starlette
from starlette.routing import Route

from botbridge import __version__
from botbridge.models import (
    ApiKeyView,
    ConnectorCreate,
    ConnectorUpdate,
    ConnectorView,
    ConversationView,
    ErasureView,
    MessageCreate,
    MessageHistoryView,
    MessageView,
    OptOutCreate,
    OptOutView,
    SenderCreate,
    SenderUpdate,
    SenderView,
    SubscriptionCreate,
    SubscriptionView,
    TimelineItem,
)

MODELS: list[type[BaseModel]] = [
    SenderCreate,
    SenderUpdate,
    SenderView,
    ConnectorCreate,
    ConnectorUpdate,
    ConnectorView,
    SubscriptionCreate,
    SubscriptionView,
    MessageCreate,
    MessageView,
    ApiKeyView,
    ConversationView,
    MessageHistoryView,
    TimelineItem,
    ErasureView,
    OptOutCreate,
    OptOutView,
]

ERROR_SCHEMA = {
    "type": "object",
    "required": ["error"],
    "properties": {
        "error": {
            "type": "object",
            "required": ["code", "message"],
            "properties": {"code": {"type": "string"}, "message": {"type": "string"}, "details": {}},
        }
    },
}


def _page_of(name: str) -> dict[str, Any]:
    return {
        "type": "object",
        "properties": {
            "items": {"type": "array", "items": {"$ref": f"#/components/schemas/{name}"}},
            "next_cursor": {"type": ["string", "null"]},
        },
    }


PAGE_PARAMS = [
    {"name": "limit", "in": "query", "schema": {"type": "integer", "minimum": 1, "maximum": 200, "default": 50}},
    {"name": "cursor", "in": "query", "schema": {"type": "string"}},
]
FREE_OBJECT = {"type": "object", "additionalProperties": True}


def _op(
    summary: str,
    *,
    request: str | None = None,
    response: str | dict[str, Any] | None = None,
    status: int = 200,
    auth: bool = True,
    params: list[dict[str, Any]] | None = None,
    errors: tuple[int, ...] = (),
) -> dict[str, Any]:
    op: dict[str, Any] = {"summary": summary, "responses": {}}
    if params:
        op["parameters"] = params
    if request:
        op["requestBody"] = {
            "required": True,
            "content": {"application/json": {"schema": {"$ref": f"#/components/schemas/{request}"}}},
        }
    if status == 204:
        op["responses"]["204"] = {"description": "deleted"}
    else:
        schema = {"$ref": f"#/components/schemas/{response}"} if isinstance(response, str) else response or FREE_OBJECT
        op["responses"][str(status)] = {"description": "OK", "content": {"application/json": {"schema": schema}}}
    codes = set(errors)
    if auth:
        codes.add(401)
        op["security"] = [{"bearer": []}]
    if request:
        codes.update({400, 408, 413, 415, 422})
    if params:
        codes.add(422)  # a limit out of range
    for code in sorted(codes):
        op["responses"][str(code)] = {
            "description": "error",
            "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}},
        }
    return op


def _html(summary: str) -> dict[str, Any]:
    """A page for a browser (no API key: the page asks for one and sends it to the API itself)."""
    return {
        "summary": summary,
        "responses": {
            "200": {"description": "a page", "content": {"text/html": {"schema": {"type": "string"}}}},
            "404": {
                "description": "the console is off (BOTBRIDGE_CONSOLE)",
                "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}},
            },
        },
    }


CONNECTOR_FILTERS = [
    *PAGE_PARAMS,
    {"name": "type", "in": "query", "schema": {"type": "string"}},
    {"name": "sender_id", "in": "query", "schema": {"type": "string"}},
    {"name": "external_id", "in": "query", "schema": {"type": "string"}},
]

TIME_PARAM = {"type": "string", "description": "ISO 8601 with a zone (2026-12-01T10:00:00Z) or epoch seconds"}
CONVERSATION_FILTERS = [
    *PAGE_PARAMS,
    {"name": "sender_id", "in": "query", "schema": {"type": "string"}},
    {"name": "connector_id", "in": "query", "schema": {"type": "string"}},
    {"name": "contact", "in": "query", "schema": {"type": "string"}},
    {"name": "state", "in": "query", "schema": {"type": "string", "enum": ["open", "closed"]}},
    {"name": "since", "in": "query", "description": "opened at or after", "schema": TIME_PARAM},
    {"name": "until", "in": "query", "description": "opened before", "schema": TIME_PARAM},
]
MESSAGE_FILTERS = [
    *PAGE_PARAMS,
    {"name": "sender_id", "in": "query", "schema": {"type": "string"}},
    {"name": "to", "in": "query", "schema": {"type": "string"}},
    {"name": "state", "in": "query", "schema": {"type": "string"}},
    {"name": "external_id", "in": "query", "schema": {"type": "string"}},
    {"name": "conversation_id", "in": "query", "schema": {"type": "string"}},
    {"name": "since", "in": "query", "description": "created at or after", "schema": TIME_PARAM},
    {"name": "until", "in": "query", "description": "created before", "schema": TIME_PARAM},
]
TIMELINE = {
    "type": "object",
    "properties": {"items": {"type": "array", "items": {"$ref": "#/components/schemas/TimelineItem"}}},
}

OPERATIONS: dict[tuple[str, str], dict[str, Any]] = {
    ("/healthz", "get"): _op("Liveness", auth=False),
    ("/readyz", "get"): _op("Readiness: the store answers and workers can run", auth=False, errors=(503,)),
    ("/openapi.json", "get"): _op("This document", auth=False),
    ("/v1/plugins", "get"): _op("Installed plugins, what they provide, and load errors"),
    ("/v1/senders", "post"): _op(
        "Create a sender", request="SenderCreate", response="SenderView", status=201, errors=(502,)
    ),
    ("/v1/senders", "get"): _op("List senders", response=_page_of("SenderView"), params=PAGE_PARAMS),
    ("/v1/senders/{sender_id}", "get"): _op("Get a sender", response="SenderView", errors=(404,)),
    ("/v1/senders/{sender_id}", "patch"): _op(
        "Update a sender", request="SenderUpdate", response="SenderView", errors=(404,)
    ),
    ("/v1/senders/{sender_id}", "delete"): _op("Delete a sender", status=204, errors=(404, 409, 502)),
    ("/v1/connectors", "post"): _op(
        "Create a connector", request="ConnectorCreate", response="ConnectorView", status=201, errors=(409,)
    ),
    ("/v1/connectors", "get"): _op("List connectors", response=_page_of("ConnectorView"), params=CONNECTOR_FILTERS),
    ("/v1/connectors/{connector_id}", "get"): _op("Get a connector", response="ConnectorView", errors=(404,)),
    ("/v1/connectors/{connector_id}", "post"): _op(
        "Update a connector (needs the current version_number)",
        request="ConnectorUpdate",
        response="ConnectorView",
        errors=(404, 409),
    ),
    ("/v1/connectors/{connector_id}", "patch"): _op(
        "Update a connector (needs the current version_number)",
        request="ConnectorUpdate",
        response="ConnectorView",
        errors=(404, 409),
    ),
    ("/v1/connectors/{connector_id}", "delete"): _op("Delete a connector", status=204, errors=(404,)),
    ("/v1/subscriptions", "post"): _op(
        "Subscribe a webhook to events", request="SubscriptionCreate", response="SubscriptionView", status=201
    ),
    ("/v1/subscriptions", "get"): _op("List subscriptions", response=_page_of("SubscriptionView"), params=PAGE_PARAMS),
    ("/v1/subscriptions/{subscription_id}", "get"): _op(
        "Get a subscription", response="SubscriptionView", errors=(404,)
    ),
    ("/v1/subscriptions/{subscription_id}", "delete"): _op("Delete a subscription", status=204, errors=(404,)),
    ("/v1/subscriptions/{subscription_id}/failures", "get"): _op(
        "Events that were dead-lettered after the last retry", params=PAGE_PARAMS, errors=(404,)
    ),
    ("/v1/subscriptions/{subscription_id}/failures/{failure_id}/redeliver", "post"): _op(
        "Deliver a dead-lettered event again: a fresh delivery job for the subscription, with the same event-id "
        "and attempts counted from 1. The failure stays listed (dead letters are not removed by a redelivery; "
        "if it fails again, a new failure is added)",
        response={"type": "object", "required": ["redelivering"], "properties": {"redelivering": {"const": True}}},
        status=202,
        errors=(404,),
    ),
    ("/v1/keys", "get"): _op(
        "The account's API keys: name, creation, last use, revocation (never the key)",
        response=_page_of("ApiKeyView"),
        params=PAGE_PARAMS,
    ),
    ("/v1/messages", "post"): _op(
        "Send an outbound message (409 contact_opted_out: the contact opted out of the sender)",
        request="MessageCreate",
        response="MessageView",
        status=202,
        errors=(409,),
    ),
    ("/v1/messages/{message_id}", "get"): _op(
        "An outbound message and its state", response="MessageView", errors=(404,)
    ),
    ("/v1/messages", "get"): _op(
        "Outbound messages, newest first", response=_page_of("MessageHistoryView"), params=MESSAGE_FILTERS
    ),
    ("/v1/conversations", "get"): _op(
        "Conversations, newest first", response=_page_of("ConversationView"), params=CONVERSATION_FILTERS
    ),
    ("/v1/conversations/{conversation_id}", "get"): _op("A conversation", response="ConversationView", errors=(404,)),
    ("/v1/conversations/{conversation_id}/messages", "get"): _op(
        "A conversation's timeline: MOs, replies with their states, bot errors, opening and closing",
        response=TIMELINE,
        errors=(404,),
    ),
    ("/v1/conversations/{conversation_id}/handoff", "post"): _op(
        "Hand the conversation to a person: MOs go to subscribers as mo_waiting_for_agent, not to the bot "
        "(202: queued behind the conversation's turns; 409: the conversation has ended)",
        status=202,
        errors=(404, 409),
    ),
    ("/v1/conversations/{conversation_id}/resume", "post"): _op(
        "Give a handed-off conversation back to the bot (202: queued; 409: the conversation has ended)",
        status=202,
        errors=(404, 409),
    ),
    ("/v1/events/stream", "get"): {
        **_op(
            "The account's events as Server-Sent Events (event: event, the bodies subscribers get; event: "
            "conversation, a conversation's change); resume with Last-Event-ID",
            params=[
                {"name": "sender_id", "in": "query", "schema": {"type": "string"}},
                {"name": "contact", "in": "query", "schema": {"type": "string"}},
                {"name": "Last-Event-ID", "in": "header", "schema": {"type": "string"}},
            ],
        ),
        "responses": {
            "200": {"description": "a stream", "content": {"text/event-stream": {"schema": {"type": "string"}}}},
            "401": {
                "description": "error",
                "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}},
            },
        },
    },
    ("/v1/contacts/{contact}", "delete"): _op(
        "Erase everything the account holds about one contact (right to erasure)", response="ErasureView"
    ),
    ("/v1/opt-outs", "get"): _op(
        "Contacts who opted out of the account's senders (STOP), in the order they did",
        response=_page_of("OptOutView"),
        params=[*PAGE_PARAMS, {"name": "sender_id", "in": "query", "schema": {"type": "string"}}],
    ),
    ("/v1/opt-outs", "post"): _op(
        "Opt a contact out of a sender as an operator (201; 200 when they already were)",
        request="OptOutCreate",
        response="OptOutView",
        status=201,
    ),
    ("/v1/opt-outs/{sender_id}/{contact}", "delete"): _op(
        "Opt a contact back in as an operator (no text is sent to them)", status=204, errors=(404,)
    ),
    ("/metrics", "get"): {
        "summary": "Prometheus metrics",
        "responses": {"200": {"description": "OK", "content": {"text/plain": {"schema": {"type": "string"}}}}},
    },
    ("/v1/webhooks/{channel}/{sender_id}", "post"): {
        **_op("Provider webhook; verified by the channel plugin", auth=False, errors=(400, 401, 404, 413, 503)),
        "requestBody": {"required": True, "content": {"*/*": {"schema": {}}}},
    },
    ("/v1/webhooks/{channel}/{sender_id}/{route}", "get"): _op(
        "A channel's own route (e.g. inbound media it serves)", auth=False, errors=(401, 404)
    ),
    ("/console", "get"): _html("The web console (BOTBRIDGE_CONSOLE; 404 when off); sign in there with an API key"),
    ("/console/assets/{name}", "get"): {
        "summary": "The console's static files (scripts, styles, icons; 404 when the console is off)",
        "responses": {
            "200": {
                "description": "a file",
                "content": {
                    media: {"schema": {"type": "string"}} for media in ("text/javascript", "text/css", "image/svg+xml")
                },
            },
            "404": _html("")["responses"]["404"],
        },
    },
    ("/docs", "get"): _html("This API's reference, rendered from /openapi.json (BOTBRIDGE_CONSOLE; 404 when off)"),
    ("/v1/webhooks/{channel}/{sender_id}/{route}", "post"): {
        **_op("A channel's own route (e.g. an OAuth token endpoint)", auth=False, errors=(400, 401, 404, 413)),
        "requestBody": {"required": False, "content": {"*/*": {"schema": {}}}},
    },
}


def route_operations(app: Starlette) -> set[tuple[str, str]]:
    found = set()
    for route in app.routes:
        if isinstance(route, Route):
            for method in route.methods or ():
                if method != "HEAD":
                    # OpenAPI has no converters: `{route:path}` is `{route}`.
                    found.add((re.sub(r"\{(\w+):\w+\}", r"{\1}", route.path), method.lower()))
    return found


def document(app: Starlette) -> dict[str, Any]:
    paths: dict[str, dict[str, Any]] = {}
    for path, method in sorted(route_operations(app)):
        operation = dict(OPERATIONS[(path, method)])
        path_params = [
            {"name": part[1:-1], "in": "path", "required": True, "schema": {"type": "string"}}
            for part in path.split("/")
            if part.startswith("{")
        ]
        if path_params:
            operation["parameters"] = path_params + operation.get("parameters", [])
        paths.setdefault(path, {})[method] = operation
    schemas: dict[str, Any] = {"Error": ERROR_SCHEMA}
    for model in MODELS:
        schema = model.model_json_schema(ref_template="#/components/schemas/{model}")
        schemas.update(schema.pop("$defs", {}))
        schemas[model.__name__] = schema
    return {
        "openapi": "3.1.0",
        "info": {"title": "botbridge", "version": __version__},
        "paths": paths,
        "components": {
            "schemas": schemas,
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
        },
    }
