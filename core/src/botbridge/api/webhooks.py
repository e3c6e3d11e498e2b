"""`POST /v1/webhooks/{channel}/{sender_id}`: where providers deliver.

The channel plugin verifies and parses the raw request; the runtime accepts
what it carried (dedupe, then hand-off) before the provider gets its 2xx.
"""

from __future__ import annotations

import logging

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from botbridge.api.common import not_found, read_body, runtime
from botbridge.channel import WebhookRequest
from botbridge.errors import APIError, InvalidSignature, MalformedWebhook, NotFound, tenant_text
from botbridge.models import Sender
from botbridge.runtime import Runtime

logger = logging.getLogger("botbridge.webhooks")


def _refused(rt: Runtime, channel: str, sender_id: str, reason: str, detail: str) -> None:
    """One line and one count per refused webhook: never the signature, the secret or the body."""
    rt.metrics.webhooks_rejected.labels(channel, reason).inc()
    logger.warning("webhook refused (%s): channel %s, sender %s: %s", reason, channel, sender_id, tenant_text(detail))


async def _incoming(request: Request) -> tuple[Runtime, Sender, WebhookRequest]:
    rt = runtime(request)
    channel_name = request.path_params["channel"]
    sender_id = request.path_params["sender_id"]
    if channel_name not in rt.plugins.channels:
        _refused(rt, "unknown", sender_id, "unknown_channel", f"no channel {channel_name[:40]!r} is installed")
        raise not_found("channel", channel_name)
    sender = await rt.cache.sender(sender_id)
    if sender is None or sender.channel != channel_name:
        _refused(rt, channel_name, sender_id[:40], "unknown_sender", "no such sender on this channel")
        raise not_found("sender", sender_id)
    try:
        body = await read_body(request)
    except APIError as exc:
        if exc.status_code in (408, 413):
            reason = "too_large" if exc.status_code == 413 else "too_slow"
            _refused(rt, channel_name, sender_id, reason, str(exc))
        raise
    return (
        rt,
        sender,
        WebhookRequest(
            method=request.method,
            url=_public_url(request, rt.settings.public_url),
            headers={k.lower(): v for k, v in request.headers.items()},
            body=body,
            query=dict(request.query_params),
        ),
    )


async def receive_webhook(request: Request) -> Response:
    rt, sender, incoming = await _incoming(request)
    try:
        result = await rt.channel(sender.channel).parse_webhook(incoming, rt.sender_context(sender))
    except InvalidSignature as exc:
        _refused(rt, sender.channel, sender.id, "signature", str(exc))
        raise
    except MalformedWebhook as exc:
        _refused(rt, sender.channel, sender.id, "malformed", str(exc))
        raise
    accepted = await rt.engine.accept(sender, result)
    return JSONResponse({"status": "accepted", **accepted})


async def channel_route(request: Request) -> Response:
    """`GET|POST /v1/webhooks/{channel}/{sender_id}/{route}`: the channel's own routes."""
    rt, sender, incoming = await _incoming(request)
    route = request.path_params["route"]
    answer = await rt.channel(sender.channel).handle_route(route, incoming, rt.sender_context(sender))
    if answer is None:
        raise NotFound(f"no route {route!r} for this channel")
    return Response(answer.body, answer.status, headers=dict(answer.headers), media_type=answer.content_type)


def _public_url(request: Request, public_url: str | None) -> str:
    if not public_url:
        return str(request.url)
    query = request.url.query
    return public_url + request.url.path + (f"?{query}" if query else "")
