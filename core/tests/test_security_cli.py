"""`botbridge keys create|list|revoke` and `GET /v1/keys`."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from botbridge.cli import main
from botbridge.crypto import hash_api_key
from botbridge.host import create_app
from botbridge.settings import Settings
from botbridge.testing import api_client

from .conftest import auth


@pytest.fixture
def store_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    url = f"sqlite:///{tmp_path}/keys.db"
    monkeypatch.setenv("BOTBRIDGE_STORE", url)
    monkeypatch.setenv("BOTBRIDGE_LOAD_PLUGINS", "sqlite")
    return url


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_create_list_revoke(store_env: str, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run(capsys, "keys", "create", "acct-1", "--name", "ci deploys")
    key = out.strip()
    assert code == 0 and out == key + "\n" and key.startswith("bb_") and "not shown again" in err
    code, out, _ = run(capsys, "keys", "list", "--json")
    [listed] = json.loads(out)
    assert listed["account_id"] == "acct-1" and listed["name"] == "ci deploys" and listed["source"] == "cli"
    assert not listed["revoked"] and listed["last_used_at"] is None
    assert key not in out and hash_api_key(key) not in out
    run(capsys, "keys", "create", "acct-2")
    assert [k["account_id"] for k in json.loads(run(capsys, "keys", "list", "--account", "acct-2", "--json")[1])] == [
        "acct-2"
    ]
    code, out, _ = run(capsys, "keys", "revoke", listed["id"])
    assert code == 0 and out == f"revoked API key {listed['id']} of account acct-1\n"
    code, out, _ = run(capsys, "keys", "revoke", listed["id"])
    assert code == 0 and "already revoked" in out
    code, out, _ = run(capsys, "keys", "list")
    lines = out.splitlines()
    assert lines[0].split()[:3] == ["ID", "ACCOUNT", "NAME"] and len(lines) == 3
    revoked_line = next(line for line in lines if line.startswith(listed["id"]))
    assert "ci deploys" in revoked_line and revoked_line.rstrip().endswith("Z")
    assert run(capsys, "keys", "revoke", "no-such-key")[0] == 1


def test_create_needs_an_account(store_env: str, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run(capsys, "keys", "create", "  ")
    assert code == 2 and out == "" and "ACCOUNT" in err


def test_a_store_that_cannot_open_is_one_line(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("BOTBRIDGE_STORE", "sqlite:////proc/no-such-dir/keys.db")
    monkeypatch.setenv("BOTBRIDGE_LOAD_PLUGINS", "sqlite")
    code, out, err = run(capsys, "keys", "list")
    assert code == 1 and out == "" and err.startswith("botbridge keys list: ") and len(err.splitlines()) == 1
    monkeypatch.setenv("BOTBRIDGE_STORE", "nosuch://x")
    code, out, err = run(capsys, "keys", "create", "acct")
    assert code == 2 and "BOTBRIDGE_STORE nosuch:// needs a store plugin" in err and len(err.splitlines()) == 1


@pytest.mark.anyio
async def test_a_key_made_and_revoked_by_the_command_on_a_running_host(
    store_env: str, capsys: pytest.CaptureFixture[str]
) -> None:
    settings = Settings(secret_key="cli-test-secret-key-0123")  # type: ignore[arg-type]
    app = create_app(settings)
    async with api_client(app) as client:
        assert await asyncio.to_thread(main, ["keys", "create", "acct-1", "--name", "bot"]) == 0
        key = capsys.readouterr().out.strip()
        response = await client.get("/v1/keys", headers=auth(key))
        assert response.status_code == 200
        [shown] = response.json()["items"]
        assert shown["name"] == "bot" and shown["last_used_at"] is not None and not shown["revoked"]
        assert set(shown) == {"id", "name", "source", "created_at", "last_used_at", "revoked", "revoked_at"}
        assert key not in response.text and hash_api_key(key) not in response.text
        assert await asyncio.to_thread(main, ["keys", "revoke", shown["id"]]) == 0
        assert (await client.get("/v1/keys", headers=auth(key))).status_code == 401


def test_keys_create_as_a_process(store_env: str) -> None:
    env = {**os.environ, "BOTBRIDGE_STORE": store_env, "BOTBRIDGE_LOAD_PLUGINS": "sqlite"}
    result = subprocess.run(
        [sys.executable, "-m", "botbridge.cli", "keys", "create", "acct-9"],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    assert len(result.stdout.splitlines()) == 1 and result.stdout.startswith("bb_")
