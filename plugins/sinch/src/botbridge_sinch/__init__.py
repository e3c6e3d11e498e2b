"""botbridge channel plugin for the Sinch Conversation API."""

from botbridge_sinch.channel import (
    CHOICE_CHANNELS,
    DEFAULT_AUTH_URL,
    REGIONS,
    SinchChannel,
    SinchCredentials,
    api_base_url,
    sign_callback,
)

__all__ = [
    "CHOICE_CHANNELS",
    "DEFAULT_AUTH_URL",
    "REGIONS",
    "SinchChannel",
    "SinchCredentials",
    "api_base_url",
    "sign_callback",
]
