"""`POST /v1/webhooks/{channel}/{sender_id}`: where providers deliver.

The channel plugin verifies and parses the raw request; the runtime accepts
what it carried (dedupe, then hand-off) before the provider gets its 2xx.
"""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from botbridge.api.common import not_found, read_body, runtime
from botbridge.channel import WebhookRequest


async def receive_webhook(request: Request) -> Response:
    rt = runtime(request)
    channel_name = request.path_params["channel"]
    sender_id = request.path_params["sender_id"]
    if channel_name not in rt.plugins.channels:
        raise not_found("channel", channel_name)
    sender = await rt.cache.sender(sender_id)
    if sender is None or sender.channel != channel_name:
        raise not_found("sender", sender_id)
    body = await read_body(request)
    incoming = WebhookRequest(
        method=request.method,
        url=_public_url(request, rt.settings.public_url),
        headers={k.lower(): v for k, v in request.headers.items()},
        body=body,
        query=dict(request.query_params),
    )
    result = await rt.channel(channel_name).parse_webhook(incoming, rt.sender_context(sender))
    accepted = await rt.engine.accept(sender, result)
    return JSONResponse({"status": "accepted", **accepted})


def _public_url(request: Request, public_url: str | None) -> str:
    if not public_url:
        return str(request.url)
    query = request.url.query
    return public_url + request.url.path + (f"?{query}" if query else "")
