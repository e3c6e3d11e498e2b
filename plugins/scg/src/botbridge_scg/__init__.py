"""botbridge-scg: the Syniverse SCG channel for botbridge."""

import importlib.metadata

from botbridge_scg.channel import (
    CHANNEL_TYPES,
    DEFAULT_BASE_URL,
    MESSAGE_REQUESTS_PATH,
    ScgChannel,
    normalize_address,
    parse_event,
    parse_token,
)
from botbridge_scg.ess_auth import check_authorization

# pyproject.toml is the one place the version is written
__version__ = importlib.metadata.version("botbridge-scg")

__all__ = [
    "CHANNEL_TYPES",
    "DEFAULT_BASE_URL",
    "MESSAGE_REQUESTS_PATH",
    "ScgChannel",
    "__version__",
    "check_authorization",
    "normalize_address",
    "parse_event",
    "parse_token",
]
