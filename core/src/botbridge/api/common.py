"""What every route needs: the runtime, the caller's account, a JSON body."""

from __future__ import annotations

import asyncio
import logging
import traceback
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError
from starlette.requests import ClientDisconnect, Request
from starlette.responses import JSONResponse, Response

from botbridge import json_input
from botbridge.errors import APIError, ConfigInvalid, NotFound, Unauthorized
from botbridge.runtime import Runtime

M = TypeVar("M", bound=BaseModel)
logger = logging.getLogger("botbridge.api")


def runtime(request: Request) -> Runtime:
    return request.app.state.runtime  # type: ignore[no-any-return]


async def account(request: Request) -> str:
    scheme, _, key = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not key.strip():
        raise Unauthorized("missing bearer API key", headers={"www-authenticate": "Bearer"})
    account_id = await runtime(request).keys.account_for(key.strip())
    if account_id is None:
        raise Unauthorized("invalid API key", headers={"www-authenticate": "Bearer"})
    runtime(request).require_secrets()
    return account_id


class ClientGone(APIError):
    """The client disconnected before sending its whole body: nobody is left to answer."""

    status_code = 400
    code = "client_disconnected"


async def read_body(request: Request) -> bytes:
    """The request body, bounded in size (413) and in the time it may take to arrive (408)."""
    rt = runtime(request)
    try:
        async with asyncio.timeout(rt.settings.body_timeout):
            return await _read_bounded(request, rt.settings.max_body_bytes)
    except TimeoutError:
        rt.metrics.body_timeouts.inc()
        logger.info("%s %s: body not received in time", request.method, request.url.path)
        raise APIError(
            f"request body not received within {rt.settings.body_timeout:g} s",
            status_code=408,
            code="request_timeout",
            headers={"connection": "close"},
        ) from None
    except ClientDisconnect:
        rt.metrics.client_disconnects.inc()
        logger.info("%s %s: client disconnected before sending its body", request.method, request.url.path)
        raise ClientGone("client disconnected") from None


async def _read_bounded(request: Request, limit: int) -> bytes:
    declared = request.headers.get("content-length")
    if declared is not None:
        try:
            too_big = int(declared) > limit
        except ValueError:
            raise APIError("invalid Content-Length header") from None
        if too_big:
            raise APIError(f"body larger than {limit} bytes", status_code=413, code="payload_too_large")
    chunks = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise APIError(f"body larger than {limit} bytes", status_code=413, code="payload_too_large")
        chunks.append(chunk)
    return b"".join(chunks)


def _is_json(content_type: str) -> bool:
    media_type = content_type.split(";", 1)[0].strip().lower()
    return media_type == "application/json" or media_type.endswith("+json")


async def json_body(request: Request, model: type[M]) -> M:
    if not _is_json(request.headers.get("content-type", "")):
        raise APIError("Content-Type must be application/json", status_code=415, code="unsupported_media_type")
    raw = await read_body(request)
    try:
        data = json_input.loads(raw)
    except json_input.JSONRefused as exc:
        if exc.field == "body" and exc.reason == "not valid JSON":
            raise APIError("body is not valid JSON", code="invalid_json") from None
        raise ConfigInvalid(exc.field, exc.reason) from None
    if not isinstance(data, dict):
        raise APIError("body must be a JSON object", status_code=422, code="validation_error")
    return validate(model, data)


def validate(model: type[M], data: Any) -> M:
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise validation_error(exc) from None


def validation_error(exc: ValidationError) -> APIError:
    # Only locations and messages: pydantic's `input` could echo a credential.
    details = [
        {"field": ".".join(str(part) for part in error["loc"]) or "body", "message": error["msg"]}
        for error in exc.errors(include_url=False, include_input=False, include_context=False)
    ]
    first = details[0] if details else {"field": "body", "message": "invalid"}
    return APIError(f"{first['field']}: {first['message']}", status_code=422, code="validation_error", details=details)


def page_params(request: Request) -> tuple[int, str | None]:
    raw_limit = request.query_params.get("limit", "50")
    try:
        limit = int(raw_limit)
    except ValueError:
        raise APIError("limit must be an integer", status_code=422, code="validation_error") from None
    if not 1 <= limit <= 200:
        raise APIError("limit must be between 1 and 200", status_code=422, code="validation_error")
    cursor = request.query_params.get("cursor") or None
    return limit, cursor


def page(items: list[dict[str, Any]], limit: int) -> JSONResponse:
    next_cursor = items[-1]["id"] if len(items) == limit else None
    return JSONResponse({"items": items, "next_cursor": next_cursor})


def not_found(kind: str, item_id: str) -> NotFound:
    return NotFound(f"{kind} {item_id!r} not found")


Owned = TypeVar("Owned", bound=BaseModel)


def owned(record: Owned | None, account_id: str, kind: str, item_id: str) -> Owned:
    """The record if it is the account's; another account's answers 404 like a missing one."""
    if record is None or getattr(record, "account_id", None) != account_id:
        raise not_found(kind, item_id)
    return record


def no_content() -> Response:
    return Response(status_code=204)


def check_credentials_text(credentials: str) -> None:
    """Refuse credentials holding unbounded JSON before any plugin parses them."""
    try:
        json_input.check_json_text(credentials, "credentials")
    except json_input.JSONRefused as exc:
        raise ConfigInvalid(exc.field, exc.reason) from None


@contextmanager
def plugin_validation(plugin: str) -> Iterator[None]:
    """Turn a plugin's unexpected exception while checking settings into a 422.

    A plugin should raise ConfigInvalid naming the field; anything else is
    its bug, but the caller still gets a 4xx and the operator a log line that
    says where (not the message, which could quote a credential).
    """
    try:
        yield
    except APIError:
        raise
    except Exception as exc:
        where = traceback.extract_tb(exc.__traceback__)[-1]
        logger.error(
            "plugin %s raised %s checking settings, at %s:%s; answered 422 (a bug in the plugin)",
            plugin,
            type(exc).__name__,
            where.filename.rsplit("/", 1)[-1],
            where.lineno,
        )
        message = f"the {plugin} plugin could not check these settings (its error is in the host's log)"
        raise APIError(
            message, status_code=422, code="validation_error", details=[{"field": "body", "message": message}]
        ) from None
