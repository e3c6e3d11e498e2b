from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import ValidationError

from botbridge.models import ConnectorCreate, ConnectorUpdate, Event, EventBody, iso_millis

SEED_MO = {
    "topic": "SCG-Message",
    "attempt": 1,
    "event": {
        "fld-val-list": {
            "sender_id_alias": "whatsapp_18329997008",
            "mo_price": 0,
            "company-id": 1234,
            "sender_id_id": "7ox2XHyusalKVReJSUEKd4",
            "message_body": "hi",
            "message_id": "xv2zjeoLRzJ8NFztxIx632",
            "to_address": "1832999XXXX",
            "has_attachment": False,
            "from_address": "+1813809XXXX",
            "application_id": 9762,
        },
        "evt-tp": "mo_message_received",
        "timestamp": "2022-06-17T18:24:48.060Z",
    },
    "event-id": "5OUWbEpORW63m_JXUdZlXA",
}


def test_event_round_trips_the_seed_format_exactly() -> None:
    event = Event.model_validate_payload(json.loads(json.dumps(SEED_MO)))
    assert event.payload() == SEED_MO
    assert list(event.payload()) == ["topic", "attempt", "event", "event-id"]
    assert list(event.payload()["event"]) == ["fld-val-list", "evt-tp", "timestamp"]
    assert event.type == "mo_message_received"


def test_event_accepts_the_guide_spelling_and_string_attempt() -> None:
    payload = {**SEED_MO, "attempt": "3"}
    payload["event_id"] = payload.pop("event-id")
    event = Event.model_validate_payload(payload)
    assert event.event_id == "5OUWbEpORW63m_JXUdZlXA"
    assert event.attempt == 3
    assert "event-id" in event.payload() and "event_id" not in event.payload()


def test_new_event_has_an_id_and_millisecond_timestamp() -> None:
    moment = datetime(2019, 8, 16, 1, 28, 44, 526999, tzinfo=UTC)
    event = Event(event=EventBody(**{"fld-val-list": {}, "evt-tp": "message_state_change", "timestamp": moment}))
    payload = event.payload()
    assert payload["event"]["timestamp"] == "2019-08-16T01:28:44.526Z"
    assert len(payload["event-id"]) == 22
    assert Event(event=event.event).event_id != event.event_id


@given(st.datetimes(timezones=st.just(UTC)))
def test_iso_millis_parses_back(moment: datetime) -> None:
    text = iso_millis(moment)
    assert text.endswith("Z") and len(text) == 24
    parsed = datetime.fromisoformat(text.replace("Z", "+00:00"))
    assert abs((parsed - moment).total_seconds()) < 0.001


def test_connector_payloads() -> None:
    created = ConnectorCreate.model_validate(
        {"type": "AMAZON_LEX", "sender_id": "s", "credentials": {"accessKeyId": "A"}, "external_id": "lex-bot"}
    )
    assert created.credentials == '{"accessKeyId":"A"}'
    assert ConnectorUpdate.model_validate({"version_number": "7"}).version_number == 7
    for bad in ({"version_number": "x"}, {"version_number": 0}, {}, {"version_number": 1, "id": "x"}):
        with pytest.raises(ValidationError):
            ConnectorUpdate.model_validate(bad)


@given(st.floats(min_value=0, max_value=4e9), st.floats(min_value=0.002, max_value=1e6))
def test_ids_sort_by_creation_time(first: float, later_by: float) -> None:
    from botbridge.ids import ALPHABET, LENGTH, new_id

    a, b = new_id(first), new_id(first + later_by)
    assert len(a) == len(b) == LENGTH and set(a + b) <= set(ALPHABET)
    assert a < b


def test_ids_made_within_one_millisecond_sort_in_creation_order() -> None:
    from botbridge.ids import new_id

    made = [new_id(1_700_000_000.0) for _ in range(500)]
    assert sorted(made) == made and len(set(made)) == 500
