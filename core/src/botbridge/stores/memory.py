"""`memory://` — everything in dicts; for tests and throwaway runs.

Each method runs without awaiting between its check and its write, so on
one event loop every operation is atomic.
"""

from __future__ import annotations

from botbridge.clock import Clock
from botbridge.errors import SenderTaken, VersionConflict
from botbridge.hookspecs import hookimpl
from botbridge.models import Connector, Conversation, Sender
from botbridge.store import Store


class MemoryStore(Store):
    def __init__(self, clock: Clock) -> None:
        self.clock = clock
        self.api_keys: dict[str, str] = {}
        self.senders: dict[str, Sender] = {}
        self.connectors: dict[str, Connector] = {}
        self.sender_bindings: dict[str, str] = {}
        self.conversations: dict[tuple[str, str], Conversation] = {}
        self.claims: dict[str, float] = {}

    async def put_api_key(self, key_hash: str, account_id: str) -> None:
        self.api_keys[key_hash] = account_id

    async def account_for_key(self, key_hash: str) -> str | None:
        return self.api_keys.get(key_hash)

    async def create_sender(self, sender: Sender) -> None:
        self.senders[sender.id] = sender.model_copy(deep=True)

    async def get_sender(self, sender_id: str) -> Sender | None:
        sender = self.senders.get(sender_id)
        return sender.model_copy(deep=True) if sender else None

    async def list_senders(self, account_id: str, *, limit: int = 50, after: str | None = None) -> list[Sender]:
        found = sorted(
            (s for s in self.senders.values() if s.account_id == account_id and (after is None or s.id > after)),
            key=lambda s: s.id,
        )
        return [s.model_copy(deep=True) for s in found[:limit]]

    async def update_sender(self, sender: Sender) -> None:
        if sender.id in self.senders:
            self.senders[sender.id] = sender.model_copy(deep=True)

    async def delete_sender(self, sender_id: str) -> bool:
        return self.senders.pop(sender_id, None) is not None

    async def create_connector(self, connector: Connector) -> None:
        if connector.sender_id in self.sender_bindings:
            raise SenderTaken(connector.sender_id)
        self.connectors[connector.id] = connector.model_copy(deep=True)
        self.sender_bindings[connector.sender_id] = connector.id

    async def get_connector(self, connector_id: str) -> Connector | None:
        connector = self.connectors.get(connector_id)
        return connector.model_copy(deep=True) if connector else None

    async def connector_for_sender(self, sender_id: str) -> Connector | None:
        connector_id = self.sender_bindings.get(sender_id)
        return await self.get_connector(connector_id) if connector_id else None

    async def list_connectors(
        self,
        account_id: str,
        *,
        type: str | None = None,
        sender_id: str | None = None,
        external_id: str | None = None,
        limit: int = 50,
        after: str | None = None,
    ) -> list[Connector]:
        found = sorted(
            (
                c
                for c in self.connectors.values()
                if c.account_id == account_id
                and (after is None or c.id > after)
                and (type is None or c.type == type)
                and (sender_id is None or c.sender_id == sender_id)
                and (external_id is None or c.external_id == external_id)
            ),
            key=lambda c: c.id,
        )
        return [c.model_copy(deep=True) for c in found[:limit]]

    async def update_connector(self, connector: Connector, expected_version: int) -> None:
        current = self.connectors.get(connector.id)
        if current is None or current.version_number != expected_version:
            raise VersionConflict(connector.id)
        bound = self.sender_bindings.get(connector.sender_id)
        if bound is not None and bound != connector.id:
            raise SenderTaken(connector.sender_id)
        del self.sender_bindings[current.sender_id]
        self.sender_bindings[connector.sender_id] = connector.id
        self.connectors[connector.id] = connector.model_copy(deep=True)

    async def delete_connector(self, connector_id: str) -> bool:
        connector = self.connectors.pop(connector_id, None)
        if connector is None:
            return False
        self.sender_bindings.pop(connector.sender_id, None)
        return True

    async def get_conversation(self, sender_id: str, contact: str) -> Conversation | None:
        conversation = self.conversations.get((sender_id, contact))
        return conversation.model_copy(deep=True) if conversation else None

    async def put_conversation(self, conversation: Conversation) -> None:
        self.conversations[(conversation.sender_id, conversation.contact)] = conversation.model_copy(deep=True)

    async def claim(self, key: str, ttl: float) -> bool:
        now = self.clock.now()
        expires = self.claims.get(key)
        if expires is not None and expires > now:
            return False
        self.claims[key] = now + ttl
        if len(self.claims) > 100_000:
            self.claims = {k: v for k, v in self.claims.items() if v > now}
        return True


@hookimpl
def register_stores(register):  # type: ignore[no-untyped-def]
    register("memory", lambda url, clock: MemoryStore(clock))
