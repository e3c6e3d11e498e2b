"""Bird (api.bird.com Channels API) as a botbridge channel."""

from botbridge_bird.channel import (
    CHANNEL_TYPES,
    DEFAULT_BASE_URL,
    DEFAULT_REPLAY_WINDOW,
    BirdChannel,
    sign_webhook,
)

__all__ = [
    "CHANNEL_TYPES",
    "DEFAULT_BASE_URL",
    "DEFAULT_REPLAY_WINDOW",
    "BirdChannel",
    "sign_webhook",
]
