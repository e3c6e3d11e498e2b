"""API keys: revocation, last use, and reconciliation with BOTBRIDGE_API_KEYS."""

from __future__ import annotations

import logging

import pytest

from botbridge.clock import FakeClock
from botbridge.crypto import hash_api_key
from botbridge.host import create_app
from botbridge.keys import TOUCH_INTERVAL, create_key, reconcile
from botbridge.settings import Settings
from botbridge.stores.memory import MemoryStore
from botbridge.testing import api_client

from .conftest import KEY_A, KEY_B, auth, make_plugins

pytestmark = pytest.mark.anyio


async def test_a_revoked_key_answers_401_at_once(app, client, clock: FakeClock) -> None:  # type: ignore[no-untyped-def]
    store = app.state.runtime.store
    assert (await client.get("/v1/senders")).status_code == 200
    key = await store.api_key_by_hash(hash_api_key(KEY_A))
    assert await store.revoke_api_key(key.id, clock.now())
    response = await client.get("/v1/senders")
    assert response.status_code == 401
    assert response.json()["error"]["code"] == "unauthorized"
    assert (await client.get("/v1/senders", headers=auth(KEY_B))).status_code == 200


async def test_last_use_is_written_at_most_once_a_minute(app, client, clock: FakeClock) -> None:  # type: ignore[no-untyped-def]
    store = app.state.runtime.store
    key_id = (await store.api_key_by_hash(hash_api_key(KEY_A))).id
    assert (await store.get_api_key(key_id)).last_used_at is None
    first = clock.now()
    for _ in range(3):
        await client.get("/v1/senders")
    assert (await store.get_api_key(key_id)).last_used_at == first
    clock.advance(TOUCH_INTERVAL - 1)
    await client.get("/v1/senders")
    assert (await store.get_api_key(key_id)).last_used_at == first
    clock.advance(1)
    await client.get("/v1/senders")
    assert (await store.get_api_key(key_id)).last_used_at == first + TOUCH_INTERVAL


async def test_last_use_written_by_another_host_counts(app, client, clock: FakeClock) -> None:  # type: ignore[no-untyped-def]
    store = app.state.runtime.store
    key_id = (await store.api_key_by_hash(hash_api_key(KEY_A))).id
    clock.advance(1000)
    await store.touch_api_key(key_id, clock.now() - 10)  # another host, ten seconds ago
    await client.get("/v1/senders")
    assert (await store.get_api_key(key_id)).last_used_at == clock.now() - 10


async def test_a_key_removed_from_the_setting_is_revoked_at_the_next_start(
    settings: Settings, clock: FakeClock
) -> None:
    store = MemoryStore(clock)
    async with api_client(create_app(settings, plugins=make_plugins(), store=store, clock=clock), KEY_A) as client:
        assert (await client.get("/v1/senders", headers=auth(KEY_B))).status_code == 200
    made, made_key = await create_key(store, clock, "acct-c", "made with the command")
    settings.api_keys = f"acct-a:{KEY_A}"  # type: ignore[assignment]
    async with api_client(create_app(settings, plugins=make_plugins(), store=store, clock=clock), KEY_A) as client:
        assert (await client.get("/v1/senders")).status_code == 200
        assert (await client.get("/v1/senders", headers=auth(KEY_B))).status_code == 401
        assert (await client.get("/v1/senders", headers=auth(made_key))).status_code == 200
    revoked = await store.api_key_by_hash(hash_api_key(KEY_B))
    assert revoked is not None and revoked.revoked_at == clock.now() and revoked.source == "setting"
    assert not (await store.get_api_key(made.id)).revoked  # type: ignore[union-attr]


async def test_an_empty_setting_revokes_nothing(clock: FakeClock) -> None:
    store = MemoryStore(clock)
    await reconcile(store, clock, [("acct-a", KEY_A)])
    done = await reconcile(store, clock, [])
    assert done.revoked == [] and not (await store.api_key_by_hash(hash_api_key(KEY_A))).revoked  # type: ignore[union-attr]


async def test_a_revoked_key_stays_revoked_when_put_back(clock: FakeClock, caplog: pytest.LogCaptureFixture) -> None:
    store = MemoryStore(clock)
    await reconcile(store, clock, [("acct-a", KEY_A), ("acct-b", KEY_B)])
    assert [k.account_id for k in (await reconcile(store, clock, [("acct-a", KEY_A)])).revoked] == ["acct-b"]
    with caplog.at_level(logging.WARNING, "botbridge.keys"):
        done = await reconcile(store, clock, [("acct-a", KEY_A), ("acct-b", KEY_B)])
    assert done.created == [] and (await store.api_key_by_hash(hash_api_key(KEY_B))).revoked  # type: ignore[union-attr]
    assert "stays revoked" in caplog.text and KEY_B not in caplog.text


async def test_a_setting_key_never_moves_to_another_account(clock: FakeClock) -> None:
    store = MemoryStore(clock)
    await reconcile(store, clock, [("acct-a", KEY_A)])
    await reconcile(store, clock, [("acct-b", KEY_A)])
    assert (await store.api_key_by_hash(hash_api_key(KEY_A))).account_id == "acct-a"  # type: ignore[union-attr]


async def test_created_keys_are_random_and_stored_hashed(clock: FakeClock) -> None:
    store = MemoryStore(clock)
    one, key_one = await create_key(store, clock, "acct", "ci")
    _, key_two = await create_key(store, clock, "acct")
    assert key_one != key_two and len(key_one) > 40
    assert one.key_hash == hash_api_key(key_one) and key_one not in one.model_dump_json()
    assert (await store.api_key_by_hash(hash_api_key(key_one))) == one
