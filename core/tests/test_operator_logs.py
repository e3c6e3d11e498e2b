"""What an operator reads: one line per refused webhook, failures by message id, when and where."""

from __future__ import annotations

import asyncio
import json
import logging
import re
from typing import Any

import pytest

from botbridge.errors import SendError
from botbridge.logs import JSONFormatter
from botbridge.runtime import store_location

from .conftest import sign_loop
from .test_engine import World, make_world

pytestmark = pytest.mark.anyio


@pytest.fixture
async def world(tmp_path: Any) -> Any:
    async with make_world(tmp_path) as w:
        yield w


def counted(metrics: str, name: str, **labels: str) -> float:
    wanted = ",".join(f'{k}="{v}"' for k, v in sorted(labels.items()))
    match = re.search(rf"^{name}_total\{{{re.escape(wanted)}\}} (\S+)$", metrics, re.MULTILINE)
    return float(match.group(1)) if match else 0.0


async def test_every_refused_webhook_is_one_line_and_one_count(world: World, caplog: Any) -> None:
    caplog.set_level("WARNING", logger="botbridge.webhooks")
    body, headers = sign_loop("the-wrong-secret", {"id": "m1", "from": "+15550190", "text": "hi"})
    forged = await world.client.post(f"/v1/webhooks/loop/{world.sender_id}", content=body, headers=headers)
    assert forged.status_code == 401
    unknown = await world.client.post("/v1/webhooks/loop/no-such-sender", content=body, headers=headers)
    assert unknown.status_code == 404
    malformed_body, malformed_headers = sign_loop("loop-secret", b"{not json")
    malformed = await world.client.post(
        f"/v1/webhooks/loop/{world.sender_id}", content=malformed_body, headers=malformed_headers
    )
    assert malformed.status_code == 400
    lines = [r.getMessage() for r in caplog.records if r.name == "botbridge.webhooks"]
    assert len(lines) == 3, lines
    assert lines[0].startswith("webhook refused (signature): channel loop, sender " + world.sender_id)
    assert lines[1].startswith("webhook refused (unknown_sender): channel loop, sender no-such-sender")
    assert lines[2].startswith("webhook refused (malformed): channel loop")
    for line in lines:
        assert headers["x-signature"] not in line and "loop-secret" not in line and "\n" not in line
    metrics = (await world.client.get("/metrics")).text
    for reason in ("signature", "unknown_sender", "malformed"):
        assert counted(metrics, "botbridge_webhooks_rejected", channel="loop", reason=reason) == 1.0, reason


async def test_a_message_that_fails_for_good_is_a_warning_naming_it(world: World, caplog: Any) -> None:
    caplog.set_level("INFO", logger="botbridge")
    world.channel.failures.append(SendError("SCG answered 400: invalid destination", status_code=400))
    sent = await world.client.post("/v1/messages", json={"sender_id": world.sender_id, "to": "+15550191", "text": "x"})
    message_id = sent.json()["id"]
    await asyncio.wait_for(world.rt.engine.idle(), 10)
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING and message_id in r.getMessage()]
    assert len(warnings) == 1 and "failed for good (400)" in warnings[0].getMessage()
    assert "+15550191" not in warnings[0].getMessage()  # masked
    # every line about it, from the API call to the send, carries its id as the correlation id
    about_it = [r for r in caplog.records if message_id in r.getMessage()]
    assert about_it and all(getattr(r, "correlation_id", None) == message_id for r in about_it)


def test_json_log_lines_carry_milliseconds_and_the_zone() -> None:
    record = logging.LogRecord("botbridge.engine", logging.INFO, __file__, 1, "hello %s", ("world",), None)
    record.created = 1796598000.123456
    line = json.loads(JSONFormatter().format(record))
    assert line["time"] == "2026-12-06T23:00:00.123+00:00"
    assert line["message"] == "hello world" and line["logger"] == "botbridge.engine"


def test_the_store_location_never_shows_a_password() -> None:
    assert (
        store_location("postgresql://app:s3cret@db.internal:5432/bridge")
        == "postgresql://app:…@db.internal:5432/bridge"
    )
    assert store_location("sqlite:///var/lib/botbridge.db") == "sqlite:///var/lib/botbridge.db"
    assert "hunter2" not in store_location("redis://:hunter2@cache:6379/0")


async def test_the_host_says_where_its_store_is_and_what_it_loaded_at_start(tmp_path: Any, caplog: Any) -> None:
    caplog.set_level("INFO", logger="botbridge")
    async with make_world(tmp_path):
        pass
    [started] = [r.getMessage() for r in caplog.records if r.getMessage().startswith("host started")]
    assert "store memory://" in started and "plugins (" in started and "workers" in started and "console" in started
