"""Events in SCG's Event Subscription Service format, and their delivery.

Field names follow `seeds/001`: `mo_message_received` for every MO,
`message_request_state_change` when a channel accepts or refuses an MT,
`message_state_change` for every delivery report after that. botbridge adds
`mo_message_dropped` (no connector, or a contact who opted out), `bot_error`
(the bot failed), `contact_opted_out` / `contact_opted_in`, and for
hand-offs `conversation_handoff`, `mo_waiting_for_agent` and
`conversation_resumed`.
"""

from __future__ import annotations

import json
from typing import Any

from botbridge.models import (
    EVENT_BODY_LIMIT,
    Conversation,
    Event,
    EventBody,
    InboundMessage,
    OutboundMessage,
    Sender,
    from_epoch,
)
from botbridge.sms import fragments_count, truncate

TOPIC = "SCG-Message"


def make_event(evt_tp: str, fields: dict[str, Any], now: float, event_id: str | None = None) -> Event:
    body = EventBody.model_validate({"fld-val-list": fields, "evt-tp": evt_tp, "timestamp": from_epoch(now)})
    return Event.model_validate({"event": body, **({"event-id": event_id} if event_id else {})})


def _common(sender: Sender) -> dict[str, Any]:
    return {"sender_id_id": sender.id, "sender_id_alias": sender.address, "company-id": sender.account_id}


def mo_fields(message: InboundMessage, sender: Sender) -> dict[str, Any]:
    body, truncated = truncate(message.text, EVENT_BODY_LIMIT)
    fields = {
        **_common(sender),
        "message_id": message.id,
        "provider_message_id": message.provider_message_id,
        "from_address": message.contact,
        "to_address": message.to_address or sender.address,
        "message_body": body,
        "message_body_truncated": truncated,
        "fragments_count": fragments_count(message.text),
        "has_attachment": bool(message.media),
        "channel": message.channel,
    }
    if message.media:
        fields["attachment_ids"] = ",".join(m.url for m in message.media)
    return fields


def contact_fields(sender: Sender, contact: str, keyword: str, message_id: str | None) -> dict[str, Any]:
    """An opt-out or opt-in: who, of which sender, how (the keyword they sent, or "api")."""
    return {**_common(sender), "from_address": contact, "keyword": keyword, "message_id": message_id or ""}


def conversation_fields(sender: Sender, conversation: Conversation, reason: str) -> dict[str, Any]:
    """A conversation handed to a person or back to the bot: which, and why (bot, api, keyword, timeout)."""
    return {
        **_common(sender),
        "conversation_id": conversation.id,
        "connector_id": conversation.connector_id,
        "from_address": conversation.contact,
        "reason": reason,
    }


def state_fields(
    message: OutboundMessage, sender: Sender, previous: str, reason_code: str | None, reason: str | None
) -> dict[str, Any]:
    return {
        **_common(sender),
        "previous_state": previous,
        "new_state": message.state,
        "message_request_id": message.id,
        "message_id": message.id,
        "provider_message_id": message.provider_message_id or "",
        "to_address": message.contact,
        "from_address": sender.address,
        "has_attachment": bool(message.media),
        "reason_code": reason_code or ("200" if message.state != "FAILED" else ""),
        "reason_description": reason or ("SUCCESS" if message.state != "FAILED" else ""),
        "external_message_request_id": message.external_id or "",
        "fragments_count": fragments_count(message.text),
    }


def delivery_body(event_payload: dict[str, Any], attempt: int) -> bytes:
    return json.dumps({**event_payload, "attempt": attempt}, separators=(",", ":")).encode()
