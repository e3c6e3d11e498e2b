"""Google Dialogflow bot backend for botbridge (connector type `GOOGLE_DIALOG_FLOW`)."""

import importlib.metadata

from botbridge_dialogflow.bot import DialogflowBackend, detect_intent_url, session_id_for
from botbridge_dialogflow.credentials import ServiceAccount, parse_service_account, parse_settings
from botbridge_dialogflow.responses import cx_replies, es_replies

# pyproject.toml is the one place the version is written
__version__ = importlib.metadata.version("botbridge-dialogflow")

__all__ = [
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
