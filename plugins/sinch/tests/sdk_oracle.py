"""The official `sinch` SDK (test-only dependency) as the oracle for what we send and parse.

Its pydantic models accept extra keys (`extra="allow"`), so validating is
not enough: every key must also be a field the SDK knows.

The SDK (2.3.0) has models for apps, contacts and messages only, none for
webhooks: the `POST /webhooks` and `GET /apps/{app}/webhooks` requests that
provisioning makes are checked by the fake against Sinch's documented fields,
not here.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel
from sinch.domains.conversation.models.v1.messages.internal.request.send_message_request import (
    SendMessageRequest,
)
from sinch.domains.conversation.sinch_events.v1.conversation_sinch_event import ConversationSinchEvent


def _unknown_keys(node: Any, where: str = "") -> list[str]:
    found: list[str] = []
    if isinstance(node, BaseModel):
        found += [f"{where}.{key}".lstrip(".") for key in node.__pydantic_extra__ or {}]
        for name in type(node).model_fields:
            found += _unknown_keys(getattr(node, name), f"{where}.{name}")
    elif isinstance(node, list):
        for index, item in enumerate(node):
            found += _unknown_keys(item, f"{where}[{index}]")
    return found


def assert_sdk_accepts_send(body: dict[str, Any]) -> None:
    """`body` is a valid `messages:send` request by the SDK's `SendMessageRequest`."""
    model = SendMessageRequest.model_validate(body)
    unknown = _unknown_keys(model)
    assert not unknown, f"keys the Sinch SDK does not know: {unknown}"
    kinds = [k for k, v in body["message"].items() if v is not None]
    assert len(kinds) == 1, f"message must hold exactly one kind, got {kinds}"


def sdk_event(body: bytes, secret: str, headers: dict[str, str]) -> Any:
    """The SDK's verdict on a callback: signature check, then the parsed event."""
    events = ConversationSinchEvent(secret)
    assert events.validate_authentication_header(headers, body.decode())
    return events.parse_event(body.decode(), headers)
