"""`/v1/connectors`: the seed's connector API (one sender bound to one bot)."""

from __future__ import annotations

import logging
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from botbridge.api.common import (
    account,
    check_credentials_text,
    json_body,
    no_content,
    owned,
    page,
    page_params,
    plugin_validation,
    runtime,
)
from botbridge.api.senders import named_sender
from botbridge.errors import ConfigInvalid, Conflict, SenderTaken, VersionConflict
from botbridge.models import Connector, ConnectorConfig, ConnectorCreate, ConnectorUpdate, utcnow
from botbridge.runtime import Runtime, api_error_from_config

logger = logging.getLogger("botbridge.api")


async def owned_connector(rt: Runtime, account_id: str, connector_id: str) -> Connector:
    return owned(await rt.store.get_connector(connector_id), account_id, "connector", connector_id)


def _check_credentials(rt: Runtime, type_name: str, credentials: str, config: dict[str, Any]) -> None:
    bot = rt.bot(type_name)
    check_credentials_text(credentials)
    try:
        with plugin_validation(type_name):
            bot.validate_credentials(credentials, config)
    except ConfigInvalid as exc:
        root = "config" if exc.field.startswith("config") else "credentials"
        raise api_error_from_config(exc, root) from None


def _taken(sender_id: str) -> Conflict:
    return Conflict(f"sender {sender_id!r} is already bound to a connector", code="sender_taken")


async def create_connector(request: Request) -> Response:
    account_id = await account(request)
    rt = runtime(request)
    body = await json_body(request, ConnectorCreate)
    rt.bot(body.type)  # unknown type: 422 naming the installed ones
    await named_sender(rt, account_id, body.sender_id)
    config = body.config.model_dump(exclude_none=True)
    _check_credentials(rt, body.type, body.credentials, config)
    await rt.check_outbound(config, body.credentials)
    connector = Connector(
        account_id=account_id,
        type=body.type,
        sender_id=body.sender_id,
        external_id=body.external_id,
        config=config,
        credentials_enc=rt.box.encrypt(body.credentials),
    )
    try:
        await rt.store.create_connector(connector)
    except SenderTaken:
        raise _taken(body.sender_id) from None
    rt.cache.clear()
    logger.info("connector %s created (type %s)", connector.id, connector.type)
    return JSONResponse(connector.public(), status_code=201)


async def list_connectors(request: Request) -> Response:
    account_id = await account(request)
    limit, cursor = page_params(request)
    query = request.query_params
    connectors = await runtime(request).store.list_connectors(
        account_id,
        type=query.get("type"),
        sender_id=query.get("sender_id"),
        external_id=query.get("external_id"),
        limit=limit,
        after=cursor,
    )
    return page([c.public() for c in connectors], limit)


async def get_connector(request: Request) -> Response:
    account_id = await account(request)
    connector = await owned_connector(runtime(request), account_id, request.path_params["connector_id"])
    return JSONResponse(connector.public())


async def update_connector(request: Request) -> Response:
    account_id = await account(request)
    rt = runtime(request)
    current = await owned_connector(rt, account_id, request.path_params["connector_id"])
    body = await json_body(request, ConnectorUpdate)
    if body.version_number != current.version_number:
        raise Conflict(
            f"version_number {body.version_number} is not the current {current.version_number}",
            code="version_conflict",
            details={"current_version_number": current.version_number},
        )
    if body.type is not None and body.type != current.type:
        raise ConfigInvalid("type", "the type of a connector cannot change; create a new connector")
    updated = current.model_copy(deep=True)
    if body.sender_id is not None and body.sender_id != current.sender_id:
        await named_sender(rt, account_id, body.sender_id)
        updated.sender_id = body.sender_id
    if body.external_id is not None:
        updated.external_id = body.external_id
    if body.config is not None:
        updated.config = ConnectorConfig.model_validate(
            {**current.config, **body.config.model_dump(exclude_unset=True)}
        ).model_dump(exclude_none=True)
    if body.credentials is not None or body.config is not None:
        credentials = body.credentials if body.credentials is not None else rt.box.decrypt(current.credentials_enc)
        _check_credentials(rt, current.type, credentials, updated.config)
        await rt.check_outbound(updated.config, credentials)
        if body.credentials is not None:
            updated.credentials_enc = rt.box.encrypt(credentials)
            # New credentials deserve a new chance.
            updated.state, updated.state_reason = "active", None
    updated.version_number = current.version_number + 1
    updated.updated_at = utcnow()
    try:
        await rt.store.update_connector(updated, expected_version=current.version_number)
    except VersionConflict:
        raise Conflict("the connector changed meanwhile; read it again", code="version_conflict") from None
    except SenderTaken:
        raise _taken(updated.sender_id) from None
    rt.cache.clear()
    return JSONResponse(updated.public())


async def delete_connector(request: Request) -> Response:
    account_id = await account(request)
    rt = runtime(request)
    connector = await owned_connector(rt, account_id, request.path_params["connector_id"])
    await rt.store.delete_connector(connector.id)
    rt.cache.clear()
    return no_content()
