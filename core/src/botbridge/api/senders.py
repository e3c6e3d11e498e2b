"""`/v1/senders`: the channel addresses an account owns."""

from __future__ import annotations

import logging

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from botbridge import optout, shaping
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
from botbridge.channel import WEBHOOK_VIA
from botbridge.errors import (
    APIError,
    ConfigInvalid,
    Conflict,
    CredentialsInvalid,
    NotFound,
    ProviderError,
    tenant_reason,
)
from botbridge.models import Sender, SenderCreate, SenderUpdate, utcnow
from botbridge.runtime import Runtime, api_error_from_config

logger = logging.getLogger("botbridge.api")


async def owned_sender(rt: Runtime, account_id: str, sender_id: str) -> Sender:
    return owned(await rt.store.get_sender(sender_id), account_id, "sender", sender_id)


async def named_sender(rt: Runtime, account_id: str, sender_id: str) -> Sender:
    """The sender a request body names: a 422 on `sender_id` (not a 404) when it is not the account's."""
    try:
        return await owned_sender(rt, account_id, sender_id)
    except NotFound:
        raise ConfigInvalid("sender_id", f"no sender {sender_id!r} in this account") from None


# Keys of a sender's config that core reads (opt-out, shaping), whatever the channel.
CORE_SENDER_KEYS = ("opt_out", "shaping")


def _validated_config(rt: Runtime, channel: str, address: str, credentials: str, secret: str, config: dict) -> dict:  # type: ignore[type-arg]
    plugin = rt.channel(channel)
    check_credentials_text(credentials)
    # Core's own keys are core's to check; the plugin sees the rest (some refuse keys they do not know).
    checked = shaping.validate(optout.validate(config))
    own = {key: checked[key] for key in CORE_SENDER_KEYS if key in checked}
    try:
        with plugin_validation(channel):
            rest = {key: value for key, value in checked.items() if key not in CORE_SENDER_KEYS}
            return {**plugin.validate_sender(address, credentials, secret, rest), **own}
    except ConfigInvalid as exc:
        field = exc.field.split(".", 1)[0]
        raise (
            exc
            if field in ("address", "credentials", "webhook_secret", "config")
            else api_error_from_config(exc, "config")
        ) from None


async def create_sender(request: Request) -> Response:
    account_id = await account(request)
    rt = runtime(request)
    body = await json_body(request, SenderCreate)
    config = _validated_config(rt, body.channel, body.address, body.credentials, body.webhook_secret, body.config)
    await rt.check_outbound(config, body.credentials)
    sender = Sender(
        account_id=account_id,
        channel=body.channel,
        address=body.address,
        config=config,
        credentials_enc=rt.box.encrypt(body.credentials),
        webhook_secret_enc=rt.box.encrypt(body.webhook_secret),
    )
    await rt.store.create_sender(sender)
    if config.get("provision"):
        sender = await _provision(rt, sender)
    logger.info("sender %s created (channel %s)", sender.id, sender.channel)
    return JSONResponse(sender.public(rt.webhook_url(sender)), status_code=201)


async def _provision(rt: Runtime, sender: Sender) -> Sender:
    try:
        result = await rt.channel(sender.channel).provision(rt.sender_context(sender))
    except CredentialsInvalid as exc:
        await rt.store.delete_sender(sender.id)
        raise ConfigInvalid("credentials", f"the provider refused them: {tenant_reason(exc)}") from None
    except ProviderError as exc:
        await rt.store.delete_sender(sender.id)
        raise APIError(
            f"provisioning at the provider failed: {tenant_reason(exc)}", status_code=502, code="provision_failed"
        ) from None
    except APIError:
        await rt.store.delete_sender(sender.id)
        raise
    if result is None:
        return sender
    via = result.config.get(WEBHOOK_VIA)
    if via is not None:
        # Callbacks through another sender's webhook are only ever routed within
        # one account and channel: refuse a webhook that belongs to anyone else.
        owner = await rt.store.get_sender(str(via))
        if owner is None or owner.account_id != sender.account_id or owner.channel != sender.channel:
            await rt.store.delete_sender(sender.id)
            raise Conflict("the provider's webhook for these credentials belongs to a sender of another account")
    if result.webhook_secret is not None:
        sender.webhook_secret_enc = rt.box.encrypt(result.webhook_secret)
    sender.config = {**sender.config, **result.config}
    sender.state = result.state
    sender.state_reason = result.state_reason
    sender.updated_at = utcnow()
    await rt.store.update_sender(sender)
    rt.cache.clear()
    return sender


async def list_senders(request: Request) -> Response:
    account_id = await account(request)
    limit, cursor = page_params(request)
    rt = runtime(request)
    senders = await rt.store.list_senders(account_id, limit=limit, after=cursor)
    return page([s.public(rt.webhook_url(s)) for s in senders], limit)


async def get_sender(request: Request) -> Response:
    account_id = await account(request)
    rt = runtime(request)
    sender = await owned_sender(rt, account_id, request.path_params["sender_id"])
    return JSONResponse(sender.public(rt.webhook_url(sender)))


async def update_sender(request: Request) -> Response:
    account_id = await account(request)
    rt = runtime(request)
    sender = await owned_sender(rt, account_id, request.path_params["sender_id"])
    body = await json_body(request, SenderUpdate)
    credentials = body.credentials if body.credentials is not None else rt.box.decrypt(sender.credentials_enc)
    secret = body.webhook_secret if body.webhook_secret is not None else rt.box.decrypt(sender.webhook_secret_enc)
    address = body.address or sender.address
    config = body.config if body.config is not None else sender.config
    sender.config = _validated_config(rt, sender.channel, address, credentials, secret, config)
    await rt.check_outbound(sender.config, credentials)
    sender.address = address
    sender.credentials_enc = rt.box.encrypt(credentials)
    sender.webhook_secret_enc = rt.box.encrypt(secret)
    sender.updated_at = utcnow()
    await rt.store.update_sender(sender)
    rt.cache.clear()
    return JSONResponse(sender.public(rt.webhook_url(sender)))


async def delete_sender(request: Request) -> Response:
    account_id = await account(request)
    rt = runtime(request)
    sender = await owned_sender(rt, account_id, request.path_params["sender_id"])
    connector = await rt.store.connector_for_sender(sender.id)
    if connector is not None:
        raise Conflict(f"sender is bound to connector {connector.id!r}; delete the connector first")
    if sender.config.get("provision"):
        try:
            await rt.channel(sender.channel).deprovision(rt.sender_context(sender))
        except ProviderError as exc:
            raise APIError(
                f"undoing provisioning failed: {tenant_reason(exc)}", status_code=502, code="deprovision_failed"
            ) from None
    await rt.store.delete_sender(sender.id)
    rt.cache.clear()
    return no_content()
