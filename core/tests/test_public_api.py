"""The names plugins import from `botbridge` are a promise: changing them must be deliberate."""

from __future__ import annotations

import botbridge
import botbridge.testing

PUBLIC = {
    "BotBackend",
    "Botbridge",
    "BotCredentialsInvalid",
    "BotError",
    "BotSession",
    "Capabilities",
    "Channel",
    "Clock",
    "ConfigInvalid",
    "Connector",
    "Conversation",
    "CredentialsInvalid",
    "DeliveryReport",
    "Event",
    "FakeClock",
    "InboundMessage",
    "InvalidSignature",
    "MalformedWebhook",
    "Media",
    "Option",
    "OutboundMessage",
    "ProviderError",
    "ProvisionResult",
    "Reply",
    "SendError",
    "SendResult",
    "Sender",
    "SenderContext",
    "Store",
    "SystemClock",
    "WebhookRequest",
    "WebhookResult",
    "__version__",
    "hookimpl",
}


def test_the_public_names() -> None:
    assert set(botbridge.__all__) == PUBLIC
    for name in botbridge.__all__:
        assert getattr(botbridge, name) is not None


def test_the_author_kit_names() -> None:
    assert set(botbridge.testing.__all__) == {
        "BotBackendContract",
        "BotHarness",
        "ChannelContract",
        "ChannelHarness",
        "StoreContract",
        "api_client",
        "running",
    }


def test_every_package_is_typed() -> None:
    from pathlib import Path

    root = Path(__file__).resolve().parents[2]
    for package in [root / "core" / "src" / "botbridge", *(root / "plugins").glob("*/src/botbridge_*")]:
        assert (package / "py.typed").exists(), package
