from __future__ import annotations

import botbridge_dialogflow


def test_public_exports_are_what_the_readme_promises() -> None:
    assert sorted(botbridge_dialogflow.__all__) == [
        "DialogflowBackend",
        "ServiceAccount",
        "__version__",
        "cx_replies",
        "detect_intent_url",
        "es_replies",
        "parse_service_account",
        "parse_settings",
        "session_id_for",
    ]
    for name in botbridge_dialogflow.__all__:
        assert hasattr(botbridge_dialogflow, name)
    assert botbridge_dialogflow.DialogflowBackend.type == "GOOGLE_DIALOG_FLOW"
