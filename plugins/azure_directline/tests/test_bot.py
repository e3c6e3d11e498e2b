"""The Direct Line backend against the strict fake."""

from __future__ import annotations

import json
import logging
from collections.abc import AsyncIterator, Callable
from typing import Any

import anyio
import httpx
import pytest
from hypothesis import given
from hypothesis import strategies as st

from botbridge import BotCredentialsInvalid, BotError, BotSession, ConfigInvalid, Connector, Conversation, Reply
from botbridge.clock import FakeClock, SystemClock
from botbridge.http import RetryPolicy
from botbridge.models import Media
from botbridge.testing import BotBackendContract, BotHarness
from botbridge.testing.bots import inbound
from botbridge_azure_directline import DirectLineBot, activity_replies, activity_reply, derive_user_id
from botbridge_azure_directline.activities import ADAPTIVE_ELEMENTS, CARD_RENDERERS, message_back
from botbridge_azure_directline.testing import FAKE_BASE_URL, OPTIONS_TRIGGER, FakeDirectLine, echo

from .oracle import ActivityOracle

pytestmark = pytest.mark.anyio

SEED_SECRET = "ZrVkDm7_F24.cwA.BEs.Sz0w9A3HT1jhIo67glktyW4wz73y6J_Hd810FP6eFTpQ"
CONTACT = "+15551234567"
FAST = RetryPolicy(attempts=2, base=0.01, cap=0.5)


class FastBot(DirectLineBot):
    retry_policy = FAST


class RecordingClock(SystemClock):
    def __init__(self) -> None:
        self.sleeps: list[float] = []

    async def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        await super().sleep(seconds)


def make_session_factory(fake: FakeDirectLine, clock: Any, **config: Any) -> Callable[..., BotSession]:
    connector = Connector(
        account_id="acct",
        type="AZURE_BOT_DIRECT_LINE",
        sender_id="snd1",
        config={"base_url": FAKE_BASE_URL, **config},
    )

    def session(credentials: str | None = None, contact: str = CONTACT) -> BotSession:
        now = clock.now()
        conversation = Conversation(
            sender_id="snd1", contact=contact, connector_id=connector.id, opened_at=now, last_mo_at=now
        )
        return BotSession(connector=connector, credentials=credentials or fake.secret, conversation=conversation)

    return session


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def fake(clock: FakeClock) -> FakeDirectLine:
    return FakeDirectLine(clock=clock, token_lifetime=600)


@pytest.fixture
async def http(fake: FakeDirectLine) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=fake.app)) as client:
        yield client


@pytest.fixture
async def bot(http: httpx.AsyncClient, clock: FakeClock) -> AsyncIterator[FastBot]:
    instance = FastBot(http, clock)
    yield instance
    await instance.aclose()


@pytest.fixture
def new_session(fake: FakeDirectLine, clock: FakeClock) -> Callable[..., BotSession]:
    return make_session_factory(fake, clock, poll_interval=0.5, reply_wait=5)


async def until(predicate: Callable[[], bool], clock: FakeClock | None = None, step: float = 0.25) -> None:
    """Let tasks run (stepping the fake clock) until `predicate()` holds."""
    with anyio.fail_after(5):
        while not predicate():
            if clock is not None:
                clock.advance(step)
            await anyio.sleep(0.005)


# --- the conformance suite ---------------------------------------------------


class TestDirectLineContract(BotBackendContract):
    @pytest.fixture
    async def harness(self) -> AsyncIterator[BotHarness]:
        clock = SystemClock()
        fake = FakeDirectLine(clock=clock)
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=fake.app)) as http:
            bot = FastBot(http, clock)
            session = make_session_factory(fake, clock, poll_interval=0.02, reply_wait=1)

            async def schedule_late(session: BotSession, text: str) -> None:
                fake.push(session.state["conversation_id"], text, delay=0.1)

            yield BotHarness(
                bot=bot,
                session=session,
                valid_credentials=SEED_SECRET,
                refused_credentials="Wrong0Secret.cwA.abc.0000000000000000000000",
                expected_echo=echo,
                options_trigger=OPTIONS_TRIGGER,
                backend_session_id=lambda s: s.state["conversation_id"],
                fail_next=fake.fail_next,
                schedule_late=schedule_late,
            )
            await bot.aclose()


# --- validation --------------------------------------------------------------


@pytest.mark.parametrize(
    "secret", ["", " ", "abc", SEED_SECRET + " ", "two words secret value here", "tab\tinside-secret-value", "x" * 1025]
)
def test_bad_secrets_fail_validation_without_echoing_them(secret: str) -> None:
    bot = DirectLineBot(httpx.AsyncClient(), SystemClock())
    with pytest.raises(ConfigInvalid) as caught:
        bot.validate_credentials(secret, {})
    assert caught.value.field == "credentials"
    if len(secret) > 3:
        assert secret.strip() not in caught.value.message


@pytest.mark.parametrize("base_url", ["ftp://directline.example", "directline.botframework.com", "https://", 42, ""])
def test_bad_base_url_fails_validation(base_url: Any) -> None:
    bot = DirectLineBot(httpx.AsyncClient(), SystemClock())
    with pytest.raises(ConfigInvalid) as caught:
        bot.validate_credentials(SEED_SECRET, {"base_url": base_url})
    assert caught.value.field == "config.base_url"


def test_good_config_passes_and_bad_numbers_fail() -> None:
    bot = DirectLineBot(httpx.AsyncClient(), SystemClock())
    bot.validate_credentials(
        SEED_SECRET,
        {"base_url": "https://europe.directline.botframework.com", "late_reply_window": 120, "reply_wait": 2.5},
    )
    bad = [("late_reply_window", -1), ("reply_wait", "5"), ("poll_interval", 0), ("reply_wait", True)]
    for key, value in [*bad, ("late_reply_budget", 0), ("late_reply_budget", 5000)]:
        with pytest.raises(ConfigInvalid) as caught:
            bot.validate_credentials(SEED_SECRET, {key: value})
        assert caught.value.field == f"config.{key}"
    with pytest.raises(ConfigInvalid, match="reads a second"):
        bot.validate_credentials(SEED_SECRET, {"late_reply_budget": 0})


# --- conversations and turns -------------------------------------------------


async def test_open_keeps_plain_json_state_and_user_id_is_not_the_number(
    bot: FastBot, new_session: Callable[..., BotSession], fake: FakeDirectLine, clock: FakeClock
) -> None:
    session = new_session()
    await bot.open(session)
    state = session.state
    assert json.loads(json.dumps(state)) == state
    assert state["conversation_id"] in fake.conversations
    assert state["token_expires_at"] == clock.now() + 600
    assert state["token_refresh_at"] < state["token_expires_at"]
    assert state["watermark"] is None
    assert await bot.send(session, inbound(session, "hi")) == [Reply(text="echo: hi")]
    seen = fake.conversation(state["conversation_id"]).user_activities()[0]
    assert seen["from"]["id"] == state["user_id"]
    assert "5551234567" not in json.dumps(seen["from"])
    assert seen["channelData"]["botbridge"]["conversation_id"] == session.conversation_id
    assert state["watermark"] == "2"


async def test_user_id_is_stable_per_contact_and_connector(
    bot: FastBot, new_session: Callable[..., BotSession]
) -> None:
    first, second, other = new_session(), new_session(), new_session(contact="+15550000000")
    for session in (first, second, other):
        await bot.open(session)
    assert first.state["user_id"] == second.state["user_id"] != other.state["user_id"]
    assert first.state["conversation_id"] != second.state["conversation_id"]


@given(contact=st.text(min_size=1, max_size=40), salt=st.text(min_size=1, max_size=40))
def test_derived_user_id_is_opaque_and_stable(contact: str, salt: str) -> None:
    user_id = derive_user_id(contact, salt)
    assert user_id == derive_user_id(contact, salt)
    assert user_id.startswith("bb-") and len(user_id) == 35
    assert all(c in "0123456789abcdef" for c in user_id[3:])
    assert derive_user_id(contact, salt + "x") != user_id


async def test_turns_never_repeat_earlier_replies(
    bot: FastBot, new_session: Callable[..., BotSession], fake: FakeDirectLine
) -> None:
    session = new_session()
    await bot.open(session)
    for n, text in enumerate(["one", "two", "three", "four"]):
        replies = await bot.send(session, inbound(session, text, n))
        assert [r.text for r in replies] == [echo(text)]
    assert fake.conversation(session.state["conversation_id"]).user_texts() == ["one", "two", "three", "four"]


async def test_a_reloaded_session_keeps_the_watermark(
    bot: FastBot, new_session: Callable[..., BotSession], fake: FakeDirectLine
) -> None:
    session = new_session()
    await bot.open(session)
    await bot.send(session, inbound(session, "one"))
    await bot.aclose()  # forget everything held in memory: only the state remains
    reloaded = BotSession(
        connector=session.connector,
        credentials=session.credentials,
        conversation=session.conversation.model_copy(deep=True),
    )
    assert [r.text for r in await bot.send(reloaded, inbound(reloaded, "two", 1))] == ["echo: two"]


async def test_postback_is_sent_as_the_text(bot: FastBot, new_session: Callable[..., BotSession]) -> None:
    session = new_session()
    await bot.open(session)
    message = inbound(session, "2").model_copy(update={"postback": "sales"})
    assert [r.text for r in await bot.send(session, message)] == ["echo: sales"]


# --- tokens ---------------------------------------------------------------------


async def test_token_is_refreshed_before_it_expires(
    bot: FastBot, new_session: Callable[..., BotSession], fake: FakeDirectLine, clock: FakeClock
) -> None:
    session = new_session()
    await bot.open(session)
    first_token = session.state["token"]
    clock.advance(350)  # past the refresh point (lifetime 600: refresh after 300)
    assert [r.text for r in await bot.send(session, inbound(session, "hi"))] == ["echo: hi"]
    assert ("POST", "/v3/directline/tokens/refresh") in fake.requests
    assert session.state["token"] != first_token
    assert session.state["token_expires_at"] == clock.now() + 600


async def test_expired_token_reconnects_with_the_secret(
    bot: FastBot, new_session: Callable[..., BotSession], fake: FakeDirectLine, clock: FakeClock
) -> None:
    session = new_session()
    await bot.open(session)
    await bot.send(session, inbound(session, "one"))
    await bot.aclose()
    clock.advance(700)  # the token is dead: refresh is no longer possible
    assert [r.text for r in await bot.send(session, inbound(session, "two", 1))] == ["echo: two"]
    assert ("GET", f"/v3/directline/conversations/{session.state['conversation_id']}") in fake.requests
    assert ("POST", "/v3/directline/tokens/refresh") not in fake.requests


# --- errors ----------------------------------------------------------------------


async def test_refused_secret_is_credentials_invalid_without_the_secret(
    bot: FastBot, new_session: Callable[..., BotSession], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    secret = "NotTheRightSecret.cwA.x.0123456789"
    with pytest.raises(BotCredentialsInvalid) as caught:
        await bot.open(new_session(credentials=secret))
    assert caught.value.status_code == 403
    assert secret not in str(caught.value) and secret not in caplog.text


async def test_403_on_activities_is_credentials_invalid(
    bot: FastBot, new_session: Callable[..., BotSession], fake: FakeDirectLine
) -> None:
    session = new_session()
    await bot.open(session)
    fake.fail_next(403)
    with pytest.raises(BotCredentialsInvalid):
        await bot.send(session, inbound(session, "hi"))


async def test_429_honours_retry_after(fake: FakeDirectLine) -> None:
    clock = RecordingClock()
    fake.clock = clock
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=fake.app)) as http:
        bot = FastBot(http, clock)
        session = make_session_factory(fake, clock)()
        await bot.open(session)
        fake.fail_next(429, retry_after=0.05)
        assert [r.text for r in await bot.send(session, inbound(session, "hi"))] == ["echo: hi"]
        assert clock.sleeps[0] == 0.05
        await bot.aclose()


def _posts(fake: FakeDirectLine) -> int:
    return len([r for r in fake.requests if r[0] == "POST" and r[1].endswith("/activities")])


async def send_while_time_passes(bot: FastBot, session: BotSession, text: str, clock: FakeClock) -> list[Reply]:
    """`bot.send` with the fake clock moving, failing within 5 s.

    A re-post comes after a backoff sleep on the fake clock: with the clock
    standing still that sleep would never end (a hang, not a failure). With
    it moving, the re-post reaches the fake, which refuses the duplicate, and
    the turn fails at once.
    """
    results: list[list[Reply]] = []

    async def turn() -> None:
        results.append(await bot.send(session, inbound(session, text)))

    async with anyio.create_task_group() as tg:
        tg.start_soon(turn)
        await until(lambda: bool(results), clock)
    return results[0]


@pytest.mark.parametrize("status", [502, 504])
async def test_a_post_the_bot_received_and_failed_is_never_posted_again(
    bot: FastBot, new_session: Callable[..., BotSession], fake: FakeDirectLine, clock: FakeClock, status: int
) -> None:
    session = new_session()
    await bot.open(session)
    fake.fail_after_delivery(status)  # the bot ran the turn, then the service answered 502/504
    replies = await send_while_time_passes(bot, session, "hi", clock)
    assert [r.text for r in replies] == ["echo: hi"]  # read from the activities, not re-posted
    assert _posts(fake) == 1 and fake.duplicates == []
    conversation = fake.conversation(session.state["conversation_id"])
    assert conversation.user_texts() == ["hi"]


async def test_an_ambiguous_post_without_a_reply_is_outcome_unknown_not_retryable(
    bot: FastBot, fake: FakeDirectLine, clock: FakeClock
) -> None:
    session = make_session_factory(fake, clock, reply_wait=0)()
    await bot.open(session)
    fake.echo_enabled = False
    fake.fail_after_delivery(502)
    with pytest.raises(BotError) as caught:
        await bot.send(session, inbound(session, "hi"))
    assert caught.value.outcome_unknown and not bot.safe_to_retry(caught.value)
    assert _posts(fake) == 1


async def test_a_read_timeout_on_post_is_not_posted_again() -> None:
    fake = FakeDirectLine()
    posts: list[bytes] = []
    inner = httpx.ASGITransport(app=fake.app)

    class Slow(httpx.AsyncBaseTransport):
        async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
            response = await inner.handle_async_request(request)
            if request.method == "POST" and request.url.path.endswith("/activities"):
                posts.append(await request.aread())
                # not an httpx error: no retry loop swallows it, the turn fails here
                assert len(posts) == 1, "the activity was posted again"
                raise httpx.ReadTimeout("the bot is slow", request=request)  # delivered, answer lost
            return response

    async with httpx.AsyncClient(transport=Slow()) as http:
        clock = SystemClock()
        bot = FastBot(http, clock)
        session = make_session_factory(fake, clock, reply_wait=0.5, poll_interval=0.01)()
        await bot.open(session)
        with anyio.fail_after(5):  # whatever the retry loop does, this test ends
            replies = await bot.send(session, inbound(session, "hi"))
        await bot.aclose()
    assert [r.text for r in replies] == ["echo: hi"] and len(posts) == 1


async def test_429_on_post_is_retried_it_proves_nothing_was_posted() -> None:
    clock = SystemClock()
    fake = FakeDirectLine(clock=clock)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=fake.app)) as http:
        bot = FastBot(http, clock)
        session = make_session_factory(fake, clock)()
        await bot.open(session)
        fake.fail_next(429, method="POST")
        assert [r.text for r in await bot.send(session, inbound(session, "hi"))] == ["echo: hi"]
        await bot.aclose()
    assert _posts(fake) == 2 and fake.duplicates == []


async def test_unknown_conversation_is_not_retryable(
    bot: FastBot, new_session: Callable[..., BotSession], fake: FakeDirectLine
) -> None:
    session = new_session()
    await bot.open(session)
    fake.conversations.clear()
    with pytest.raises(BotError) as caught:
        await bot.send(session, inbound(session, "hi"))
    assert caught.value.status_code == 404 and not caught.value.retryable
    assert len([r for r in fake.requests if r[0] == "POST" and r[1].endswith("/activities")]) == 1


async def test_every_call_has_a_timeout_and_timeouts_are_retryable() -> None:
    timeouts: list[Any] = []

    def handler(request: httpx.Request) -> httpx.Response:
        timeouts.append(request.extensions.get("timeout"))
        raise httpx.ReadTimeout("slow", request=request)

    async with httpx.AsyncClient(transport=httpx.MockTransport(handler)) as http:
        clock = SystemClock()
        bot = FastBot(http, clock)
        session = make_session_factory(FakeDirectLine(), clock)()
        with pytest.raises(BotError) as caught:
            await bot.open(session)
    assert caught.value.retryable and not isinstance(caught.value, BotCredentialsInvalid)
    assert len(timeouts) == FAST.attempts
    assert all(t and t["read"] == DirectLineBot.timeout for t in timeouts)


async def test_open_without_a_conversation_id_is_an_error() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(201, json={"token": "t"})

    async with httpx.AsyncClient(transport=httpx.MockTransport(handler)) as http:
        bot = FastBot(http, SystemClock())
        with pytest.raises(BotError):
            await bot.open(make_session_factory(FakeDirectLine(), SystemClock())())


# --- rich content -------------------------------------------------------------


async def test_options_cards_and_media_become_reply_fields(
    bot: FastBot, new_session: Callable[..., BotSession], fake: FakeDirectLine
) -> None:
    fake.add_rule(
        "card",
        {
            "attachments": [
                {
                    "contentType": "application/vnd.microsoft.card.hero",
                    "content": {
                        "title": "Plans",
                        "subtitle": "Pick one",
                        "images": [{"url": "https://img.example/plan.png"}],
                        "buttons": [
                            {"type": "postBack", "title": "Basic", "value": "plan_basic"},
                            {"type": "messageBack", "title": "Pro", "text": "plan pro", "value": {"p": 1}},
                            {"type": "openUrl", "title": "Compare", "value": "https://example.com/plans"},
                        ],
                    },
                },
                {"contentType": "image/jpeg", "contentUrl": "https://img.example/a.jpg", "name": "a.jpg"},
            ]
        },
        {"type": "typing"},
        {"type": "event", "name": "ignored"},
    )
    session = new_session()
    await bot.open(session)
    (reply,) = await bot.send(session, inbound(session, "show card"))
    assert reply.text == "Plans\nPick one\nCompare: https://example.com/plans"
    assert [o.label for o in reply.options] == ["Basic", "Pro"]
    assert reply.options[0].value == "plan_basic"
    assert message_back(reply.options[1].value) == ("plan pro", {"p": 1})
    assert [(m.url, m.content_type) for m in reply.media] == [
        ("https://img.example/plan.png", "image/*"),
        ("https://img.example/a.jpg", "image/jpeg"),
    ]


async def test_a_chosen_message_back_button_sends_both_its_text_and_its_value(
    bot: FastBot, new_session: Callable[..., BotSession], fake: FakeDirectLine
) -> None:
    button = {"type": "messageBack", "title": "Pro", "text": "plan pro", "value": {"plan": "pro", "seats": 3}}
    fake.add_rule("plans", {"text": "Pick", "suggestedActions": {"actions": [button]}})
    session = new_session()
    await bot.open(session)
    (offer,) = await bot.send(session, inbound(session, "plans"))
    choice = offer.options[0].value
    picked = inbound(session, choice, 1).model_copy(update={"postback": choice})
    (answer,) = await bot.send(session, picked)
    assert answer.text == 'value {"plan": "pro", "seats": 3} with text \'plan pro\''
    posted = fake.conversation(session.state["conversation_id"]).user_activities()[-1]
    assert posted["value"] == {"plan": "pro", "seats": 3} and posted["text"] == "plan pro"


async def test_every_activity_the_plugin_posts_reads_back_unchanged_as_a_bot_framework_activity(
    bot: FastBot, new_session: Callable[..., BotSession], fake: FakeDirectLine, activity_oracle: ActivityOracle
) -> None:
    button = {"type": "messageBack", "title": "Pro", "text": "plan pro", "value": {"plan": "pro"}}
    fake.add_rule("plans", {"text": "Pick", "suggestedActions": {"actions": [button]}})
    session = new_session()
    await bot.open(session)
    photo = Media(url="https://mms.example/cat.jpg", content_type="image/jpeg", caption="my cat")
    bare = Media(url="https://mms.example/file")
    with_media = inbound(session, "look", 0).model_copy(update={"media": [photo, bare]})
    asking = inbound(session, "plans", 1)
    await bot.send(session, with_media)
    (offer,) = await bot.send(session, asking)
    chosen = inbound(session, "1", 2).model_copy(update={"postback": offer.options[0].value})
    await bot.send(session, chosen)
    await bot.close(session)
    # each body deserialized with botbuilder-schema's Activity (the oracle fails the test if one
    # does not serialize back to exactly what was sent); here, the fields we set, as the model reads them
    posted = activity_oracle.posted
    assert activity_oracle.checked["posted"] == _posts(fake) == 4
    assert [p.type for p in posted] == ["message", "message", "message", "endOfConversation"]
    assert {p.from_property.id for p in posted} == {session.state["user_id"]}
    assert [p.channel_data["clientActivityID"] for p in posted[:3]] == [with_media.id, asking.id, chosen.id]
    assert posted[0].channel_data["botbridge"]["conversation_id"] == session.conversation_id
    assert [(m.content_type, m.content_url, m.name) for m in posted[0].attachments] == [
        ("image/jpeg", "https://mms.example/cat.jpg", "my cat"),
        ("application/octet-stream", "https://mms.example/file", None),
    ]
    assert (posted[1].text, posted[1].value) == ("plans", None)
    assert (posted[2].text, posted[2].value) == ("plan pro", {"plan": "pro"})


async def test_only_http_content_urls_become_media(
    bot: FastBot, new_session: Callable[..., BotSession], fake: FakeDirectLine
) -> None:
    fake.add_rule(
        "pics",
        {
            "attachments": [
                {"contentType": "image/png", "contentUrl": "data:image/png;base64,iVBORw0KGgo=", "name": "dot.png"},
                {"contentType": "image/png", "contentUrl": "file:///etc/passwd"},
                {"contentType": "image/png", "contentUrl": "https://img.example/ok.png"},
            ]
        },
    )
    session = new_session()
    await bot.open(session)
    (reply,) = await bot.send(session, inbound(session, "pics"))
    assert [m.url for m in reply.media] == ["https://img.example/ok.png"]
    assert reply.text == "dot.png"


async def test_a_post_answered_204_without_a_body_does_not_wait_out_reply_wait(
    fake: FakeDirectLine, clock: FakeClock, http: httpx.AsyncClient
) -> None:
    fake.answer_posts_with_204 = True
    bot = FastBot(http, clock)
    session = make_session_factory(fake, clock, reply_wait=30, poll_interval=10)()
    await bot.open(session)
    with anyio.fail_after(5):  # the fake clock never moves: any wait would hang here
        replies = await bot.send(session, inbound(session, "hi"))
    assert [r.text for r in replies] == ["echo: hi"]
    await bot.aclose()


async def test_a_token_the_service_expired_early_is_replaced_through_the_secret(
    bot: FastBot, new_session: Callable[..., BotSession], fake: FakeDirectLine
) -> None:
    session = new_session()
    await bot.open(session)
    fake.expire_tokens()  # expired server-side before our expires_at
    assert [r.text for r in await bot.send(session, inbound(session, "hi"))] == ["echo: hi"]
    assert ("GET", f"/v3/directline/conversations/{session.state['conversation_id']}") in fake.requests
    assert fake.conversation(session.state["conversation_id"]).user_texts() == ["hi"]


# names the renderers look for, so the random JSON reaches them
known_names = st.sampled_from(
    [*CARD_RENDERERS, *ADAPTIVE_ELEMENTS, "carousel", "Action.Submit", "Action.OpenUrl", "imBack", "messageBack"]
)
json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=8) | known_names,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=12), inner, max_size=4),
    max_leaves=12,
)
activity_keys = st.sampled_from(
    [
        "type",
        "text",
        "from",
        "attachments",
        "suggestedActions",
        "actions",
        "contentType",
        "contentUrl",
        "content",
        "title",
        "value",
        "buttons",
        "images",
        "url",
        "body",
        "attachmentLayout",
        "tap",
        "data",
        "facts",
        "items",
        "columns",
        "inlines",
        "sources",
        "media",
        "image",
    ]
)
activity_like = st.recursive(
    json_values,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(activity_keys, inner, max_size=5),
    max_leaves=20,
)


@given(activity=activity_like)
def test_any_activity_json_parses_without_errors(activity: Any) -> None:
    replies = activity_replies(activity if not isinstance(activity, dict) else {**activity, "type": "message"})
    for reply in replies:
        assert reply.text or reply.media or reply.options
        assert all(o.label.strip() and o.value.strip() for o in reply.options)
        assert all(m.url.startswith(("http://", "https://")) for m in reply.media)


action = st.fixed_dictionaries(
    {
        "type": st.sampled_from(["imBack", "postBack", "messageBack", "openUrl", "call", "weird"]),
        "title": st.text(min_size=1, max_size=12).filter(str.strip),
        "value": st.text(min_size=1, max_size=12).filter(str.strip),
    }
)


@given(actions=st.lists(action, max_size=6))
def test_suggested_actions_map_label_and_value(actions: list[dict[str, str]]) -> None:
    reply = activity_reply({"type": "message", "text": "pick", "suggestedActions": {"actions": actions}})
    assert reply is not None
    answers = [a for a in actions if a["type"] in ("imBack", "postBack", "messageBack")]
    assert [o.label for o in reply.options] == [a["title"].strip() for a in answers]
    for option, answer in zip(reply.options, answers, strict=True):
        if answer["type"] == "messageBack":  # the value goes back as it is, beside the (absent) text
            assert message_back(option.value) == (None, answer["value"])
        else:
            assert option.value == answer["value"].strip()


def test_typing_event_and_empty_messages_are_not_replies() -> None:
    assert activity_reply({"type": "typing"}) is None
    assert activity_reply({"type": "event", "text": "x"}) is None
    assert activity_reply({"type": "message", "text": "   "}) is None


# --- late replies --------------------------------------------------------------


async def test_a_bot_answering_two_seconds_later_reaches_the_user_within_send(
    bot: FastBot, new_session: Callable[..., BotSession], fake: FakeDirectLine, clock: FakeClock
) -> None:
    fake.add_rule("slow", "done thinking", delay=2)
    session = new_session()
    await bot.open(session)
    results: list[list[Reply]] = []

    async def turn() -> None:
        results.append(await bot.send(session, inbound(session, "slow question")))

    async with anyio.create_task_group() as tg:
        tg.start_soon(turn)
        await until(lambda: bool(results), clock)
    assert [r.text for r in results[0]] == ["done thinking"]


async def test_a_reply_later_than_reply_wait_arrives_through_deliver_late(
    bot: FastBot, fake: FakeDirectLine, clock: FakeClock
) -> None:
    fake.add_rule("slow", "after the turn", delay=2)
    session = make_session_factory(fake, clock, poll_interval=0.5, reply_wait=0)()
    late: list[Reply] = []

    async def deliver(replies: list[Reply]) -> None:
        late.extend(replies)

    session.deliver_late = deliver
    await bot.open(session)
    assert await bot.send(session, inbound(session, "slow question")) == []
    fake.push(session.state["conversation_id"], "and a proactive one", delay=3)
    await until(lambda: len(late) >= 2, clock)
    assert [r.text for r in late] == ["after the turn", "and a proactive one"]
    # a following turn does not see them again
    assert [r.text for r in await bot.send(session, inbound(session, "next", 1))] == ["echo: next"]
    assert [r.text for r in late] == ["after the turn", "and a proactive one"]


async def test_late_replies_go_to_the_newest_session_of_the_conversation(
    bot: FastBot, new_session: Callable[..., BotSession], fake: FakeDirectLine, clock: FakeClock
) -> None:
    first = new_session()
    old: list[Reply] = []
    new: list[Reply] = []

    async def to_old(replies: list[Reply]) -> None:
        old.extend(replies)

    async def to_new(replies: list[Reply]) -> None:
        new.extend(replies)

    first.deliver_late = to_old
    await bot.open(first)
    await bot.send(first, inbound(first, "one"))
    second = BotSession(first.connector, first.credentials, first.conversation.model_copy(deep=True), to_new)
    await bot.send(second, inbound(second, "two", 1))
    fake.push(first.state["conversation_id"], "ping")
    await until(lambda: bool(new), clock)
    assert [r.text for r in new] == ["ping"] and old == []


async def test_another_connectors_session_naming_the_same_conversation_gets_neither_its_token_nor_its_replies(
    bot: FastBot, fake: FakeDirectLine, clock: FakeClock
) -> None:
    mine = make_session_factory(fake, clock, poll_interval=0.5, reply_wait=0)()
    theirs = make_session_factory(fake, clock, poll_interval=0.5, reply_wait=0)()
    to_me: list[Reply] = []
    to_them: list[Reply] = []

    async def deliver_mine(replies: list[Reply]) -> None:
        to_me.extend(replies)

    async def deliver_theirs(replies: list[Reply]) -> None:
        to_them.extend(replies)

    mine.deliver_late, theirs.deliver_late = deliver_mine, deliver_theirs
    await bot.open(mine)
    await bot.send(mine, inbound(mine, "one"))
    await bot.open(theirs)
    # the other tenant's bot service answered with this conversation's id
    theirs.state["conversation_id"] = mine.state["conversation_id"]
    my_token = mine.state["token"]
    try:
        await bot.send(theirs, inbound(theirs, "two", 1))
    except BotError:
        pass  # Direct Line refuses their token for a conversation that is not theirs
    assert theirs.state["token"] != my_token
    fake.push(mine.state["conversation_id"], "for me only")
    await until(lambda: bool(to_me), clock)
    assert [r.text for r in to_me] == ["for me only"] and to_them == []


async def test_poller_stops_after_the_idle_window_and_on_close(
    bot: FastBot, fake: FakeDirectLine, clock: FakeClock
) -> None:
    session = make_session_factory(fake, clock, poll_interval=1, late_reply_window=10)()
    await bot.open(session)
    await bot.send(session, inbound(session, "hi"))
    conversation_id = session.state["conversation_id"]
    assert bot.polling(conversation_id)
    await until(lambda: not bot.polling(conversation_id), clock, step=1)
    assert clock.now() - 1_700_000_000.0 >= 10
    reads = len(fake.requests)
    clock.advance(30)
    await anyio.sleep(0.01)
    assert len(fake.requests) == reads  # nothing polls any more
    # a new turn starts it again; close stops it and tells the bot
    await bot.send(session, inbound(session, "again", 1))
    assert bot.polling(conversation_id)
    await bot.close(session)
    assert not bot.polling(conversation_id)
    assert fake.conversation(conversation_id).activities[-1]["type"] == "endOfConversation"
    assert fake.conversation(conversation_id).ended


async def test_an_idle_conversation_is_read_less_and_less_often(
    bot: FastBot, fake: FakeDirectLine, clock: FakeClock
) -> None:
    session = make_session_factory(fake, clock, poll_interval=1, late_reply_window=60, late_reply_max_interval=15)()
    await bot.open(session)
    await bot.send(session, inbound(session, "hi"))
    conversation_id = session.state["conversation_id"]
    reads = len(fake.requests)
    await until(lambda: not bot.polling(conversation_id), clock, step=1)
    idle_reads = len(fake.requests) - reads
    # 1, 2, 4, 8, 15, 15, 15 s: a handful of reads in a minute, not sixty
    assert 4 <= idle_reads <= 9, idle_reads
    # and a reply that comes late is still found
    late: list[Reply] = []

    async def deliver(replies: list[Reply]) -> None:
        late.extend(replies)

    session.deliver_late = deliver
    await bot.send(session, inbound(session, "again", 1))
    fake.push(conversation_id, "much later", delay=40)
    await until(lambda: bool(late), clock, step=1)
    assert [r.text for r in late] == ["much later"]


async def test_late_reads_of_one_connector_keep_to_its_budget_and_fresh_turns_go_first(
    fake: FakeDirectLine, clock: FakeClock
) -> None:
    reads: list[tuple[float, str]] = []  # (fake time, conversation) of every GET of activities

    async def stamped(scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "http" and scope["method"] == "GET" and scope["path"].endswith("/activities"):
            reads.append((clock.now(), scope["path"].split("/")[-2]))
        await fake.app(scope, receive, send)

    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=stamped)) as http:
        bot = FastBot(http, clock)
        new_session = make_session_factory(fake, clock, poll_interval=1, reply_wait=1, late_reply_budget=4)
        for n in range(40):  # forty conversations with a turn in the same second
            session = new_session(contact=f"+155500{n:05d}")
            await bot.open(session)
            await bot.send(session, inbound(session, "hi"))
        clock.advance(10)
        await anyio.sleep(0.01)
        fresh = new_session(contact="+15559999999")
        await bot.open(fresh)
        await bot.send(fresh, inbound(fresh, "hi"))
        turned_at, turn_reads = clock.now(), len(reads)
        for _ in range(400):
            clock.advance(0.025)
            await anyio.sleep(0.001)
        late = reads[turn_reads:]
        times = [t for t, _ in late]
        assert max(sum(1 for s in times if t <= s < t + 1) for t in times) <= 4
        assert len(late) >= 4 * 9  # the budget is used
        # the conversation with the newest turn is read first, a second after it
        first = next(t for t, conversation in late if conversation == fresh.state["conversation_id"])
        assert first - turned_at <= 1 + 0.25 + 0.05  # ahead of the older ones still waiting for the budget
        await bot.aclose()


async def test_poller_survives_errors_and_stops_on_refused_credentials(
    bot: FastBot, new_session: Callable[..., BotSession], fake: FakeDirectLine, clock: FakeClock
) -> None:
    session = new_session()
    delivered: list[Reply] = []

    async def deliver(replies: list[Reply]) -> None:
        delivered.extend(replies)

    session.deliver_late = deliver
    await bot.open(session)
    await bot.send(session, inbound(session, "hi"))
    conversation_id = session.state["conversation_id"]
    for _ in range(4):
        fake.fail_next(503)
    fake.push(conversation_id, "after the outage")
    await until(lambda: bool(delivered), clock)
    assert [r.text for r in delivered] == ["after the outage"]
    fake.fail_next(403)
    await until(lambda: not bot.polling(conversation_id), clock)


async def test_aclose_stops_every_poller(bot: FastBot, new_session: Callable[..., BotSession]) -> None:
    sessions = [new_session(contact=f"+1555000000{n}") for n in range(3)]
    for session in sessions:
        await bot.open(session)
        await bot.send(session, inbound(session, "hi"))
    assert all(bot.polling(s.state["conversation_id"]) for s in sessions)
    await bot.aclose()
    assert not any(bot.polling(s.state["conversation_id"]) for s in sessions)


async def test_a_turn_over_loopback_against_the_fake_under_uvicorn() -> None:
    import uvicorn

    clock = SystemClock()
    fake = FakeDirectLine(clock=clock)
    server = uvicorn.Server(uvicorn.Config(fake.app, host="127.0.0.1", port=0, log_level="warning", lifespan="off"))
    async with anyio.create_task_group() as tg:
        tg.start_soon(server.serve)
        for _ in range(500):
            if server.started:
                break
            await anyio.sleep(0.01)
        port = server.servers[0].sockets[0].getsockname()[1]
        async with httpx.AsyncClient() as http:
            bot = FastBot(http, clock)
            session = make_session_factory(fake, clock, base_url=f"http://127.0.0.1:{port}/")()
            await bot.open(session)
            assert [r.text for r in await bot.send(session, inbound(session, "over tcp"))] == ["echo: over tcp"]
            await bot.close(session)
            await bot.aclose()
        server.should_exit = True


async def test_a_failed_read_after_a_delivered_post_does_not_fail_the_turn(
    bot: FastBot, new_session: Callable[..., BotSession], fake: FakeDirectLine, clock: FakeClock
) -> None:
    session = new_session()
    late: list[Reply] = []

    async def deliver(replies: list[Reply]) -> None:
        late.extend(replies)

    session.deliver_late = deliver
    await bot.open(session)
    for _ in range(FAST.attempts):
        fake.fail_next(503, method="GET")
    results: list[list[Reply]] = []

    async def turn() -> None:
        results.append(await bot.send(session, inbound(session, "hi")))

    async with anyio.create_task_group() as tg:
        tg.start_soon(turn)
        await until(lambda: bool(results), clock, step=0.01)
    assert results == [[]]  # no error: core must not post the message twice
    await until(lambda: bool(late), clock)
    assert [r.text for r in late] == ["echo: hi"]
    assert fake.conversation(session.state["conversation_id"]).user_texts() == ["hi"]
