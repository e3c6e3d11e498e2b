"""The store interface: everything botbridge persists.

One implementation is selected by BOTBRIDGE_STORE's URL scheme; plugins add
schemes through the `register_stores` hook. Every implementation must pass
`botbridge.testing.StoreContract`.

Records are stored as given: secrets arrive already encrypted, tenancy is
enforced by the host (records carry `account_id`; list calls filter on it).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable

from botbridge.clock import Clock
from botbridge.models import Connector, Conversation, Sender

StoreFactory = Callable[[str, Clock], "Store"]


class Store(ABC):
    # --- lifecycle ---
    async def open(self) -> None:
        """Connect and create what is missing. Called once before use."""

    async def close(self) -> None:
        """Release connections. The store is not used afterwards."""

    async def ping(self) -> bool:
        """True when the store answers (for /readyz)."""
        return True

    # --- API keys ---
    @abstractmethod
    async def put_api_key(self, key_hash: str, account_id: str) -> None: ...

    @abstractmethod
    async def account_for_key(self, key_hash: str) -> str | None: ...

    # --- senders ---
    @abstractmethod
    async def create_sender(self, sender: Sender) -> None: ...

    @abstractmethod
    async def get_sender(self, sender_id: str) -> Sender | None: ...

    @abstractmethod
    async def list_senders(self, account_id: str, *, limit: int = 50, after: str | None = None) -> list[Sender]:
        """Senders of one account in id order, starting after id `after`."""

    @abstractmethod
    async def update_sender(self, sender: Sender) -> None: ...

    @abstractmethod
    async def delete_sender(self, sender_id: str) -> bool: ...

    # --- connectors ---
    @abstractmethod
    async def create_connector(self, connector: Connector) -> None:
        """Insert; raise SenderTaken if another connector has the sender (atomically)."""

    @abstractmethod
    async def get_connector(self, connector_id: str) -> Connector | None: ...

    @abstractmethod
    async def connector_for_sender(self, sender_id: str) -> Connector | None: ...

    @abstractmethod
    async def list_connectors(
        self,
        account_id: str,
        *,
        type: str | None = None,
        sender_id: str | None = None,
        external_id: str | None = None,
        limit: int = 50,
        after: str | None = None,
    ) -> list[Connector]: ...

    @abstractmethod
    async def update_connector(self, connector: Connector, expected_version: int) -> None:
        """Replace the connector if its stored version is `expected_version`.

        Raise VersionConflict otherwise (or when it no longer exists), and
        SenderTaken when the new sender_id is bound to another connector.
        The check and the write are one atomic step.
        """

    @abstractmethod
    async def delete_connector(self, connector_id: str) -> bool: ...

    # --- conversations ---
    @abstractmethod
    async def get_conversation(self, sender_id: str, contact: str) -> Conversation | None:
        """The latest conversation of (sender, contact), open or closed."""

    @abstractmethod
    async def put_conversation(self, conversation: Conversation) -> None: ...

    # --- dedupe ---
    @abstractmethod
    async def claim(self, key: str, ttl: float) -> bool:
        """Record `key` for `ttl` seconds; False if it is already recorded.

        Atomic insert-if-absent: of two concurrent claims exactly one wins.
        """
