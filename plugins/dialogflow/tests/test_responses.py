from __future__ import annotations

from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from botbridge import Media, Option, Reply
from botbridge_dialogflow import cx_replies, es_replies
from botbridge_dialogflow.responses import error_message


def es(*messages: dict[str, Any], text: str = "") -> dict[str, Any]:
    return {"queryResult": {"fulfillmentText": text, "fulfillmentMessages": list(messages)}}


def test_text_messages_become_replies_in_order() -> None:
    body = es({"text": {"text": ["Hi!"]}}, {"text": {"text": ["How can I help?", ""]}}, text="Hi! How can I help?")
    assert es_replies(body) == [Reply(text="Hi!"), Reply(text="How can I help?")]


def test_fulfillment_text_is_the_fallback() -> None:
    assert es_replies(es(text="Only this")) == [Reply(text="Only this")]
    assert es_replies({"queryResult": {}}) == []


def test_quick_replies_are_options_answered_with_their_text() -> None:
    body = es({"quickReplies": {"title": "Pick one", "quickReplies": ["Billing", "Sales", ""]}})
    assert es_replies(body) == [
        Reply(text="Pick one", options=[Option(label="Billing", value="Billing"), Option(label="Sales", value="Sales")])
    ]


def test_cards_give_text_media_options_and_links() -> None:
    card = {
        "title": "Our plans",
        "subtitle": "Choose one",
        "imageUri": "https://img.test/plans.png",
        "buttons": [
            {"text": "Basic", "postback": "plan_basic"},
            {"text": "Pro"},
            {"text": "Details", "postback": "https://example.test/plans"},
        ],
    }
    assert es_replies(es({"card": card})) == [
        Reply(
            text="Our plans\nChoose one\nDetails: https://example.test/plans",
            media=[Media(url="https://img.test/plans.png")],
            options=[Option(label="Basic", value="plan_basic"), Option(label="Pro", value="Pro")],
        )
    ]


def test_images_become_media_with_their_accessibility_text() -> None:
    body = es({"image": {"imageUri": "https://img.test/a.png", "accessibilityText": "a map"}})
    assert es_replies(body) == [Reply(media=[Media(url="https://img.test/a.png", caption="a map")])]


def test_only_the_configured_or_default_platform_is_shown() -> None:
    body = es(
        {"text": {"text": ["default"]}},
        {"platform": "FACEBOOK", "text": {"text": ["facebook"]}},
        {"platform": "FACEBOOK", "quickReplies": {"title": "fb", "quickReplies": ["A"]}},
    )
    assert [r.text for r in es_replies(body)] == ["default"]
    assert [r.text for r in es_replies(body, "FACEBOOK")] == ["facebook", "fb"]
    assert [r.text for r in es_replies(body, "TELEGRAM")] == ["default"]
    only_slack = es({"platform": "SLACK", "text": {"text": ["slack"]}})
    assert [r.text for r in es_replies(only_slack)] == ["slack"]


def test_actions_on_google_messages() -> None:
    body = es(
        {"simpleResponses": {"simpleResponses": [{"textToSpeech": "spoken", "displayText": "shown"}]}},
        {"suggestions": {"suggestions": [{"title": "Yes"}, {"title": "No"}]}},
        {"linkOutSuggestion": {"destinationName": "Site", "uri": "https://example.test"}},
    )
    assert es_replies(body) == [
        Reply(text="shown"),
        Reply(options=[Option(label="Yes", value="Yes"), Option(label="No", value="No")]),
        Reply(text="Site: https://example.test"),
    ]


def test_messenger_rich_content_payloads() -> None:
    payload = {
        "richContent": [
            [
                {"type": "info", "title": "Store", "subtitle": "Open 9-5", "actionLink": "https://s.test"},
                {"type": "image", "rawUrl": "https://img.test/s.png", "accessibilityText": "store"},
                {"type": "chips", "options": [{"text": "Hours"}, {"text": "Map", "link": "https://m.test"}]},
            ],
            [{"type": "description", "title": "Note", "text": ["line 1", "line 2"]}],
        ]
    }
    assert es_replies(es({"payload": payload})) == [
        Reply(
            text="Store\nOpen 9-5\nhttps://s.test\nMap: https://m.test",
            media=[Media(url="https://img.test/s.png", caption="store")],
            options=[Option(label="Hours", value="Hours")],
        ),
        Reply(text="Note\nline 1\nline 2"),
    ]
    assert es_replies(es({"payload": {"facebook": {"attachment": {}}}}, text="fallback")) == [Reply(text="fallback")]


def test_cx_response_messages() -> None:
    body = {
        "queryResult": {
            "responseMessages": [
                {"text": {"text": ["Hello from CX"]}},
                {"payload": {"richContent": [[{"type": "chips", "options": [{"text": "A"}]}]]}},
                {"endInteraction": {}},
                {"outputAudioText": {"text": "spoken only"}},
            ]
        }
    }
    assert cx_replies(body) == [
        Reply(text="Hello from CX"),
        Reply(options=[Option(label="A", value="A")]),
        Reply(signals=["end"]),
    ]


def test_cx_handoff_and_end_are_signals_on_the_reply() -> None:
    body = {"queryResult": {"responseMessages": [{"liveAgentHandoff": {"metadata": {"queue": "billing"}}}]}}
    assert cx_replies(body) == [Reply(signals=["handoff"])]
    assert cx_replies({"queryResult": {"responseMessages": [{"endInteraction": {}}]}})[0].signals == ["end"]


def test_an_es_payload_asks_for_a_hand_off_with_a_key() -> None:
    def body(payload: dict[str, object]) -> dict[str, object]:
        text = {"text": {"text": ["Let me get someone."]}}
        return {"queryResult": {"fulfillmentMessages": [text, {"payload": payload}]}}

    for key in ("liveAgentHandoff", "handoff"):
        assert es_replies(body({key: True})) == [Reply(text="Let me get someone."), Reply(signals=["handoff"])]
    assert es_replies(body({"handoff": "yes"})) == [Reply(text="Let me get someone.")]  # true, not truthy
    assert es_replies(body({"other": True})) == [Reply(text="Let me get someone.")]


def test_cx_messenger_links_are_anchor_href_not_es_link() -> None:
    payload = {
        "richContent": [
            [
                {"type": "button", "text": "Track", "anchor": {"href": "https://example.com/track"}},
                {"type": "chips", "options": [{"text": "Docs", "anchor": {"href": "https://example.com/docs"}}]},
                {"type": "info", "title": "Store", "anchor": {"href": "https://example.com/store"}},
                {"type": "button", "text": "ES style", "link": "https://example.com/es"},
            ]
        ]
    }
    (reply,) = cx_replies({"queryResult": {"responseMessages": [{"payload": payload}]}})
    assert "Track: https://example.com/track" in reply.text
    assert "Docs: https://example.com/docs" in reply.text
    assert "https://example.com/store" in reply.text
    assert "https://example.com/es" not in reply.text  # `link` is ES Messenger's, not CX's


def test_google_error_bodies() -> None:
    body = {"error": {"code": 400, "message": "Input text\nnot set.", "status": "INVALID_ARGUMENT"}}
    assert error_message(body) == "INVALID_ARGUMENT: Input text not set."
    assert error_message({"error": "invalid_grant"}) == ""
    assert error_message([]) == ""


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=20),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=12), children, max_size=4),
    max_leaves=25,
)
message_kinds = st.sampled_from(
    [
        "text",
        "quickReplies",
        "card",
        "image",
        "payload",
        "simpleResponses",
        "suggestions",
        "platform",
        "basicCard",
        "listSelect",
        "carouselSelect",
        "browseCarouselCard",
        "tableCard",
        "mediaContent",
        "knowledgeInfoCard",
        "channel",
    ]
)


@given(st.lists(st.dictionaries(message_kinds, json_values, max_size=3), max_size=5), json_values)
def test_any_response_shape_parses_without_raising(messages: list[dict[str, Any]], text: Any) -> None:
    for body in (
        es(*messages),
        {"queryResult": {"fulfillmentMessages": messages, "fulfillmentText": text}},
        {"queryResult": {"responseMessages": messages}},
    ):
        for reply in [*es_replies(body), *es_replies(body, "FACEBOOK"), *cx_replies(body)]:
            assert reply.text or reply.media or reply.options
            assert all(o.label and o.value for o in reply.options)


@given(json_values)
def test_any_json_body_parses_without_raising(body: Any) -> None:
    assert isinstance(es_replies(body), list)
    assert isinstance(cx_replies(body), list)
    assert isinstance(error_message(body), str)
