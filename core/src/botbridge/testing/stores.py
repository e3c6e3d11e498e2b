"""The store contract: what every `botbridge.Store` must do."""

from __future__ import annotations

import asyncio
import itertools
import random
from collections.abc import AsyncIterator
from typing import Any

import pytest

from botbridge.clock import FakeClock
from botbridge.errors import SenderTaken, VersionConflict
from botbridge.ids import new_id
from botbridge.models import (
    ApiKey,
    Connector,
    Conversation,
    EventFailure,
    HistoryEntry,
    Job,
    OptOut,
    OutboundMessage,
    Sender,
    StateChange,
    StreamItem,
    Subscription,
    from_epoch,
)
from botbridge.store import (
    ConversationFilter,
    MessageFilter,
    Store,
    Take,
    Writes,
    conversation_key,
    send_window,
)


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

    def _key(self, key_hash: str = "h1", account_id: str = "acct", **kw: object) -> ApiKey:
        return ApiKey(account_id=account_id, key_hash=key_hash, created_at=1000.5, **kw)  # type: ignore[arg-type]

    async def test_api_key_round_trip(self, store: Store) -> None:
        assert await store.api_key_by_hash("h1") is None
        key = self._key(name="ci deploys", source="setting")
        assert await store.create_api_key(key)
        assert await store.api_key_by_hash("h1") == key
        assert await store.get_api_key(key.id) == key
        assert await store.get_api_key("no-such-id") is None

    async def test_api_key_hash_is_unique(self, store: Store) -> None:
        first = self._key()
        assert await store.create_api_key(first)
        assert not await store.create_api_key(self._key(account_id="other"))
        assert await store.api_key_by_hash("h1") == first

    async def test_list_api_keys_by_account_or_all_paginated(self, store: Store) -> None:
        keys = [self._key(f"h{i}", "a" if i % 2 else "b", id=f"{i:022d}") for i in range(5)]
        for key in reversed(keys):
            await store.create_api_key(key)
        assert [k.id for k in await store.list_api_keys("a")] == [keys[1].id, keys[3].id]
        first = await store.list_api_keys(None, limit=3)
        assert first == keys[:3]
        assert await store.list_api_keys(None, limit=3, after=first[-1].id) == keys[3:]
        assert await store.list_api_keys("nobody") == []

    async def test_touch_and_revoke_write_one_field_each(self, store: Store) -> None:
        key = self._key()
        await store.create_api_key(key)
        await store.touch_api_key(key.id, 2000.25)
        assert await store.revoke_api_key(key.id, 3000.0)
        assert not await store.revoke_api_key(key.id, 4000.0)  # the first revocation stands
        await store.touch_api_key(key.id, 5000.0)  # a request that read the key before the revoke
        stored = await store.get_api_key(key.id)
        assert stored == key.model_copy(update={"last_used_at": 5000.0, "revoked_at": 3000.0})
        assert stored is not None and stored.revoked

    async def test_touch_or_revoke_of_unknown_key_creates_nothing(self, store: Store) -> None:
        await store.touch_api_key("nope", 1.0)
        assert not await store.revoke_api_key("nope", 1.0)
        assert await store.list_api_keys(None) == []

    async def test_meta_values(self, store: Store) -> None:
        assert await store.get_meta("canary") is None
        assert await store.put_meta("canary", "one", only_if_absent=True)
        assert not await store.put_meta("canary", "two", only_if_absent=True)
        assert await store.get_meta("canary") == "one"
        assert await store.put_meta("canary", "three")
        assert await store.get_meta("canary") == "three"

    # --- stored secrets ---

    async def test_secret_record_ids_span_accounts(self, store: Store) -> None:
        senders = [Sender(account_id=a, channel="c", address="x", id=f"{i:022d}") for i, a in enumerate("abc")]
        for sender in senders:
            await store.create_sender(sender)
        connector = self._connector(senders[0].id)
        await store.create_connector(connector)
        subscription = Subscription(account_id="b", url="https://x.example/", secret_enc="s")
        await store.create_subscription(subscription)
        assert await store.secret_record_ids("sender") == [s.id for s in senders]
        assert await store.secret_record_ids("connector") == [connector.id]
        assert await store.secret_record_ids("subscription") == [subscription.id]
        some = await store.secret_record_ids("sender", limit=2)
        assert len(some) == 2 and set(some) <= {s.id for s in senders}

    async def test_replace_secrets_compares_and_keeps_other_fields(self, store: Store) -> None:
        sender = Sender(account_id="a", channel="c", address="+1", credentials_enc="old-c", webhook_secret_enc="old-w")
        await store.create_sender(sender)
        sender.address = "+2"  # a change made after the rotation read the record
        await store.update_sender(sender)
        expected = {"credentials_enc": "old-c", "webhook_secret_enc": "old-w"}
        assert await store.replace_secrets("sender", sender.id, expected, {"credentials_enc": "new-c"})
        stored = await store.get_sender(sender.id)
        assert stored == sender.model_copy(update={"credentials_enc": "new-c"})
        assert not await store.replace_secrets("sender", sender.id, expected, {"credentials_enc": "newer"})
        assert not await store.replace_secrets("sender", "gone", {}, {"credentials_enc": "x"})
        with pytest.raises(ValueError):
            await store.replace_secrets("sender", sender.id, {}, {"address": "+3"})

    async def test_replace_secrets_of_connectors_and_subscriptions(self, store: Store) -> None:
        connector = self._connector()
        await store.create_connector(connector)
        assert await store.replace_secrets(
            "connector", connector.id, {"credentials_enc": "enc"}, {"credentials_enc": "n"}
        )
        assert (await store.connector_for_sender("s1")) == connector.model_copy(update={"credentials_enc": "n"})
        subscription = Subscription(account_id="a", url="https://x.example/", secret_enc="s")
        await store.create_subscription(subscription)
        assert await store.replace_secrets("subscription", subscription.id, {"secret_enc": "s"}, {"secret_enc": "t"})
        assert (await store.list_subscriptions("a"))[0].secret_enc == "t"

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
        key = self._key()
        await store.create_api_key(key)
        await store.revoke_api_key(key.id, 1.0)
        await store.put_meta("canary", "v")
        reopened = await self.reopen(store, clock)
        if reopened is None:
            pytest.skip("this store keeps nothing across restarts")
        try:
            assert await reopened.get_sender(sender.id) == sender
            assert (await reopened.connector_for_sender(sender.id)) is not None
            assert not await reopened.claim("k", 60)
            assert await reopened.api_key_by_hash("h1") == key.model_copy(update={"revoked_at": 1.0})
            assert await reopened.get_meta("canary") == "v"
        finally:
            await reopened.close()

    # --- the durable work queue ---

    async def test_enqueue_and_claim(self, store: Store) -> None:
        jobs = [Job(kind="mo", key=f"k{i}", payload={"n": i}) for i in range(3)]
        assert await store.enqueue(jobs)
        claimed = await store.claim_jobs(["mo"], limit=10, lease=30)
        assert [j.payload["n"] for j in claimed] == [0, 1, 2]
        assert await store.claim_jobs(["mo"], limit=10, lease=30) == []  # leased
        for job in claimed:
            await store.complete_job(job)
        assert await store.queue_depth() == {}

    async def test_claim_filters_kinds_and_limit(self, store: Store) -> None:
        await store.enqueue([Job(kind="mo", key="a"), Job(kind="event", key="b"), Job(kind="event", key="c")])
        assert [j.kind for j in await store.claim_jobs(["event"], limit=1, lease=30)] == ["event"]
        assert await store.queue_depth() == {"mo": 1, "event": 2}
        assert [j.kind for j in await store.claim_jobs(["mo", "dr"], limit=5, lease=30)] == ["mo"]

    async def test_one_key_runs_one_job_at_a_time_in_order(self, store: Store) -> None:
        await store.enqueue([Job(kind="mo", key="conv", payload={"n": i}) for i in range(3)])
        await store.enqueue([Job(kind="mt", key="other")])
        first = await store.claim_jobs(["mo", "mt"], limit=10, lease=30)
        assert [(j.key, j.payload.get("n")) for j in first] == [("conv", 0), ("other", None)]
        await store.complete_job(first[0], then=[Job(kind="mt", key="conv", payload={"reply": 0})])
        # the follow-up queues behind the turns already accepted
        order = []
        while True:
            batch = await store.claim_jobs(["mo", "mt"], limit=10, lease=30)
            batch = [j for j in batch if j.key == "conv"]
            if not batch:
                break
            assert len(batch) == 1
            order.append(batch[0].payload)
            await store.complete_job(batch[0])
        assert order == [{"n": 1}, {"n": 2}, {"reply": 0}]

    async def test_expired_lease_makes_a_job_runnable_again(self, store: Store, clock: FakeClock) -> None:
        await store.enqueue([Job(kind="mo", key="a")])
        assert len(await store.claim_jobs(["mo"], limit=1, lease=10)) == 1
        clock.advance(5)
        assert await store.claim_jobs(["mo"], limit=1, lease=10) == []
        clock.advance(6)
        assert len(await store.claim_jobs(["mo"], limit=1, lease=10)) == 1

    async def test_release_leases(self, store: Store) -> None:
        await store.enqueue([Job(kind="mo", key="a"), Job(kind="mo", key="b")])
        assert len(await store.claim_jobs(["mo"], limit=5, lease=300)) == 2
        assert await store.release_leases() == 2
        assert len(await store.claim_jobs(["mo"], limit=5, lease=300)) == 2

    async def test_retry_delays_and_counts(self, store: Store, clock: FakeClock) -> None:
        await store.enqueue([Job(kind="event", key="e")])
        [job] = await store.claim_jobs(["event"], limit=1, lease=30)
        await store.retry_job(job, not_before=clock.now() + 20, error="subscriber said 500")
        assert await store.claim_jobs(["event"], limit=1, lease=30) == []
        clock.advance(21)
        [again] = await store.claim_jobs(["event"], limit=1, lease=30)
        assert again.attempts == 1 and again.last_error == "subscriber said 500"

    async def test_enqueue_with_dedupe_is_atomic(self, store: Store) -> None:
        results = await asyncio.gather(
            *(
                store.enqueue([Job(kind="mo", key="c", payload={"i": i})], dedupe_key="mo:x", dedupe_ttl=60)
                for i in range(10)
            )
        )
        assert results.count(True) == 1
        assert await store.queue_depth() == {"mo": 1}

    async def test_concurrent_claims_never_share_a_job(self, store: Store) -> None:
        await store.enqueue([Job(kind="mo", key=f"k{i}") for i in range(20)])
        batches = await asyncio.gather(*(store.claim_jobs(["mo"], limit=3, lease=30) for _ in range(10)))
        ids = [j.id for batch in batches for j in batch]
        assert len(ids) == len(set(ids)) == 20

    async def test_a_finished_job_writes_its_records_with_its_completion(self, store: Store) -> None:
        await store.enqueue([Job(kind="mo", key="conv")])
        [job] = await store.claim_jobs(["mo"], limit=1, lease=30)
        conversation = Conversation(sender_id="s", contact="+1", connector_id="c", opened_at=1.0, last_mo_at=1.0)
        reply = OutboundMessage(sender_id="s", contact="+1", text="first")
        writes = Writes()
        writes.put_conversation(conversation.model_copy(update={"state": "closed"}))
        writes.put_conversation(conversation)  # a later version of the same record wins
        writes.put_outbound(reply, "sinch")
        sent = reply.model_copy(update={"state": "SENT", "provider_message_id": "p1"})
        writes.put_outbound(sent, "sinch")
        await store.finish_job(job, then=[Job(kind="mt", key="conv", payload={"message_id": reply.id})], writes=writes)
        assert await store.get_conversation("s", "+1") == conversation
        assert await store.get_outbound(reply.id) == sent
        assert await store.outbound_by_provider_id("s", "p1") == sent
        [follow_up] = await store.claim_jobs(["mo", "mt"], limit=5, lease=30)
        assert follow_up.payload == {"message_id": reply.id}
        await store.finish_job(follow_up)  # nothing to write
        assert await store.queue_depth() == {}

    async def test_a_finished_job_can_lease_its_follow_up_to_the_worker(self, store: Store, clock: FakeClock) -> None:
        await store.enqueue([Job(kind="mo", key="conv")])
        [turn] = await store.claim_jobs(["mo"], limit=1, lease=30)
        reply = Job(kind="mt", key="conv", payload={"n": 1})
        event = Job(kind="event", key="event:x")
        taken = await store.finish_job(turn, then=[event, reply], take=Take(["mo", "mt", "dr"], 30))
        if taken is None:
            pytest.skip("this store does not lease follow-ups (Store.finish_job's `take` is optional)")
        assert taken.id == reply.id and taken.payload == {"n": 1}
        assert await store.claim_jobs(["mo", "mt"], limit=5, lease=30) == []  # leased to the finisher
        assert [j.id for j in await store.claim_jobs(["event"], limit=5, lease=30)] == [event.id]
        # the finisher runs it and finishes it like a claimed job, taking the next one in turn
        second = Job(kind="mt", key="conv", payload={"n": 2})
        taken_again = await store.finish_job(taken, then=[second], take=Take(["mt"], 30))
        assert taken_again is not None and taken_again.id == second.id
        clock.advance(31)  # a taken job's lease ends like any other: whoever claims next runs it
        [again] = await store.claim_jobs(["mt"], limit=5, lease=30)
        assert again.id == second.id
        await store.retry_job(again, not_before=clock.now(), error="provider 429")
        [retried] = await store.claim_jobs(["mt"], limit=5, lease=30)
        assert retried.id == second.id and retried.attempts == 1
        await store.finish_job(retried)
        assert await store.queue_depth() == {"event": 1}

    async def test_a_taken_job_retries_like_a_claimed_one(self, store: Store, clock: FakeClock) -> None:
        await store.enqueue([Job(kind="mo", key="conv")])
        [turn] = await store.claim_jobs(["mo"], limit=1, lease=30)
        taken = await store.finish_job(turn, then=[Job(kind="mt", key="conv")], take=Take(["mt"], 30))
        if taken is None:
            pytest.skip("this store does not lease follow-ups (Store.finish_job's `take` is optional)")
        await store.retry_job(taken, not_before=clock.now() + 5, error="provider 429")
        assert await store.claim_jobs(["mt"], limit=5, lease=30) == []
        clock.advance(6)
        [retried] = await store.claim_jobs(["mt"], limit=5, lease=30)
        assert retried.id == taken.id and retried.attempts == 1

    async def test_a_follow_up_behind_other_work_of_its_key_is_not_taken(self, store: Store, clock: FakeClock) -> None:
        await store.enqueue(
            [Job(kind="mo", key="conv", payload={"n": 1}), Job(kind="mo", key="conv", payload={"n": 2})]
        )
        [first] = await store.claim_jobs(["mo"], limit=1, lease=30)
        take = Take(["mo", "mt"], 30)
        assert await store.finish_job(first, then=[Job(kind="mt", key="conv")], take=take) is None
        [second] = await store.claim_jobs(["mo", "mt"], limit=5, lease=30)
        assert second.payload == {"n": 2}  # the turn that came first still runs first
        later = Job(kind="mt", key="other", not_before=clock.now() + 60)
        assert await store.finish_job(second, then=[later], take=take) is None  # not due yet
        [reply] = await store.claim_jobs(["mo", "mt"], limit=5, lease=30)
        assert reply.kind == "mt" and reply.key == "conv"

    async def test_writes_alone(self, store: Store) -> None:
        message = OutboundMessage(sender_id="s", contact="+1", text="late reply")
        conversation = Conversation(sender_id="s", contact="+1", connector_id="c", opened_at=1.0, last_mo_at=1.0)
        await store.write(Writes(conversations=[conversation], outbound=[(message, "bird")]))
        assert await store.get_outbound(message.id) == message
        assert await store.get_conversation("s", "+1") == conversation

    # --- history ---

    async def test_every_conversation_is_kept_by_id_and_listed_newest_first(
        self, store: Store, clock: FakeClock
    ) -> None:
        def conversation(account: str, sender: str, contact: str, at: float, connector: str = "c1") -> Conversation:
            return Conversation(
                account_id=account,
                sender_id=sender,
                contact=contact,
                connector_id=connector,
                opened_at=at,
                last_mo_at=at,
            )

        first = conversation("a", "s1", "+1", 100.0)
        await store.put_conversation(first)
        first.state, first.closed_at = "closed", 150.0
        await store.put_conversation(first)  # a later version of the same conversation
        second = conversation("a", "s1", "+1", 200.0)  # the same contact's next conversation
        third = conversation("a", "s2", "+2", 300.0, connector="c2")
        theirs = conversation("b", "s9", "+1", 250.0)
        for c in (second, third, theirs):
            await store.put_conversation(c)
        assert await store.get_conversation("s1", "+1") == second  # the latest, for the engine
        assert await store.get_conversation_by_id(first.id) == first  # and every one, for history
        listed = await store.list_conversations("a", ConversationFilter())
        assert [c.id for c in listed] == [third.id, second.id, first.id]
        assert listed[2].state == "closed"
        assert [c.id for c in await store.list_conversations("a", ConversationFilter(contact="+1"))] == [
            second.id,
            first.id,
        ]
        assert [c.id for c in await store.list_conversations("a", ConversationFilter(state="closed"))] == [first.id]
        assert [c.id for c in await store.list_conversations("a", ConversationFilter(sender_id="s2"))] == [third.id]
        assert [c.id for c in await store.list_conversations("a", ConversationFilter(connector_id="c2"))] == [third.id]
        window = ConversationFilter(since=150.0, until=300.0)
        assert [c.id for c in await store.list_conversations("a", window)] == [second.id]
        page = await store.list_conversations("a", ConversationFilter(), limit=2)
        rest = await store.list_conversations("a", ConversationFilter(), limit=2, before=page[-1].id)
        assert [c.id for c in page + rest] == [third.id, second.id, first.id]
        assert [c.id for c in await store.list_conversations("b", ConversationFilter())] == [theirs.id]

    async def test_history_entries_come_back_in_order(self, store: Store) -> None:
        def entry(conversation: str, kind: Any, at: float) -> HistoryEntry:
            return HistoryEntry(
                account_id="a", conversation_id=conversation, sender_id="s", contact="+1", kind=kind, at=at
            )

        entries = [entry("c1", "conversation_opened", 1.0), entry("c1", "mo", 2.0), entry("c1", "bot_error", 3.0)]
        entries[1].data = {"text": "hello", "provider_message_id": "p1"}
        writes = Writes()
        for e in entries:
            writes.add_history(e)
        await store.write(writes)
        await store.add_history(entry("c2", "mo", 2.5))
        assert await store.list_history("c1") == entries
        assert await store.list_history("c1", limit=1, after=entries[0].id) == [entries[1]]
        assert [e.conversation_id for e in await store.list_history("c2")] == ["c2"]

    async def test_outbound_messages_are_listed_per_account_with_filters(self, store: Store) -> None:
        def message(account: str, sender: str, contact: str, **fields: Any) -> OutboundMessage:
            return OutboundMessage(account_id=account, sender_id=sender, contact=contact, text="x", **fields)

        one = message("a", "s1", "+1", conversation_id="c1")
        two = message("a", "s1", "+2", external_id="ext-2")
        three = message("a", "s2", "+1")
        theirs = message("b", "s9", "+1")
        for m in (one, two, three, theirs):
            await store.put_outbound(m, "sinch")
        one.state = "DELIVERED"
        one.states.append(StateChange(state="DELIVERED", at=one.updated_at))
        await store.put_outbound(one, "sinch")
        everything = await store.list_outbound("a", MessageFilter())
        assert [m.id for m in everything] == [three.id, two.id, one.id]
        assert everything[2] == one
        assert [m.id for m in await store.list_outbound("a", MessageFilter(contact="+1"))] == [three.id, one.id]
        assert [m.id for m in await store.list_outbound("a", MessageFilter(state="DELIVERED"))] == [one.id]
        assert [m.id for m in await store.list_outbound("a", MessageFilter(external_id="ext-2"))] == [two.id]
        assert [m.id for m in await store.list_outbound("a", MessageFilter(sender_id="s2"))] == [three.id]
        assert [m.id for m in await store.list_outbound("a", MessageFilter(conversation_id="c1"))] == [one.id]
        created = one.created_at.timestamp()
        assert one.id in [m.id for m in await store.list_outbound("a", MessageFilter(since=created - 1))]
        assert await store.list_outbound("a", MessageFilter(until=created - 1)) == []
        page = await store.list_outbound("a", MessageFilter(), limit=2)
        assert [m.id for m in await store.list_outbound("a", MessageFilter(), before=page[-1].id)] == [one.id]
        assert [m.id for m in await store.list_outbound("b", MessageFilter())] == [theirs.id]

    async def test_history_older_than_the_retention_is_purged(self, store: Store) -> None:
        old = Conversation(
            account_id="a", sender_id="s", contact="+1", connector_id="c", opened_at=10.0, last_mo_at=10.0
        )
        old.state, old.closed_at = "closed", 20.0
        await store.put_conversation(old)
        latest = Conversation(
            account_id="a", sender_id="s", contact="+1", connector_id="c", opened_at=30.0, last_mo_at=30.0
        )
        await store.put_conversation(latest)
        closed_latest = Conversation(
            account_id="a", sender_id="s", contact="+2", connector_id="c", opened_at=10.0, last_mo_at=10.0
        )
        closed_latest.state, closed_latest.closed_at = "closed", 20.0
        await store.put_conversation(closed_latest)  # the latest of its contact: the engine still reads it
        await store.add_history(
            HistoryEntry(account_id="a", conversation_id=old.id, sender_id="s", contact="+1", kind="mo", at=15.0)
        )
        recent = HistoryEntry(
            account_id="a", conversation_id=latest.id, sender_id="s", contact="+1", kind="mo", at=35.0
        )
        await store.add_history(recent)
        stale = OutboundMessage(account_id="a", sender_id="s", contact="+1", updated_at=from_epoch(15.0))
        fresh = OutboundMessage(account_id="a", sender_id="s", contact="+1", updated_at=from_epoch(35.0))
        await store.put_outbound(stale, "sinch")
        await store.put_outbound(fresh, "sinch")
        assert await store.purge_history(before=25.0) >= 3
        assert await store.get_conversation_by_id(old.id) is None
        assert await store.get_conversation_by_id(latest.id) == latest
        assert await store.get_conversation("s", "+2") == closed_latest
        assert await store.list_history(old.id) == []
        assert await store.list_history(latest.id) == [recent]
        assert await store.get_outbound(stale.id) is None
        assert await store.get_outbound(fresh.id) == fresh

    async def test_erasing_a_contact_leaves_nothing_of_them(self, store: Store) -> None:
        subscription = Subscription(account_id="a", url="https://x.example/hook")
        await store.create_subscription(subscription)

        async def leave_traces(sender: str, contact: str) -> Conversation:
            c = Conversation(
                account_id="a", sender_id=sender, contact=contact, connector_id="c", opened_at=1.0, last_mo_at=1.0
            )
            await store.put_conversation(c)
            await store.add_history(
                HistoryEntry(account_id="a", conversation_id=c.id, sender_id=sender, contact=contact, kind="mo", at=1.0)
            )
            await store.put_outbound(
                OutboundMessage(account_id="a", sender_id=sender, contact=contact, provider_message_id=f"p-{contact}"),
                "sinch",
            )
            event = {"event": {"fld-val-list": {"from_address": contact, "to_address": "66000"}}}
            await store.add_event_failure(
                EventFailure(subscription_id=subscription.id, event=event, attempts=8, last_error="500")
            )
            await store.enqueue(
                [
                    Job(kind="mo", key=conversation_key(sender, contact), payload={"contact": contact}),
                    Job(
                        kind="event",
                        key=f"event:{contact}",
                        payload={"subscription_id": subscription.id, "event": event},
                    ),
                ]
            )
            return c

        gone = await leave_traces("s1", "+1555")
        also_gone = await leave_traces("s2", "+1555")
        kept = await leave_traces("s1", "+1666")
        assert await store.erase_contact("a", "+1555", ["s1", "s2"]) > 0
        for c in (gone, also_gone):
            assert await store.get_conversation(c.sender_id, "+1555") is None
            assert await store.get_conversation_by_id(c.id) is None
            assert await store.list_history(c.id) == []
            assert await store.outbound_by_provider_id(c.sender_id, "p-+1555") is None
        assert await store.list_outbound("a", MessageFilter(contact="+1555")) == []
        assert await store.list_conversations("a", ConversationFilter(contact="+1555")) == []
        failures = await store.list_event_failures(subscription.id)
        assert [f.event["event"]["fld-val-list"]["from_address"] for f in failures] == ["+1666"]
        claimed = await store.claim_jobs(["mo", "event"], limit=10, lease=30)
        assert sorted(j.kind for j in claimed) == ["event", "mo"]
        assert all("+1555" not in j.model_dump_json() for j in claimed)
        # the rest of the account is as it was
        assert await store.get_conversation_by_id(kept.id) == kept
        assert len(await store.list_history(kept.id)) == 1
        assert len(await store.list_outbound("a", MessageFilter(contact="+1666"))) == 1

    # --- the live stream ---

    async def test_the_live_stream_keeps_each_accounts_items_in_order(self, store: Store) -> None:
        def item(n: int, account: str = "a", at: float | None = None) -> StreamItem:
            # ids made at 1_700_000_000 + n seconds; `at` (what trimming goes by) on another clock
            return StreamItem(
                id=new_id(1_700_000_000 + n),
                account_id=account,
                at=100.0 + n if at is None else at,
                data={"type": "event", "event": {"n": n, "fld-val-list": {"to_address": "+1"}}},
            )

        mine = [item(n) for n in range(6)]
        old_theirs, new_theirs = item(6, "b", at=50.0), item(7, "b", at=500.0)
        await store.write(Writes(stream=[mine[3], mine[1], new_theirs]))  # written out of order
        await store.enqueue([Job(kind="mo", key="conv")])
        [job] = await store.claim_jobs(["mo"], limit=1, lease=30)
        writes = Writes()
        for written in (mine[2], old_theirs, mine[0]):
            writes.add_stream(written)
        await store.finish_job(job, writes=writes)
        await store.append_stream([mine[5], mine[4]])
        assert await store.read_stream("a") == mine
        first = await store.read_stream("a", limit=2)
        assert first == mine[:2]
        assert await store.read_stream("a", after=first[-1].id, limit=3) == mine[2:5]
        assert await store.read_stream("a", after=mine[4].id) == [mine[5]]
        assert await store.read_stream("a", after=mine[5].id) == []
        assert await store.read_stream("b") == [old_theirs, new_theirs]
        assert await store.read_stream("nobody") == []
        # trimming goes by `at`: older than `before` goes, of every account; `at == before` stays
        assert await store.trim_stream(before=102.0) == 3
        assert await store.read_stream("a") == mine[2:]
        assert await store.read_stream("a", limit=1) == [mine[2]]
        assert await store.read_stream("b") == [new_theirs]
        assert await store.trim_stream(before=102.0) == 0
        assert await store.trim_stream(before=1000.0) == 5
        assert await store.read_stream("a") == [] and await store.read_stream("b") == []

    # --- outbound, subscriptions, failures ---

    async def test_outbound_messages(self, store: Store) -> None:
        message = OutboundMessage(sender_id="s", contact="+1", text="hi")
        await store.put_outbound(message, "sinch")
        assert await store.get_outbound(message.id) == message
        message.provider_message_id, message.state = "prov-1", "SENT"
        await store.put_outbound(message, "sinch")
        assert (await store.outbound_by_provider_id("s", "prov-1")) == message
        assert await store.outbound_by_provider_id("other", "prov-1") is None
        assert await store.get_outbound("missing") is None

    async def test_provider_ids_are_scoped_by_sender(self, store: Store) -> None:
        # Two provider accounts may hand out the same id: each sender keeps its own message.
        mine = OutboundMessage(sender_id="a", contact="+1", text="mine", provider_message_id="same", state="SENT")
        theirs = OutboundMessage(sender_id="b", contact="+2", text="theirs", provider_message_id="same", state="SENT")
        await store.put_outbound(mine, "sinch")
        await store.put_outbound(theirs, "sinch")
        assert await store.outbound_by_provider_id("a", "same") == mine
        assert await store.outbound_by_provider_id("b", "same") == theirs
        assert await store.outbound_by_provider_id("c", "same") is None

    async def test_subscriptions_and_failures(self, store: Store) -> None:
        mine = Subscription(account_id="a", url="https://x.example/hook", secret_enc="enc")
        other_topic = Subscription(account_id="a", url="https://y.example/hook", topic="Other")
        theirs = Subscription(account_id="b", url="https://z.example/hook")
        for subscription in (mine, other_topic, theirs):
            await store.create_subscription(subscription)
        assert await store.get_subscription(mine.id) == mine
        assert {s.id for s in await store.list_subscriptions("a")} == {mine.id, other_topic.id}
        assert [s.id for s in await store.list_subscriptions("a", topic="SCG-Message")] == [mine.id]
        failure = EventFailure(subscription_id=mine.id, event={"event-id": "e1"}, attempts=5, last_error="500")
        await store.add_event_failure(failure)
        assert await store.list_event_failures(mine.id) == [failure]
        assert await store.list_event_failures(theirs.id) == []
        assert await store.delete_subscription(mine.id)
        assert await store.get_subscription(mine.id) is None

    async def test_opt_outs_per_sender_and_contact(self, store: Store) -> None:
        stop = OptOut(account_id="a", sender_id="s1", contact="+1555", keyword="STOP")
        assert await store.put_opt_out(stop)
        # a second STOP changes nothing: the first one's time and keyword stay
        assert not await store.put_opt_out(OptOut(account_id="a", sender_id="s1", contact="+1555", keyword="QUIT"))
        assert await store.get_opt_out("s1", "+1555") == stop
        assert await store.get_opt_out("s2", "+1555") is None  # another sender may still write to them
        assert await store.get_opt_out("s1", "+1556") is None
        assert await store.delete_opt_out("s1", "+1555")
        assert not await store.delete_opt_out("s1", "+1555")
        assert await store.get_opt_out("s1", "+1555") is None
        again = OptOut(account_id="a", sender_id="s1", contact="+1555", keyword="stop")
        assert await store.put_opt_out(again)
        assert await store.get_opt_out("s1", "+1555") == again

    async def test_opt_outs_are_listed_per_account_and_sender(self, store: Store) -> None:
        made = [OptOut(account_id="a", sender_id=f"s{i % 2}", contact=f"+1555000{i}", keyword="STOP") for i in range(5)]
        theirs = OptOut(account_id="b", sender_id="s9", contact="+15550000", keyword="STOP")
        for opt_out in [*made, theirs]:
            await store.put_opt_out(opt_out)
        ids = sorted(o.id for o in made)
        assert [o.id for o in await store.list_opt_outs("a")] == ids
        assert [o.id for o in await store.list_opt_outs("a", limit=2)] == ids[:2]
        assert [o.id for o in await store.list_opt_outs("a", after=ids[1])] == ids[2:]
        assert [o.id for o in await store.list_opt_outs("a", sender_id="s1")] == sorted(
            o.id for o in made if o.sender_id == "s1"
        )
        assert await store.list_opt_outs("b") == [theirs]
        assert await store.list_opt_outs("c") == []

    async def test_concurrent_opt_outs_one_counts(self, store: Store) -> None:
        results = await asyncio.gather(
            *(store.put_opt_out(OptOut(account_id="a", sender_id="s", contact="+1", keyword="STOP")) for _ in range(8))
        )
        assert sum(results) == 1

    async def test_send_slots_are_spaced(self, store: Store) -> None:
        waits = [await store.reserve_send_slot("conn", 10, now=100.0) for _ in range(25)]
        assert waits[0] == 0
        assert all(b > a for a, b in itertools.pairwise(waits))
        # never more than 10 slots in any one second
        slots = [100.0 + w for w in waits]
        assert max(sum(1 for s in slots if t <= s < t + 1) for t in slots) <= 10
        assert await store.reserve_send_slot("other", 10, now=100.0) == 0

    async def test_reserve_and_admit_admits_only_a_send_whose_slot_is_due(self, store: Store) -> None:
        # rate 2: slots 0.55 s apart, at most 2 sends counting at once
        assert await store.reserve_and_admit("conn", 2, 100.0, "a", 60.0) == (0.0, 0.0)
        wait, admitted = await store.reserve_and_admit("conn", 2, 100.0, "b", 60.0)
        assert admitted is None and 0.54 <= wait <= 0.56  # its slot is later: nothing admitted for it
        assert await store.admit_send("conn", 2, 100.0, "c", 60.0) == 0.0  # so a place was still free
        # the slots moved on; at 101.2 the next one is due, but "a" and "c" still fly
        wait, admitted = await store.reserve_and_admit("conn", 2, 101.2, "d", 60.0)
        assert wait == 0.0 and admitted is not None and admitted > 0
        assert await store.reserve_and_admit("other", 2, 100.0, "a", 60.0) == (0.0, 0.0)

    async def test_sends_are_admitted_only_within_the_rate(self, store: Store) -> None:
        # rate 10: at most 10 sends counting at once; each answered at once counts one second more
        for i in range(10):
            assert await store.admit_send("conn", 10, 100.0 + i / 10, f"t{i}", 60.0) == 0.0
            await store.finish_send("conn", f"t{i}", 10, 100.0 + i / 10)
        wait = await store.admit_send("conn", 10, 100.95, "late", 60.0)  # a late worker: the window is full
        assert 0.05 <= wait <= 0.051  # until the send answered at 100.0 stops counting
        assert await store.admit_send("conn", 10, 100.95 + wait, "late", 60.0) == 0.0
        assert await store.admit_send("conn", 10, 100.95 + wait, "next", 60.0) > 0  # that freed one place, not two
        assert await store.admit_send("other", 10, 100.95, "t0", 60.0) == 0.0

    async def test_a_send_counts_until_a_window_after_its_answer(self, store: Store) -> None:
        # The provider counts a send when it arrives: anywhere between admission and answer.
        assert await store.admit_send("conn", 2, 100.0, "a", 60.0) == 0.0
        assert await store.admit_send("conn", 2, 100.0, "b", 60.0) == 0.0
        wait = await store.admit_send("conn", 2, 150.0, "c", 60.0)  # both still in flight
        assert 0 < wait <= 0.5  # their answers may come any moment: ask again soon
        await store.finish_send("conn", "a", 2, 150.2)
        assert 0.99 <= await store.admit_send("conn", 2, 150.2, "c", 60.0) <= 1.001
        assert await store.admit_send("conn", 2, 151.25, "c", 60.0) == 0.0  # "b" still flies: one place
        assert await store.admit_send("conn", 2, 151.25, "d", 60.0) > 0

    async def test_a_send_never_answered_counts_until_its_hold_ends(self, store: Store) -> None:
        # its host died mid-send: the place comes back when the hold ends, not never
        assert await store.admit_send("conn", 1, 100.0, "lost", 30.0) == 0.0
        assert await store.admit_send("conn", 1, 129.9, "next", 30.0) > 0
        assert await store.admit_send("conn", 1, 130.0, "next", 30.0) == 0.0

    async def test_admission_counts_sends_answered_ahead_of_now(self, store: Store) -> None:
        # another host's clock runs a little ahead: its send still counts
        assert await store.admit_send("conn", 1, 200.0, "ahead", 60.0) == 0.0
        await store.finish_send("conn", "ahead", 1, 200.0)
        assert await store.admit_send("conn", 1, 199.5, "behind", 60.0) > 0
        assert await store.admit_send("conn", 1, 200.9, "behind", 60.0) > 0
        assert await store.admit_send("conn", 1, 201.0, "behind", 60.0) == 0.0

    async def test_admission_below_one_send_a_second(self, store: Store) -> None:
        assert await store.admit_send("conn", 0.5, 300.0, "a", 60.0) == 0.0
        await store.finish_send("conn", "a", 0.5, 300.0)
        wait = await store.admit_send("conn", 0.5, 301.8, "b", 60.0)
        assert 0.2 <= wait <= 0.201
        assert await store.admit_send("conn", 0.5, 301.8 + wait, "b", 60.0) == 0.0

    async def test_concurrent_admissions_never_exceed_the_rate(self, store: Store) -> None:
        waits = await asyncio.gather(*(store.admit_send("conn", 10, 400.0, f"t{i}", 60.0) for i in range(25)))
        assert sum(1 for w in waits if w == 0.0) == 10
        assert all(w > 0 for w in waits if w != 0.0)

    @pytest.mark.parametrize("seed", range(3))
    async def test_admitted_sends_keep_to_the_rate_at_the_provider_whatever_the_timing(
        self, store: Store, seed: int
    ) -> None:
        # Workers ask at random times; each send flies a random while and reaches
        # the provider at a random moment of its flight. The provider never sees
        # more than `count` in any window of `seconds`.
        count, seconds = send_window(7)
        rng = random.Random(seed)
        now, arrivals = 500.0, []
        flying: list[tuple[float, str]] = []  # (answer time, ticket)
        for i in range(300):
            now += rng.choice([0.0, 0.001, 0.02, 0.1, 0.3])
            for answered, ticket in sorted(f for f in flying if f[0] <= now):
                await store.finish_send("conn", ticket, 7, answered)
            flying = [f for f in flying if f[0] > now]
            if await store.admit_send("conn", 7, now, f"t{i}", 60.0) == 0.0:
                flight = rng.choice([0.0, 0.005, 0.05, 0.3, 0.9])
                arrivals.append(now + rng.uniform(0, flight))
                flying.append((now + flight, f"t{i}"))
        assert len(arrivals) > 40
        arrivals.sort()
        assert max(sum(1 for s in arrivals if t <= s < t + seconds) for t in arrivals) <= count
