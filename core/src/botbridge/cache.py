"""A short-lived cache of the records every message reads.

Each MO and MT reads its sender, its connector and the account's
subscriptions; they change rarely. The cache keeps them for `ttl` seconds
(so several hosts sharing a store see a change within that time) and is
cleared whenever this host changes one of them.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from pydantic import BaseModel

from botbridge.models import Connector, Sender, Subscription
from botbridge.store import Store

T = TypeVar("T")


class ReadCache:
    def __init__(self, store: Store, ttl: float = 2.0) -> None:
        self.store = store
        self.ttl = ttl
        self._entries: dict[tuple[str, ...], tuple[float, Any]] = {}

    def clear(self) -> None:
        self._entries.clear()

    async def _get(self, key: tuple[str, ...], load: Callable[[], Awaitable[T]]) -> T:
        now = time.monotonic()
        entry = self._entries.get(key)
        if entry is None or entry[0] <= now:
            value = await load()
            if len(self._entries) > 10_000:
                self._entries.clear()
            self._entries[key] = (now + self.ttl, value)
        else:
            value = entry[1]
        return _copy(value)  # type: ignore[no-any-return]

    async def sender(self, sender_id: str) -> Sender | None:
        return await self._get(("sender", sender_id), lambda: self.store.get_sender(sender_id))

    async def connector(self, connector_id: str) -> Connector | None:
        return await self._get(("connector", connector_id), lambda: self.store.get_connector(connector_id))

    async def connector_for_sender(self, sender_id: str) -> Connector | None:
        return await self._get(("binding", sender_id), lambda: self.store.connector_for_sender(sender_id))

    async def subscriptions(self, account_id: str, topic: str) -> list[Subscription]:
        return await self._get(
            ("subscriptions", account_id, topic),
            lambda: self.store.list_subscriptions(account_id, topic=topic, limit=1000),
        )


def _copy(value: Any) -> Any:
    # Callers may change what they get; the cached record must not change with it.
    if isinstance(value, BaseModel):
        return value.model_copy()
    if isinstance(value, list):
        return [_copy(item) for item in value]
    return value
