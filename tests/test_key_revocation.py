"""Hosts sharing one store (SQLite, Redis, PostgreSQL): revocation seen at once, rotation then only the new key fits."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from botbridge.crypto import hash_api_key
from botbridge.host import create_app
from botbridge.settings import Settings
from botbridge.testing import api_client

pytestmark = pytest.mark.anyio
KEY = "revocation-test-key-1"


@pytest.fixture(params=["sqlite", "redis", "postgres"])
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'shared.db'}"
        return
    if request.param == "postgres":
        pg = pytest.importorskip("botbridge_postgres.testing", reason="botbridge-postgres is not installed")
        pg_url = pg.postgres_test_url()
        pg_reason = pg.unavailable_reason(pg_url)
        if pg_reason is not None:
            pytest.skip(pg_reason)
        schema = pg.unique_schema()
        try:
            yield pg.store_url(pg_url, schema)
        finally:
            pg.drop_schema(pg_url, schema)
        return
    redis_testing = pytest.importorskip("botbridge_redis.testing", reason="botbridge-redis is not installed")
    url = redis_testing.redis_test_url()
    reason = redis_testing.unavailable_reason(url)
    if reason is not None:
        pytest.skip(reason)
    prefix = redis_testing.unique_prefix()
    try:
        yield redis_testing.store_url(url, prefix)
    finally:
        redis_testing.delete_prefix(url, prefix)


async def test_revocation_is_seen_by_every_host_at_once(store_url: str) -> None:
    settings = Settings(
        store=store_url,
        api_keys=f"acct:{KEY}",  # type: ignore[arg-type]
        secret_key="revocation-test-secret-key",  # type: ignore[arg-type]
        load_plugins="sqlite,redis,postgres",
    )
    one, two = create_app(settings), create_app(settings)
    async with api_client(one, KEY) as first, api_client(two, KEY) as second:
        for _ in range(3):  # warm whatever either host keeps
            assert (await first.get("/v1/senders")).status_code == 200
            assert (await second.get("/v1/senders")).status_code == 200
        store = one.state.runtime.store
        key = await store.api_key_by_hash(hash_api_key(KEY))
        assert await store.revoke_api_key(key.id, one.state.runtime.clock.now())
        assert (await second.get("/v1/senders")).status_code == 401
        assert (await first.get("/v1/senders")).status_code == 401


async def test_rotation_on_each_store(store_url: str) -> None:
    from botbridge.crypto import SecretBox
    from botbridge.models import Sender
    from botbridge.rotation import rotate_secrets

    old, new = "shared-old-secret-key-01", "shared-new-secret-key-02"

    def settings(secret_key: str) -> Settings:
        return Settings(
            store=store_url,
            api_keys=f"acct:{KEY}",  # type: ignore[arg-type]
            secret_key=secret_key,  # type: ignore[arg-type]
            load_plugins="sqlite,redis,postgres",
        )

    before = create_app(settings(old))
    async with api_client(before, KEY):
        rt = before.state.runtime
        sender = Sender(account_id="acct", channel="loop", address="+1", credentials_enc=rt.box.encrypt("c"))
        await rt.store.create_sender(sender)
        done = await rotate_secrets(rt.store, SecretBox(f"{new},{old}"))
        assert (done.records, done.unreadable, done.changed) == (1, [], [])
    after, stale = create_app(settings(new)), create_app(settings(old))
    async with api_client(after, KEY) as fits, api_client(stale, KEY) as does_not:
        assert (await fits.get("/readyz")).status_code == 200
        stored = await after.state.runtime.store.get_sender(sender.id)
        assert after.state.runtime.box.decrypt(stored.credentials_enc) == "c"
        assert (await does_not.get("/readyz")).status_code == 503
