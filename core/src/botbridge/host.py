"""The Starlette host: `create_app(settings)` wires installed plugins to the REST API."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import httpx
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route
from starlette.types import ASGIApp, Receive, Scope, Send

from botbridge import console
from botbridge.api import connectors, history, keys, messages, optouts, senders, stream, subscriptions, system, webhooks
from botbridge.clock import Clock
from botbridge.errors import APIError, StoreUnavailable
from botbridge.plugins import Plugins
from botbridge.runtime import Runtime
from botbridge.settings import Settings
from botbridge.store import Store

logger = logging.getLogger("botbridge.host")

ROUTES = [
    Route("/healthz", system.healthz, methods=["GET"]),
    Route("/readyz", system.readyz, methods=["GET"]),
    Route("/openapi.json", system.openapi, methods=["GET"]),
    Route("/v1/plugins", system.list_plugins, methods=["GET"]),
    Route("/v1/senders", senders.create_sender, methods=["POST"]),
    Route("/v1/senders", senders.list_senders, methods=["GET"]),
    Route("/v1/senders/{sender_id}", senders.get_sender, methods=["GET"]),
    Route("/v1/senders/{sender_id}", senders.update_sender, methods=["PATCH"]),
    Route("/v1/senders/{sender_id}", senders.delete_sender, methods=["DELETE"]),
    Route("/v1/connectors", connectors.create_connector, methods=["POST"]),
    Route("/v1/connectors", connectors.list_connectors, methods=["GET"]),
    Route("/v1/connectors/{connector_id}", connectors.get_connector, methods=["GET"]),
    Route("/v1/connectors/{connector_id}", connectors.update_connector, methods=["POST", "PATCH"]),
    Route("/v1/connectors/{connector_id}", connectors.delete_connector, methods=["DELETE"]),
    Route("/v1/subscriptions", subscriptions.create_subscription, methods=["POST"]),
    Route("/v1/subscriptions", subscriptions.list_subscriptions, methods=["GET"]),
    Route("/v1/subscriptions/{subscription_id}", subscriptions.get_subscription, methods=["GET"]),
    Route("/v1/subscriptions/{subscription_id}", subscriptions.delete_subscription, methods=["DELETE"]),
    Route("/v1/subscriptions/{subscription_id}/failures", subscriptions.list_failures, methods=["GET"]),
    Route(
        "/v1/subscriptions/{subscription_id}/failures/{failure_id}/redeliver",
        subscriptions.redeliver_failure,
        methods=["POST"],
    ),
    Route("/v1/keys", keys.list_keys, methods=["GET"]),
    Route("/v1/messages", messages.send_message, methods=["POST"]),
    Route("/v1/messages", history.list_messages, methods=["GET"]),
    Route("/v1/messages/{message_id}", messages.get_message, methods=["GET"]),
    Route("/v1/conversations", history.list_conversations, methods=["GET"]),
    Route("/v1/conversations/{conversation_id}", history.get_conversation, methods=["GET"]),
    Route("/v1/conversations/{conversation_id}/messages", history.conversation_timeline, methods=["GET"]),
    Route("/v1/conversations/{conversation_id}/handoff", history.hand_off, methods=["POST"]),
    Route("/v1/conversations/{conversation_id}/resume", history.resume, methods=["POST"]),
    Route("/v1/contacts/{contact}", history.erase_contact, methods=["DELETE"]),
    Route("/v1/opt-outs", optouts.list_opt_outs, methods=["GET"]),
    Route("/v1/opt-outs", optouts.create_opt_out, methods=["POST"]),
    Route("/v1/opt-outs/{sender_id}/{contact}", optouts.delete_opt_out, methods=["DELETE"]),
    Route("/v1/events/stream", stream.event_stream, methods=["GET"]),
    Route("/v1/webhooks/{channel}/{sender_id}", webhooks.receive_webhook, methods=["POST"]),
    Route("/v1/webhooks/{channel}/{sender_id}/{route:path}", webhooks.channel_route, methods=["GET", "POST"]),
    Route("/metrics", system.metrics, methods=["GET"]),
    # the web console and the API reference: 404 unless BOTBRIDGE_CONSOLE is on
    *console.ROUTES,
]


async def _api_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, APIError)
    return JSONResponse(exc.body(), status_code=exc.status_code, headers=exc.headers)


async def _http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    code = {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code, "http_error")
    body = {"error": {"code": code, "message": str(exc.detail), "details": None}}
    return JSONResponse(body, status_code=exc.status_code, headers=exc.headers)


async def _store_unavailable(request: Request, exc: Exception) -> Response:
    logger.error("store unavailable: %s", exc)
    body = {"error": {"code": "store_unavailable", "message": "storage is unavailable; retry later", "details": None}}
    return JSONResponse(body, status_code=503, headers={"retry-after": "5"})


async def _unexpected(request: Request, exc: Exception) -> Response:
    logger.exception("unhandled error on %s %s", request.method, request.url.path)
    body = {"error": {"code": "internal_error", "message": "internal error", "details": None}}
    return JSONResponse(body, status_code=500)


class _MountPath:
    """Learns where an outer application mounted the host (ASGI `root_path`), for the URLs it hands out."""

    def __init__(self, app: ASGIApp, runtime: Runtime) -> None:
        self.app = app
        self.runtime = runtime

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and not self.runtime.root_path_given:
            self.runtime.root_path = str(scope.get("root_path", "")).rstrip("/")
        await self.app(scope, receive, send)


def create_app(
    settings: Settings | None = None,
    *,
    plugins: Plugins | None = None,
    store: Store | None = None,
    http: httpx.AsyncClient | None = None,
    clock: Clock | None = None,
    root_path: str | None = None,
) -> Starlette:
    """Build the host. Everything may be injected; what is not comes from settings.

    `root_path`: where an outer application mounts it (e.g. "/bridge"); the
    URLs it hands out (webhook URLs) include it. Learnt from requests when not given.
    """
    rt = Runtime.build(settings, plugins=plugins, store=store, http=http, clock=clock)
    if root_path is not None:
        rt.root_path, rt.root_path_given = root_path.rstrip("/"), True

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[dict[str, Any]]:
        await rt.start()
        try:
            yield {}
        finally:
            await rt.stop()

    app = Starlette(
        routes=ROUTES,
        lifespan=lifespan,
        middleware=[Middleware(_MountPath, runtime=rt)],
        exception_handlers={
            APIError: _api_error,
            HTTPException: _http_error,
            StoreUnavailable: _store_unavailable,
            Exception: _unexpected,
        },
    )
    app.state.runtime = rt
    return app
