"""Inbound attachments: SCG keeps them behind its bearer token.

`GET /messaging/attachments/{id}` is the attachment's metadata and
`…/{id}/content` its bytes (SCG Swagger, "Attachments"); neither is usable
by a bot that lacks the SCG token. So the bot gets a host URL,
`{webhook_url}/attachments/{token}`, whose unguessable token names the
attachment and expires; the host fetches the content with the token.
"""

from __future__ import annotations

import re

import httpx

from botbridge.channel import ChannelResponse, SenderContext
from botbridge.errors import APIError, NotFound
from botbridge_scg import tokens

ROUTE_PREFIX = "attachments/"
PURPOSE = "attachment"
URL_TTL = 24 * 3600  # seconds a bot may take to fetch what a user sent
MAX_BYTES = 20 * 1024 * 1024
ATTACHMENT_ID = re.compile(r"^[A-Za-z0-9_-]{1,128}$")


def media_url(sender: SenderContext, attachment_id: str, now: float) -> str:
    token = tokens.issue(sender.webhook_secret, f"{PURPOSE}|{sender.id}", attachment_id, int(now) + URL_TTL)
    return f"{sender.webhook_url}/{ROUTE_PREFIX}{token}"


def attachment_id(sender: SenderContext, token: str, now: float) -> str:
    found = tokens.verify(sender.webhook_secret, f"{PURPOSE}|{sender.id}", token, now)
    if found is None or not ATTACHMENT_ID.match(found):
        raise NotFound("no such attachment, or its link has expired")
    return found


async def fetch(http: httpx.AsyncClient, api_url: str, scg_token: str, attachment: str) -> ChannelResponse:
    """The attachment's content, fetched from SCG with the sender's token."""
    url = f"{api_url}/messaging/attachments/{attachment}/content"
    try:
        async with http.stream("GET", url, headers={"authorization": f"Bearer {scg_token}"}) as response:
            if response.status_code == 404:
                raise NotFound("SCG has no such attachment")
            if response.status_code != 200:
                raise APIError(
                    f"SCG answered {response.status_code} for the attachment", status_code=502, code="provider_error"
                )
            content = bytearray()
            async for chunk in response.aiter_bytes():
                content += chunk
                if len(content) > MAX_BYTES:
                    raise APIError("the attachment is too large to relay", status_code=502, code="provider_error")
            content_type = response.headers.get("content-type") or "application/octet-stream"
    except httpx.HTTPError:
        raise APIError("SCG could not be reached for the attachment", status_code=502, code="provider_error") from None
    # Served from our domain: never let a browser render it as a page of ours.
    headers = {
        "cache-control": "private, no-store",
        "x-content-type-options": "nosniff",
        "content-security-policy": "sandbox",
        "content-disposition": "attachment",
    }
    return ChannelResponse(200, bytes(content), content_type, headers)
