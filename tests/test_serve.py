"""`botbridge serve` as an operator runs it: the seed's curl calls, then a restart."""

from __future__ import annotations

from pathlib import Path

import httpx

from .servers import HostProcess

KEY = "seed-test-key-1"
SEED_BODY = '{"type":"AZURE_BOT_DIRECT_LINE","sender_id":"SENDER","credentials":"SECRET","external_id":"Test123"}'
DIRECT_LINE_SECRET = "ZrVkDm7_F24.cwA.BEs.Sz0w9A3HT1jhIo67glktyW4wz73y6J_Hd810FP6eFTpQ"


def test_seed_calls_and_data_surviving_a_restart(tmp_path: Path) -> None:
    env = {"BOTBRIDGE_STORE": f"sqlite:///{tmp_path}/botbridge.db", "BOTBRIDGE_API_KEYS": f"acct1:{KEY}"}
    host = HostProcess(env, tmp_path).start()
    headers = {"Authorization": f"Bearer {KEY}"}
    try:
        with httpx.Client(base_url=host.url, headers=headers, timeout=10) as api:
            sender = api.post(
                "/v1/senders",
                json={
                    "channel": "scg",
                    "address": "66000",
                    "credentials": "scg-api-token-0001",
                    "webhook_secret": "ess-delivery-secret-0001",
                    "config": {"from": "channel:demoChannel01"},
                },
            )
            assert sender.status_code == 201, sender.text
            sender_id = sender.json()["id"]
            # exactly the seed's body, as curl sends it
            created = api.post(
                "/v1/connectors",
                content=SEED_BODY.replace("SENDER", sender_id).replace("SECRET", DIRECT_LINE_SECRET).encode(),
                headers={"Content-Type": "application/json"},
            )
            assert created.status_code == 201, created.text
            connector = created.json()
            assert api.get(f"/v1/connectors/{connector['id']}").json() == connector
            updated = api.post(
                f"/v1/connectors/{connector['id']}",
                json={"external_id": "changed-id-assigned-by-me", "version_number": "1"},
            )
            assert updated.status_code == 200 and updated.json()["version_number"] == 2
            assert httpx.get(host.url + "/v1/connectors").status_code == 401
    finally:
        host.stop()
    assert DIRECT_LINE_SECRET not in host.output()

    host = HostProcess(env, tmp_path, port=host.port).start()
    try:
        with httpx.Client(base_url=host.url, headers=headers, timeout=10) as api:
            listed = api.get("/v1/connectors").json()["items"]
            assert [(c["id"], c["external_id"], c["version_number"]) for c in listed] == [
                (connector["id"], "changed-id-assigned-by-me", 2)
            ]
            assert api.delete(f"/v1/connectors/{connector['id']}").status_code == 204
            assert api.get(f"/v1/connectors/{connector['id']}").status_code == 404
    finally:
        host.stop()
    for stored in tmp_path.glob("botbridge.db*"):
        assert DIRECT_LINE_SECRET.encode() not in stored.read_bytes()


def test_json_logs_carry_correlation_ids_and_no_secrets(tmp_path: Path) -> None:
    import json

    env = {
        "BOTBRIDGE_STORE": f"sqlite:///{tmp_path}/botbridge.db",
        "BOTBRIDGE_API_KEYS": f"acct1:{KEY}",
        "BOTBRIDGE_LOG_FORMAT": "json",
    }
    host = HostProcess(env, tmp_path).start()
    try:
        with httpx.Client(base_url=host.url, headers={"Authorization": f"Bearer {KEY}"}, timeout=10) as api:
            sender = api.post(
                "/v1/senders",
                json={
                    "channel": "scg",
                    "address": "66000",
                    "credentials": "scg-api-token-0001",
                    "webhook_secret": "ess-delivery-secret-0001",
                    "config": {"from": "channel:demoChannel01"},
                },
            )
            assert sender.status_code == 201
    finally:
        host.stop()
    lines = [json.loads(line) for line in host.output().splitlines() if line.startswith("{")]
    assert any("sender" in line["message"] and "created" in line["message"] for line in lines)
    assert all({"time", "level", "logger", "correlation_id", "message"} <= set(line) for line in lines)
    assert "scg-api-token-0001" not in host.output() and "ess-delivery-secret-0001" not in host.output()
