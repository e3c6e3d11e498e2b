"""A conversation's timeline: its history entries and its outbound messages, in time order."""

from __future__ import annotations

from botbridge.models import Conversation, HistoryEntry, MessageHistoryView, OutboundMessage, TimelineItem, from_epoch
from botbridge.store import MessageFilter, Store

# A timeline reads this many entries and messages at most (a conversation ends after its timeout).
TIMELINE_LIMIT = 1000
# At one instant a conversation opens before the MO that opened it, and closes last.
_RANK = {"conversation_opened": 0, "conversation_closed": 2}


def entry_item(entry: HistoryEntry) -> TimelineItem:
    data = entry.data
    return TimelineItem.model_validate(
        {
            "type": entry.kind,
            "id": entry.id,
            "at": from_epoch(entry.at),
            "text": data.get("text"),
            "media": data.get("media"),
            "postback": data.get("postback"),
            "provider_message_id": data.get("provider_message_id"),
            "message_id": data.get("message_id"),
            "reason": data.get("reason"),
        }
    )


def message_item(message: OutboundMessage) -> TimelineItem:
    view = MessageHistoryView.model_validate(message.model_dump())
    return TimelineItem(type="mt", id=message.id, at=message.created_at, message=view)


async def timeline(store: Store, conversation: Conversation) -> list[TimelineItem]:
    """Every MO, reply (with its states), bot error, opening and closing of `conversation`, in order."""
    entries = await store.list_history(conversation.id, limit=TIMELINE_LIMIT)
    messages = (
        await store.list_outbound(
            conversation.account_id, MessageFilter(conversation_id=conversation.id), limit=TIMELINE_LIMIT
        )
        if conversation.account_id
        else []
    )
    items = [entry_item(e) for e in entries] + [message_item(m) for m in messages]
    items.sort(key=lambda item: (item.at, _RANK.get(item.type, 1), item.id))
    return items
