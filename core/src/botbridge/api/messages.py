"""`/v1/messages`: send an outbound message through a sender, and follow its state."""

from __future__ import annotations

import logging

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from botbridge import optout
from botbridge.api.common import account, json_body, not_found, runtime
from botbridge.api.senders import named_sender
from botbridge.errors import APIError, ConfigInvalid
from botbridge.logs import correlation_id, mask
from botbridge.models import MessageCreate, MessageView, OutboundMessage, Sender, StateChange, from_epoch
from botbridge.runtime import Runtime

logger = logging.getLogger("botbridge.api")


def view(message: OutboundMessage) -> dict[str, object]:
    return MessageView.model_validate(message.model_dump()).model_dump(mode="json")


async def queue_message(rt: Runtime, sender: Sender, body: MessageCreate) -> OutboundMessage:
    """Queue an MT that did not come from a bot (the REST API, or an application embedding botbridge)."""
    if not (body.text or body.media):
        raise ConfigInvalid("text", "a message needs text or media")
    if optout.settings_for(sender, rt.capabilities(sender)) and await rt.store.get_opt_out(sender.id, body.to):
        raise APIError(
            f"{body.to} opted out of this sender (STOP): nothing can be sent until they opt in with START "
            "or an operator removes the opt-out (DELETE /v1/opt-outs/{sender_id}/{contact})",
            status_code=409,
            code="contact_opted_out",
        )
    now = from_epoch(rt.clock.now())
    message = OutboundMessage(
        account_id=sender.account_id,
        origin="api",
        states=[StateChange(state="CREATED", at=now)],
        created_at=now,
        updated_at=now,
        sender_id=sender.id,
        contact=body.to,
        text=body.text,
        media=body.media,
        options=body.options,
        external_id=body.external_id,
        conversation_id=body.conversation_id,
    )
    correlation_id.set(message.id)  # its send and its events log under the message's id
    logger.info("MT %s queued through the API for %s", message.id, mask(message.contact))
    return await rt.engine.send_message(sender, message)


async def send_message(request: Request) -> Response:
    account_id = await account(request)
    rt = runtime(request)
    body = await json_body(request, MessageCreate)
    sender = await named_sender(rt, account_id, body.sender_id)
    if body.conversation_id is not None:
        conversation = await rt.store.get_conversation_by_id(body.conversation_id)
        if conversation is None or conversation.account_id != account_id or conversation.sender_id != sender.id:
            raise ConfigInvalid("conversation_id", "no conversation of this sender with that id")
        if conversation.contact != body.to:
            raise ConfigInvalid("to", "must be the conversation's contact")
    message = await queue_message(rt, sender, body)
    return JSONResponse(view(message), status_code=202)


async def get_message(request: Request) -> Response:
    account_id = await account(request)
    rt = runtime(request)
    message = await rt.store.get_outbound(request.path_params["message_id"])
    sender = await rt.store.get_sender(message.sender_id) if message else None
    if message is None or sender is None or sender.account_id != account_id:
        raise not_found("message", request.path_params["message_id"])
    return JSONResponse(view(message))
