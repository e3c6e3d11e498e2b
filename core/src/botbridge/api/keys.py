"""`GET /v1/keys`: the caller's account's API keys, as metadata (never a key or its hash)."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response

from botbridge.api.common import account, page, page_params, runtime


async def list_keys(request: Request) -> Response:
    account_id = await account(request)
    limit, cursor = page_params(request)
    found = await runtime(request).store.list_api_keys(account_id, limit=limit, after=cursor)
    return page([key.public() for key in found], limit)
