"""BOTBRIDGE_SECRET_KEY rotation: several keys, `botbridge rotate-secrets`, and the start-up check."""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path

import pytest

from botbridge.cli import main
from botbridge.clock import FakeClock
from botbridge.crypto import SecretBox
from botbridge.host import create_app
from botbridge.models import Sender, Subscription
from botbridge.plugins import Plugins
from botbridge.rotation import CANARY, check_secret_key, rotate_secrets
from botbridge.settings import Settings
from botbridge.stores import memory, sqlite
from botbridge.stores.memory import MemoryStore
from botbridge.testing import api_client

from .conftest import KEY_A, TestPlugin, sign_loop

OLD = "old-secret-key-0123456789"
NEW = "new-secret-key-9876543210"
WRONG = "wrong-secret-key-00000000"


def test_newest_key_encrypts_any_key_decrypts() -> None:
    old, both, new = SecretBox(OLD), SecretBox(f"{NEW}, {OLD}"), SecretBox(NEW)
    token = old.encrypt("s3cret")
    assert both.decrypt(token) == "s3cret" and not both.is_newest(token)
    with pytest.raises(ValueError):
        new.decrypt(token)
    rotated = both.rotate(token)
    assert new.decrypt(rotated) == "s3cret" and both.is_newest(rotated)
    assert new.decrypt(both.encrypt("x")) == "x"
    with pytest.raises(ValueError):
        SecretBox(WRONG).rotate(token)
    assert both.key_count == 2


@pytest.mark.parametrize("setting", ["", " , ", "long-enough-key-0001,short"])
def test_every_listed_key_is_long_enough(setting: str) -> None:
    with pytest.raises(ValueError, match="comma-separated"):
        SecretBox(setting)


def plugins() -> Plugins:
    found = Plugins()
    found.add(memory, "memory", builtin=True)
    found.add(sqlite, "sqlite", builtin=True)
    found.add(TestPlugin(), "testplugin")
    found.collect()
    return found


def host(store_url: str, secret_key: str):  # type: ignore[no-untyped-def]
    settings = Settings(store=store_url, api_keys=f"acct-a:{KEY_A}", secret_key=secret_key)  # type: ignore[arg-type]
    return create_app(settings, plugins=plugins())


@pytest.mark.anyio
async def test_rotation_end_to_end(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    caplog: pytest.LogCaptureFixture,
) -> None:
    url = f"sqlite:///{tmp_path}/bb.db"
    app = host(url, OLD)
    async with api_client(app, KEY_A) as client:
        sender = (
            await client.post(
                "/v1/senders",
                json={"channel": "loop", "address": "+1555", "credentials": "sender-cred", "webhook_secret": "hook-s"},
            )
        ).json()
        connector = (
            await client.post(
                "/v1/connectors", json={"type": "ECHO", "sender_id": sender["id"], "credentials": '{"token": "bot-t"}'}
            )
        ).json()
        rt = app.state.runtime
        subscription = Subscription(account_id="acct-a", url="https://x.example/", secret_enc=rt.box.encrypt("sub-s"))
        await rt.store.create_subscription(subscription)

    # The operator lists the new key first, keeps the old one, and rotates.
    monkeypatch.setenv("BOTBRIDGE_STORE", url)
    monkeypatch.setenv("BOTBRIDGE_LOAD_PLUGINS", "sqlite")
    monkeypatch.setenv("BOTBRIDGE_SECRET_KEY", f"{NEW},{OLD}")
    assert await asyncio.to_thread(main, ["rotate-secrets"]) == 0
    assert capsys.readouterr().out == "re-encrypted 4 secrets of 3 records with the newest key\n"
    assert await asyncio.to_thread(main, ["rotate-secrets"]) == 0  # again: nothing left to do
    assert capsys.readouterr().out == "re-encrypted 0 secrets of 0 records with the newest key\n"

    # Only the new key now: everything decrypts, and a webhook signed with the stored secret is accepted.
    app = host(url, NEW)
    async with api_client(app, KEY_A) as client:
        assert (await client.get("/readyz")).status_code == 200
        rt = app.state.runtime
        stored = await rt.store.get_sender(sender["id"])
        context = rt.sender_context(stored)
        assert (context.credentials, context.webhook_secret) == ("sender-cred", "hook-s")
        bound = await rt.store.get_connector(connector["id"])
        assert rt.bot_session(bound, conversation=None).credentials == '{"token": "bot-t"}'  # type: ignore[arg-type]
        assert rt.box.decrypt((await rt.store.get_subscription(subscription.id)).secret_enc) == "sub-s"
        body, headers = sign_loop("hook-s", {"id": "m-1", "from": "+1999", "text": "hi"})
        response = await client.post(f"/v1/webhooks/loop/{sender['id']}", content=body, headers=headers)
        assert response.status_code == 200, response.text

    # The old key alone no longer fits: not ready, one clear line at start, and no work or API.
    with caplog.at_level(logging.ERROR, "botbridge"):
        app = host(url, OLD)
        async with api_client(app, KEY_A) as client:
            ready = await client.get("/readyz")
            assert ready.status_code == 503
            assert "BOTBRIDGE_SECRET_KEY does not fit this store" in ready.json()["status"]
            response = await client.get("/v1/senders")
            assert response.status_code == 503 and response.json()["error"]["code"] == "secret_key_mismatch"
            body, headers = sign_loop("hook-s", {"id": "m-2", "from": "+1999", "text": "hi"})
            response = await client.post(f"/v1/webhooks/loop/{sender['id']}", content=body, headers=headers)
            assert response.status_code == 503
            assert app.state.runtime.engine.problems() == [] and not app.state.runtime.engine._tasks
    lines = [r for r in caplog.records if "does not fit this store" in r.getMessage()]
    assert len(lines) == 1 and "not ready" in lines[0].getMessage()
    for secret in (OLD, NEW, "sender-cred", "hook-s"):
        assert secret not in caplog.text


@pytest.mark.anyio
async def test_a_store_from_before_canaries_is_checked_by_its_records() -> None:
    clock = FakeClock()
    store = MemoryStore(clock)
    sender = Sender(account_id="a", channel="loop", address="+1", credentials_enc=SecretBox(OLD).encrypt("c"))
    await store.create_sender(sender)
    problem = await check_secret_key(store, SecretBox(WRONG))
    assert problem is not None and f"sender {sender.id}" in problem
    assert await store.get_meta(CANARY) is None  # a wrong key never certifies itself
    assert await check_secret_key(store, SecretBox(f"{NEW},{OLD}")) is None
    assert await store.get_meta(CANARY) is not None
    assert await check_secret_key(store, SecretBox(WRONG)) is not None


class ChangingStore(MemoryStore):
    """A store where a PATCH lands between the rotation's read and its write, once."""

    def __init__(self, clock: FakeClock, box: SecretBox) -> None:
        super().__init__(clock)
        self.box = box
        self.raced = False

    async def replace_secrets(self, kind, record_id, expected, new):  # type: ignore[no-untyped-def]
        if not self.raced:
            self.raced = True
            sender = self.senders[record_id]
            sender.address = "+2"
            sender.credentials_enc = self.box.encrypt("patched")  # a host still on the old key
        return await super().replace_secrets(kind, record_id, expected, new)


@pytest.mark.anyio
async def test_rotation_never_overwrites_a_concurrent_change() -> None:
    old, both = SecretBox(OLD), SecretBox(f"{NEW},{OLD}")
    store = ChangingStore(FakeClock(), old)
    sender = Sender(account_id="a", channel="loop", address="+1", credentials_enc=old.encrypt("c"))
    await store.create_sender(sender)
    done = await rotate_secrets(store, both)
    assert done.records == 1 and done.unreadable == [] and done.changed == []
    stored = await store.get_sender(sender.id)
    assert stored is not None and stored.address == "+2"
    assert SecretBox(NEW).decrypt(stored.credentials_enc) == "patched"


def test_rotate_secrets_reports_what_no_key_opens(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    url = f"sqlite:///{tmp_path}/bb.db"

    async def seed() -> str:
        store = sqlite.SQLiteStore(str(tmp_path / "bb.db"), FakeClock())
        await store.open()
        sender = Sender(account_id="a", channel="loop", address="+1", credentials_enc=SecretBox(WRONG).encrypt("c"))
        await store.create_sender(sender)
        await store.close()
        return sender.id

    sender_id = asyncio.run(seed())
    monkeypatch.setenv("BOTBRIDGE_STORE", url)
    monkeypatch.setenv("BOTBRIDGE_LOAD_PLUGINS", "sqlite")
    monkeypatch.delenv("BOTBRIDGE_SECRET_KEY", raising=False)
    assert main(["rotate-secrets"]) == 2
    assert "BOTBRIDGE_SECRET_KEY must be set" in capsys.readouterr().err
    monkeypatch.setenv("BOTBRIDGE_SECRET_KEY", f"{NEW},{OLD}")
    assert main(["rotate-secrets"]) == 1
    err = capsys.readouterr().err
    assert f"cannot decrypt sender {sender_id} credentials_enc" in err and NEW not in err
    monkeypatch.setenv("BOTBRIDGE_SECRET_KEY", "short")
    assert main(["rotate-secrets"]) == 2  # a bad setting, named in one line
    err = capsys.readouterr().err
    assert "BOTBRIDGE_SECRET_KEY" in err and "comma-separated" in err and "short" not in err
