"""What happened, for an operator: conversations and their timelines, outbound messages, erasure.

Tenant-scoped like everything else: another account's conversation or
message answers 404, and a filter never reaches outside the caller's account.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from botbridge.api.common import account, owned, page_params, runtime
from botbridge.bot import default_session_id
from botbridge.errors import APIError, Conflict
from botbridge.models import (
    Conversation,
    ConversationView,
    ErasureView,
    MessageHistoryView,
    OutboundMessage,
    from_epoch,
)
from botbridge.runtime import Runtime
from botbridge.store import ConversationFilter, MessageFilter
from botbridge.timeline import timeline


def _invalid(message: str) -> APIError:
    return APIError(message, status_code=422, code="validation_error")


def _time(request: Request, name: str) -> float | None:
    """A time filter: ISO 8601 with a zone (`2026-12-01T10:00:00Z`) or epoch seconds."""
    raw = request.query_params.get(name) or None
    if raw is None:
        return None
    try:
        return float(raw)
    except ValueError:
        pass
    try:
        moment = datetime.fromisoformat(raw)
    except ValueError:
        raise _invalid(f"{name} must be ISO 8601 or epoch seconds") from None
    if moment.tzinfo is None:
        raise _invalid(f"{name} needs a time zone (e.g. Z)")
    # Times are shown to the microsecond, rounded: a time copied from an answer
    # (`opened_at` as `since`) may be up to half a microsecond late.
    return moment.timestamp() - 1e-6


def _one_of(request: Request, name: str, choices: tuple[str, ...]) -> str | None:
    value = request.query_params.get(name) or None
    if value is not None and value not in choices:
        raise _invalid(f"{name} must be one of {', '.join(choices)}")
    return value


def _page(items: list[dict[str, Any]], limit: int) -> JSONResponse:
    """One page; `next_cursor` only when another page exists (the store was asked for one more)."""
    shown = items[:limit]
    return JSONResponse({"items": shown, "next_cursor": shown[-1]["id"] if len(items) > limit else None})


async def _session_id(rt: Runtime, conversation: Conversation) -> str | None:
    connector = await rt.cache.connector(conversation.connector_id)
    if connector is not None and connector.type in rt.plugins.bot_backends:
        return rt.bot(connector.type).session_id(conversation.backend_state)
    return default_session_id(conversation.backend_state)


async def conversation_view(rt: Runtime, conversation: Conversation) -> dict[str, Any]:
    return ConversationView(
        id=conversation.id,
        sender_id=conversation.sender_id,
        connector_id=conversation.connector_id,
        contact=conversation.contact,
        state=conversation.state,
        opened_at=from_epoch(conversation.opened_at),
        last_mo_at=from_epoch(conversation.last_mo_at),
        closed_at=from_epoch(conversation.closed_at) if conversation.closed_at is not None else None,
        backend_session_id=await _session_id(rt, conversation),
        handoff_at=from_epoch(conversation.handoff_at) if conversation.handoff_at is not None else None,
        handoff_by=conversation.handoff_by,
    ).model_dump(mode="json")


def message_view(message: OutboundMessage) -> dict[str, Any]:
    return MessageHistoryView.model_validate(message.model_dump()).model_dump(mode="json")


async def _owned_conversation(rt: Runtime, account_id: str, conversation_id: str) -> Conversation:
    return owned(await rt.store.get_conversation_by_id(conversation_id), account_id, "conversation", conversation_id)


async def list_conversations(request: Request) -> Response:
    account_id = await account(request)
    rt = runtime(request)
    limit, cursor = page_params(request)
    where = ConversationFilter(
        sender_id=request.query_params.get("sender_id") or None,
        connector_id=request.query_params.get("connector_id") or None,
        contact=request.query_params.get("contact") or None,
        state=_one_of(request, "state", ("open", "closed")),
        since=_time(request, "since"),
        until=_time(request, "until"),
    )
    found = await rt.store.list_conversations(account_id, where, limit=limit + 1, before=cursor)
    return _page([await conversation_view(rt, c) for c in found], limit)


async def get_conversation(request: Request) -> Response:
    account_id = await account(request)
    rt = runtime(request)
    conversation = await _owned_conversation(rt, account_id, request.path_params["conversation_id"])
    return JSONResponse(await conversation_view(rt, conversation))


async def conversation_timeline(request: Request) -> Response:
    """Every MO, bot reply (each with its state history), bot error, opening and closing, in order."""
    account_id = await account(request)
    rt = runtime(request)
    conversation = await _owned_conversation(rt, account_id, request.path_params["conversation_id"])
    items = await timeline(rt.store, conversation)
    return JSONResponse({"items": [i.model_dump(mode="json", exclude_none=True) for i in items]})


async def _change(request: Request, action: str) -> Response:
    account_id = await account(request)
    rt = runtime(request)
    conversation = await _owned_conversation(rt, account_id, request.path_params["conversation_id"])
    current = await rt.store.get_conversation(conversation.sender_id, conversation.contact)
    if conversation.state != "open" or current is None or current.id != conversation.id:
        raise Conflict("the conversation has ended: a new one starts with the bot")
    await rt.engine.change_conversation(conversation, action)
    return JSONResponse({"conversation_id": conversation.id, "action": action, "state": "queued"}, status_code=202)


async def hand_off(request: Request) -> Response:
    """Hand a conversation to a person: the bot is not called until it is resumed (queued behind its turns)."""
    return await _change(request, "handoff")


async def resume(request: Request) -> Response:
    """Give a handed-off conversation back to the bot."""
    return await _change(request, "resume")


async def list_messages(request: Request) -> Response:
    account_id = await account(request)
    rt = runtime(request)
    limit, cursor = page_params(request)
    where = MessageFilter(
        sender_id=request.query_params.get("sender_id") or None,
        contact=request.query_params.get("to") or None,
        state=request.query_params.get("state") or None,
        external_id=request.query_params.get("external_id") or None,
        conversation_id=request.query_params.get("conversation_id") or None,
        since=_time(request, "since"),
        until=_time(request, "until"),
    )
    found = await rt.store.list_outbound(account_id, where, limit=limit + 1, before=cursor)
    return _page([message_view(m) for m in found], limit)


async def erase_contact(request: Request) -> Response:
    """A right-to-erasure request: everything the account's senders hold about one contact."""
    account_id = await account(request)
    rt = runtime(request)
    contact = request.path_params["contact"]
    sender_ids: list[str] = []
    after = None
    while batch := await rt.store.list_senders(account_id, limit=200, after=after):
        sender_ids += [s.id for s in batch]
        after = batch[-1].id
    erased = await rt.store.erase_contact(account_id, contact, sender_ids)
    return JSONResponse(ErasureView(contact=contact, records_erased=erased).model_dump(mode="json"))
