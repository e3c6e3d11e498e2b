"""The store contract: what every `botbridge.Store` must do."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from botbridge.clock import FakeClock
from botbridge.errors import SenderTaken, VersionConflict
from botbridge.models import Connector, Conversation, Sender
from botbridge.store import Store


@pytest.mark.anyio
class StoreContract:
    """Subclass and implement `create_store(clock)` returning an unopened store."""

    def create_store(self, clock: FakeClock) -> Store:
        raise NotImplementedError

    async def reopen(self, store: Store, clock: FakeClock) -> Store | None:
        """Return a new store over the same data, or None if it keeps nothing."""
        return None

    @pytest.fixture
    def clock(self) -> FakeClock:
        return FakeClock()

    @pytest.fixture
    async def store(self, clock: FakeClock) -> AsyncIterator[Store]:
        store = self.create_store(clock)
        await store.open()
        try:
            yield store
        finally:
            await store.close()

    # --- API keys ---

    async def test_api_keys(self, store: Store) -> None:
        assert await store.account_for_key("h1") is None
        await store.put_api_key("h1", "acct")
        assert await store.account_for_key("h1") == "acct"

    # --- senders ---

    async def test_sender_round_trip(self, store: Store) -> None:
        sender = Sender(account_id="a", channel="sinch", address="+1555", config={"k": [1, 2]}, credentials_enc="x")
        await store.create_sender(sender)
        assert await store.get_sender(sender.id) == sender
        sender.address = "+1666"
        await store.update_sender(sender)
        assert (await store.get_sender(sender.id)).address == "+1666"  # type: ignore[union-attr]
        assert await store.delete_sender(sender.id)
        assert await store.get_sender(sender.id) is None
        assert not await store.delete_sender(sender.id)

    async def test_returned_records_are_copies(self, store: Store) -> None:
        sender = Sender(account_id="a", channel="sinch", address="+1555")
        await store.create_sender(sender)
        fetched = await store.get_sender(sender.id)
        assert fetched is not None
        fetched.config["mutated"] = True
        assert (await store.get_sender(sender.id)).config == {}  # type: ignore[union-attr]

    async def test_list_senders_by_account_paginated(self, store: Store, clock: FakeClock) -> None:
        mine = []
        for i in range(5):
            sender = Sender(id=f"{i:022d}", account_id="a", channel="c", address=str(i))
            mine.append(sender.id)
            await store.create_sender(sender)
        await store.create_sender(Sender(account_id="b", channel="c", address="x"))
        first = await store.list_senders("a", limit=3)
        assert [s.id for s in first] == mine[:3]
        rest = await store.list_senders("a", limit=3, after=first[-1].id)
        assert [s.id for s in rest] == mine[3:]
        assert await store.list_senders("nobody") == []

    # --- connectors ---

    def _connector(self, sender_id: str = "s1", account_id: str = "a", **kw: object) -> Connector:
        return Connector(account_id=account_id, type="AMAZON_LEX", sender_id=sender_id, credentials_enc="enc", **kw)  # type: ignore[arg-type]

    async def test_connector_round_trip(self, store: Store) -> None:
        connector = self._connector(external_id="ext", config={"rate_limit": 5.0})
        await store.create_connector(connector)
        assert await store.get_connector(connector.id) == connector
        assert await store.connector_for_sender("s1") == connector
        assert await store.delete_connector(connector.id)
        assert await store.get_connector(connector.id) is None
        assert await store.connector_for_sender("s1") is None
        assert not await store.delete_connector(connector.id)

    async def test_sender_binds_one_connector(self, store: Store) -> None:
        await store.create_connector(self._connector())
        with pytest.raises(SenderTaken):
            await store.create_connector(self._connector())

    async def test_concurrent_creates_for_one_sender_one_wins(self, store: Store) -> None:
        results = await asyncio.gather(
            *(store.create_connector(self._connector()) for _ in range(8)), return_exceptions=True
        )
        assert sum(1 for r in results if r is None) == 1
        assert all(isinstance(r, SenderTaken) for r in results if r is not None)

    async def test_deleting_a_connector_frees_its_sender(self, store: Store) -> None:
        first = self._connector()
        await store.create_connector(first)
        await store.delete_connector(first.id)
        await store.create_connector(self._connector())

    async def test_update_checks_version(self, store: Store) -> None:
        connector = self._connector()
        await store.create_connector(connector)
        updated = connector.model_copy(update={"version_number": 2, "external_id": "new"})
        await store.update_connector(updated, expected_version=1)
        assert (await store.get_connector(connector.id)).external_id == "new"  # type: ignore[union-attr]
        stale = connector.model_copy(update={"version_number": 2, "external_id": "stale"})
        with pytest.raises(VersionConflict):
            await store.update_connector(stale, expected_version=1)
        assert (await store.get_connector(connector.id)).external_id == "new"  # type: ignore[union-attr]

    async def test_concurrent_updates_one_wins(self, store: Store) -> None:
        connector = self._connector()
        await store.create_connector(connector)
        attempts = [connector.model_copy(update={"version_number": 2, "external_id": str(i)}) for i in range(6)]
        results = await asyncio.gather(
            *(store.update_connector(c, expected_version=1) for c in attempts), return_exceptions=True
        )
        assert sum(1 for r in results if r is None) == 1
        assert all(isinstance(r, VersionConflict) for r in results if r is not None)

    async def test_update_of_missing_connector_conflicts(self, store: Store) -> None:
        with pytest.raises(VersionConflict):
            await store.update_connector(self._connector(), expected_version=1)

    async def test_update_moves_sender_binding(self, store: Store) -> None:
        a = self._connector("s1")
        b = self._connector("s2")
        await store.create_connector(a)
        await store.create_connector(b)
        with pytest.raises(SenderTaken):
            await store.update_connector(a.model_copy(update={"sender_id": "s2", "version_number": 2}), 1)
        await store.update_connector(a.model_copy(update={"sender_id": "s3", "version_number": 2}), 1)
        assert (await store.connector_for_sender("s3")).id == a.id  # type: ignore[union-attr]
        assert await store.connector_for_sender("s1") is None
        await store.create_connector(self._connector("s1"))

    async def test_list_connectors_filters(self, store: Store) -> None:
        one = self._connector("s1", external_id="x")
        two = Connector(account_id="a", type="GOOGLE_DIALOG_FLOW", sender_id="s2")
        other = self._connector("s3", account_id="b")
        for c in (one, two, other):
            await store.create_connector(c)
        assert {c.id for c in await store.list_connectors("a")} == {one.id, two.id}
        assert [c.id for c in await store.list_connectors("a", type="GOOGLE_DIALOG_FLOW")] == [two.id]
        assert [c.id for c in await store.list_connectors("a", sender_id="s1")] == [one.id]
        assert [c.id for c in await store.list_connectors("a", external_id="x")] == [one.id]
        assert await store.list_connectors("a", sender_id="s3") == []
        page = await store.list_connectors("a", limit=1)
        after = await store.list_connectors("a", limit=1, after=page[0].id)
        assert len(page) == len(after) == 1 and page[0].id < after[0].id

    # --- conversations ---

    async def test_conversation_round_trip(self, store: Store, clock: FakeClock) -> None:
        assert await store.get_conversation("s1", "+1") is None
        conversation = Conversation(
            sender_id="s1",
            contact="+1",
            connector_id="c",
            opened_at=clock.now(),
            last_mo_at=clock.now(),
            backend_state={"token": "t", "n": [1]},
        )
        await store.put_conversation(conversation)
        assert await store.get_conversation("s1", "+1") == conversation
        conversation.backend_state["watermark"] = "3"
        await store.put_conversation(conversation)
        assert (await store.get_conversation("s1", "+1")).backend_state["watermark"] == "3"  # type: ignore[union-attr]
        newer = Conversation(sender_id="s1", contact="+1", connector_id="c", opened_at=1, last_mo_at=1)
        await store.put_conversation(newer)
        assert (await store.get_conversation("s1", "+1")).id == newer.id  # type: ignore[union-attr]
        assert await store.get_conversation("s1", "+2") is None

    # --- dedupe ---

    async def test_claim_once(self, store: Store) -> None:
        assert await store.claim("k", 60)
        assert not await store.claim("k", 60)
        assert await store.claim("other", 60)

    async def test_claim_expires(self, store: Store, clock: FakeClock) -> None:
        assert await store.claim("k", 10)
        clock.advance(5)
        assert not await store.claim("k", 10)
        clock.advance(6)
        assert await store.claim("k", 10)

    async def test_concurrent_claims_one_wins(self, store: Store) -> None:
        results = await asyncio.gather(*(store.claim("same", 60) for _ in range(20)))
        assert results.count(True) == 1

    async def test_survives_reopen(self, store: Store, clock: FakeClock) -> None:
        sender = Sender(account_id="a", channel="c", address="x")
        await store.create_sender(sender)
        await store.create_connector(self._connector(sender.id))
        assert await store.claim("k", 60)
        reopened = await self.reopen(store, clock)
        if reopened is None:
            pytest.skip("this store keeps nothing across restarts")
        try:
            assert await reopened.get_sender(sender.id) == sender
            assert (await reopened.connector_for_sender(sender.id)) is not None
            assert not await reopened.claim("k", 60)
        finally:
            await reopened.close()
