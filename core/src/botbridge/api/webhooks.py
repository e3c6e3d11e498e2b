"""`POST /v1/webhooks/{channel}/{sender_id}`: where providers deliver.

The channel plugin verifies and parses the raw request; the runtime accepts
what it carried (dedupe, then hand-off) before the provider gets its 2xx.
"""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from botbridge.api.common import not_found, read_body, runtime
from botbridge.channel import WebhookRequest
from botbridge.errors import NotFound
from botbridge.models import Sender
from botbridge.runtime import Runtime


async def _incoming(request: Request) -> tuple[Runtime, Sender, WebhookRequest]:
    rt = runtime(request)
    channel_name = request.path_params["channel"]
    sender_id = request.path_params["sender_id"]
    if channel_name not in rt.plugins.channels:
        raise not_found("channel", channel_name)
    sender = await rt.cache.sender(sender_id)
    if sender is None or sender.channel != channel_name:
        raise not_found("sender", sender_id)
    body = await read_body(request)
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
    result = await rt.channel(sender.channel).parse_webhook(incoming, rt.sender_context(sender))
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
