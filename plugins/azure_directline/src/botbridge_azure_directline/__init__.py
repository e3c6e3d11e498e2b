"""botbridge bot backend for Azure Bot Service over Direct Line 3.0."""

from botbridge_azure_directline.activities import activity_replies, activity_reply, bot_replies
from botbridge_azure_directline.bot import CONNECTOR_TYPE, DEFAULT_BASE_URL, DirectLineBot, derive_user_id

__all__ = [
    "CONNECTOR_TYPE",
    "DEFAULT_BASE_URL",
    "DirectLineBot",
    "activity_replies",
    "activity_reply",
    "bot_replies",
    "derive_user_id",
]
