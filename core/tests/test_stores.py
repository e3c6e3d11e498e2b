"""Core's embedded stores pass the store contract."""

from __future__ import annotations

from pathlib import Path

import pytest

from botbridge.clock import FakeClock
from botbridge.store import Store
from botbridge.stores.memory import MemoryStore
from botbridge.stores.sqlite import SQLiteStore, path_from_url
from botbridge.testing import StoreContract


class TestMemoryStore(StoreContract):
    def create_store(self, clock: FakeClock) -> Store:
        return MemoryStore(clock)


class TestSQLiteStore(StoreContract):
    @pytest.fixture(autouse=True)
    def _db_path(self, tmp_path: Path) -> None:
        self.path = str(tmp_path / "data" / "botbridge.db")

    def create_store(self, clock: FakeClock) -> Store:
        return SQLiteStore(self.path, clock)

    async def reopen(self, store: Store, clock: FakeClock) -> Store | None:
        reopened = SQLiteStore(self.path, clock)
        await reopened.open()
        return reopened


class TestSQLiteInMemory(StoreContract):
    def create_store(self, clock: FakeClock) -> Store:
        return SQLiteStore(":memory:", clock)


@pytest.mark.parametrize(
    ("url", "path"),
    [
        ("sqlite:///botbridge.db", "botbridge.db"),
        ("sqlite:///data/x.db", "data/x.db"),
        ("sqlite:////var/lib/x.db", "/var/lib/x.db"),
        ("sqlite://:memory:", ":memory:"),
        ("sqlite://", ":memory:"),
    ],
)
def test_sqlite_urls(url: str, path: str) -> None:
    assert path_from_url(url) == path


@pytest.mark.anyio
async def test_closed_sqlite_store_is_not_ready(tmp_path: Path) -> None:
    store = SQLiteStore(str(tmp_path / "x.db"), FakeClock())
    await store.open()
    assert await store.ping()
    await store.close()
    assert not await store.ping()


@pytest.mark.anyio
async def test_a_failing_write_among_concurrent_ones_rolls_back_alone(tmp_path: Path) -> None:
    import asyncio

    from botbridge.errors import SenderTaken
    from botbridge.models import Connector, Sender

    store = SQLiteStore(str(tmp_path / "group.db"), FakeClock())
    await store.open()
    try:
        first = Connector(account_id="a", type="ECHO", sender_id="s1")
        clash = Connector(account_id="a", type="ECHO", sender_id="s1")
        sender = Sender(account_id="a", channel="loop", address="+1")
        results = await asyncio.gather(
            store.create_connector(first),
            store.create_connector(clash),
            store.create_sender(sender),
            store.claim("k", 60),
            return_exceptions=True,
        )
        assert results[0] is None and isinstance(results[1], SenderTaken) and results[3] is True
        reopened = SQLiteStore(str(tmp_path / "group.db"), FakeClock())
        await reopened.open()
        try:
            assert await reopened.get_sender(sender.id) == sender
            assert (await reopened.connector_for_sender("s1")).id == first.id  # type: ignore[union-attr]
        finally:
            await reopened.close()
    finally:
        await store.close()
