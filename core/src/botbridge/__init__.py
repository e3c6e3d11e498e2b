"""botbridge: messaging channels to chatbot backends, through plugins."""

import importlib.metadata

from botbridge.bot import BotBackend, BotSession
from botbridge.channel import (
    Capabilities,
    Channel,
    ProvisionResult,
    SenderContext,
    WebhookRequest,
    WebhookResult,
)
from botbridge.clock import Clock, FakeClock, SystemClock
from botbridge.errors import (
    BotCredentialsInvalid,
    BotError,
    ConfigInvalid,
    CredentialsInvalid,
    InvalidSignature,
    MalformedWebhook,
    ProviderError,
    SendError,
)
from botbridge.hookspecs import hookimpl
from botbridge.models import (
    Connector,
    Conversation,
    DeliveryReport,
    Event,
    InboundMessage,
    Media,
    Option,
    OutboundMessage,
    Reply,
    Sender,
    SendResult,
)
from botbridge.store import Store

# pyproject.toml is the one place the version is written
__version__ = importlib.metadata.version("botbridge")


def __getattr__(name: str) -> object:
    # `Botbridge` (embedding) pulls in the whole host: imported when first used, so a
    # plugin importing `from botbridge import BotBackend` does not load Starlette's app.
    if name == "Botbridge":
        from botbridge.embed import Botbridge

        return Botbridge
    raise AttributeError(f"module 'botbridge' has no attribute {name!r}")


__all__ = [
    "BotBackend",
    "BotCredentialsInvalid",
    "BotError",
    "BotSession",
    "Botbridge",
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
]
