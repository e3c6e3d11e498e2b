"""The fake against Direct Line 3.0's documented shapes and rules."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from botbridge.clock import FakeClock
from botbridge_azure_directline.activities import HERO_CARD
from botbridge_azure_directline.testing import DEFAULT_SECRET, FAKE_BASE_URL, OPTIONS_TRIGGER, FakeDirectLine

from .oracle import ActivityOracle, activity_problems

pytestmark = pytest.mark.anyio

API = "/v3/directline"


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def fake(clock: FakeClock) -> FakeDirectLine:
    return FakeDirectLine(clock=clock, token_lifetime=600)


@pytest.fixture
async def http(fake: FakeDirectLine) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=fake.app), base_url=FAKE_BASE_URL) as client:
        yield client


def bearer(value: str) -> dict[str, str]:
    return {"authorization": f"Bearer {value}"}


async def start(http: httpx.AsyncClient) -> dict[str, Any]:
    response = await http.post(f"{API}/conversations", headers=bearer(DEFAULT_SECRET))
    assert response.status_code == 201
    return response.json()


async def say(http: httpx.AsyncClient, conv: dict[str, Any], text: str, user: str = "u1") -> httpx.Response:
    return await http.post(
        f"{API}/conversations/{conv['conversationId']}/activities",
        headers=bearer(conv["token"]),
        json={"type": "message", "from": {"id": user}, "text": text},
    )


async def read(http: httpx.AsyncClient, conv: dict[str, Any], watermark: str | None = None) -> dict[str, Any]:
    params = {"watermark": watermark} if watermark is not None else {}
    response = await http.get(
        f"{API}/conversations/{conv['conversationId']}/activities", headers=bearer(conv["token"]), params=params
    )
    assert response.status_code == 200, response.text
    return response.json()


def assert_error(response: httpx.Response, status: int, code: str | None = None) -> None:
    assert response.status_code == status
    body = response.json()
    assert set(body) == {"error"} and set(body["error"]) == {"code", "message"}
    if code is not None:
        assert body["error"]["code"] == code


async def test_secret_starts_a_conversation_with_token_and_expiry(http: httpx.AsyncClient) -> None:
    conv = await start(http)
    assert set(conv) >= {"conversationId", "token", "expires_in", "streamUrl"}
    assert conv["expires_in"] == 600
    assert conv["token"] != DEFAULT_SECRET


async def test_wrong_or_missing_secret_is_refused(http: httpx.AsyncClient) -> None:
    assert_error(await http.post(f"{API}/conversations", headers=bearer("wrong-secret-value")), 403)
    assert_error(await http.post(f"{API}/conversations"), 401)
    assert_error(await http.post(f"{API}/conversations", headers={"authorization": "Basic abc"}), 401)


async def test_token_is_bound_to_its_conversation(http: httpx.AsyncClient) -> None:
    first, second = await start(http), await start(http)
    response = await http.get(
        f"{API}/conversations/{second['conversationId']}/activities", headers=bearer(first["token"])
    )
    assert_error(response, 403, "BadArgument")
    # and a token cannot start a conversation
    assert_error(await http.post(f"{API}/conversations", headers=bearer(first["token"])), 403)


async def test_token_expires_on_the_fake_clock_and_refresh_renews(http: httpx.AsyncClient, clock: FakeClock) -> None:
    conv = await start(http)
    clock.advance(500)
    refreshed = await http.post(f"{API}/tokens/refresh", headers=bearer(conv["token"]))
    assert refreshed.status_code == 200
    renewed = refreshed.json()
    assert renewed["conversationId"] == conv["conversationId"] and renewed["token"] != conv["token"]
    clock.advance(101)
    old = await http.get(f"{API}/conversations/{conv['conversationId']}/activities", headers=bearer(conv["token"]))
    assert_error(old, 403, "TokenExpired")
    assert (await read(http, {**conv, "token": renewed["token"]})) == {"activities": []}
    assert_error(await http.post(f"{API}/tokens/refresh", headers=bearer(conv["token"])), 403, "TokenExpired")


async def test_refresh_needs_a_token_not_the_secret(http: httpx.AsyncClient) -> None:
    assert_error(await http.post(f"{API}/tokens/refresh", headers=bearer(DEFAULT_SECRET)), 403)


async def test_secret_reconnects_with_a_new_token(http: httpx.AsyncClient, clock: FakeClock) -> None:
    conv = await start(http)
    clock.advance(601)
    response = await http.get(f"{API}/conversations/{conv['conversationId']}", headers=bearer(DEFAULT_SECRET))
    assert response.status_code == 200
    assert response.json()["conversationId"] == conv["conversationId"]
    assert_error(await http.get(f"{API}/conversations/nope", headers=bearer(DEFAULT_SECRET)), 404)


async def test_post_returns_activity_id_and_bot_echoes(http: httpx.AsyncClient, fake: FakeDirectLine) -> None:
    conv = await start(http)
    response = await say(http, conv, "hello")
    assert response.status_code == 200
    assert response.json() == {"id": f"{conv['conversationId']}|0000000"}
    body = await read(http, conv)
    assert body["watermark"] == "2"
    user, bot = body["activities"]
    assert user["from"] == {"id": "u1", "role": "user"} and user["text"] == "hello"
    assert bot["text"] == "echo: hello" and bot["replyToId"] == user["id"] and bot["from"]["role"] == "bot"
    assert fake.conversation(conv["conversationId"]).user_texts() == ["hello"]


async def test_watermark_is_honoured_and_old_watermarks_replay(http: httpx.AsyncClient) -> None:
    conv = await start(http)
    await say(http, conv, "one")
    first = await read(http, conv)
    await say(http, conv, "two")
    after = await read(http, conv, first["watermark"])
    assert [a["text"] for a in after["activities"]] == ["two", "echo: two"]
    again = await read(http, conv, "0")
    assert [a["text"] for a in again["activities"]] == ["one", "echo: one", "two", "echo: two"]
    assert (await read(http, conv, after["watermark"]))["activities"] == []


async def test_bad_activities_are_rejected(http: httpx.AsyncClient) -> None:
    conv = await start(http)
    url = f"{API}/conversations/{conv['conversationId']}/activities"
    headers = bearer(conv["token"])
    assert_error(await http.post(url, headers=headers, json={"type": "message", "text": "x"}), 400, "MissingProperty")
    assert_error(await http.post(url, headers=headers, json={"from": {"id": "u"}}), 400, "MissingProperty")
    assert_error(await http.post(url, headers=headers, json=[1]), 400)
    bad_json = {**headers, "content-type": "application/json"}
    assert_error(await http.post(url, headers=bad_json, content=b"{"), 400, "BadSyntax")
    assert_error(await http.get(url, headers=headers, params={"watermark": "x"}), 400)


async def test_options_trigger_offers_suggested_actions(http: httpx.AsyncClient) -> None:
    conv = await start(http)
    await say(http, conv, OPTIONS_TRIGGER)
    bot = (await read(http, conv))["activities"][-1]
    assert [(a["title"], a["value"]) for a in bot["suggestedActions"]["actions"]] == [
        ("Billing", "billing"),
        ("Sales", "sales"),
    ]


async def test_delayed_rule_and_push_follow_the_fake_clock(
    http: httpx.AsyncClient, fake: FakeDirectLine, clock: FakeClock
) -> None:
    fake.add_rule("think", "thought about it", delay=2)
    conv = await start(http)
    await say(http, conv, "think hard")
    assert [a["text"] for a in (await read(http, conv))["activities"]] == ["think hard"]
    fake.push(conv["conversationId"], "unprompted")
    clock.advance(2)
    texts = [a["text"] for a in (await read(http, conv, "1"))["activities"]]
    assert texts == ["unprompted", "thought about it"]


async def test_failures_are_injected_in_order(fake: FakeDirectLine, http: httpx.AsyncClient) -> None:
    conv = await start(http)
    fake.fail_next(429, retry_after=3)
    fake.fail_next(502)
    throttled = await say(http, conv, "x")
    assert_error(throttled, 429, "TooManyRequests")
    assert throttled.headers["retry-after"] == "3"
    assert_error(await say(http, conv, "x"), 502, "BotError")
    assert (await say(http, conv, "x")).status_code == 200
    assert fake.conversation(conv["conversationId"]).user_texts() == ["x"]


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    body=st.recursive(
        st.none() | st.booleans() | st.integers() | st.text(max_size=10),
        lambda inner: (
            st.lists(inner, max_size=3)
            | st.dictionaries(st.sampled_from(["type", "from", "id", "text", "attachments"]), inner, max_size=4)
        ),
        max_leaves=8,
    )
)
async def test_any_posted_body_gets_200_or_a_4xx_never_a_crash(
    fake: FakeDirectLine, body: Any, activity_oracle: ActivityOracle
) -> None:
    activity_oracle.skip_posted = True  # made-up bodies probing the fake, not the plugin's
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=fake.app), base_url=FAKE_BASE_URL) as http:
        conv = await start(http)
        response = await http.post(
            f"{API}/conversations/{conv['conversationId']}/activities",
            headers={**bearer(conv["token"]), "content-type": "application/json"},
            content=json.dumps(body).encode(),
        )
    assert response.status_code in (200, 400)
    if response.status_code == 400:
        assert set(response.json()["error"]) == {"code", "message"}


# --- the oracle: botbuilder-schema's models -------------------------------------------------

USER = {"id": "u1"}


@pytest.mark.parametrize(
    ("activity", "problem"),
    [
        ({"type": "message", "from": {"id": 5}}, ".from.id: 5 reads back as '5'"),  # msrest would coerce it
        ({"type": "message", "from": USER, "channeldata": {}}, ".channeldata is dropped"),
        ({"type": "message", "from": USER, "attachments": [{"contentType": "image/png", "name": None}]}, ".name"),
        ({"type": "mesage", "from": USER}, "is not one of ActivityTypes"),
        ({"type": "message", "from": "u1"}, "not a Activity"),
        (
            {"type": "message", "attachments": [{"contentType": HERO_CARD, "content": {"titel": "Plans"}}]},
            "attachments[0].content as a HeroCard: .titel is dropped",
        ),
        (
            {
                "type": "message",
                "attachments": [{"contentType": HERO_CARD, "content": {"buttons": [{"type": "imBack", "title": 1}]}}],
            },
            ".buttons[0].title: 1 reads back as '1'",
        ),
    ],
)
def test_the_oracle_refuses_what_the_bot_framework_models_do_not_have(activity: Any, problem: str) -> None:
    assert problem in "\n".join(activity_problems(activity, "activity"))


def test_the_oracle_accepts_what_botbuilder_schema_itself_serializes() -> None:
    from botbuilder.schema import Activity, Attachment, CardAction, ChannelAccount, HeroCard

    card = HeroCard(title="Plans", buttons=[CardAction(type="messageBack", title="Pro", value={"plan": "pro"})])
    activity = Activity(
        type="message",
        from_property=ChannelAccount(id="u1", role="user"),
        text="hi",
        value={"n": [1, 2.5, None]},
        channel_data={"clientActivityID": "m1"},
        attachments=[Attachment(content_type=HERO_CARD, content=card.serialize())],
    )
    assert activity_problems(activity.serialize(), "activity") == []


async def test_every_fake_reports_accepted_posts_the_activity_model_does_not_have(
    http: httpx.AsyncClient, activity_oracle: ActivityOracle
) -> None:
    conv = await start(http)
    body = {"type": "message", "from": {"id": "u1"}, "text": "hi", "channeldata": {"clientActivityID": "m1"}}
    url = f"{API}/conversations/{conv['conversationId']}/activities"
    response = await http.post(url, headers=bearer(conv["token"]), json=body)
    assert response.status_code == 200  # the fake takes it, as the service would (and ignore the typo)
    assert activity_oracle.checked["posted"] == 1
    assert [p for p in activity_oracle.problems if p.startswith("posted")] == [
        "posted activity as a Activity: .channeldata is dropped (not in the model, or null)"
    ]
    await read(http, conv)
    assert activity_oracle.checked["read"] == 2  # our activity and the bot's echo
    activity_oracle.problems.clear()  # provoked on purpose: not a failure of this test
