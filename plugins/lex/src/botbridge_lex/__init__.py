"""Amazon Lex as a botbridge bot backend (connector type `AMAZON_LEX`)."""

from botbridge_lex.bot import (
    CONNECTOR_TYPE,
    LexBot,
    LexCredentials,
    V1Bot,
    V2Bot,
    parse_credentials,
    replies_from_v1,
    replies_from_v2,
    session_id_for,
)

__all__ = [
    "CONNECTOR_TYPE",
    "LexBot",
    "LexCredentials",
    "V1Bot",
    "V2Bot",
    "parse_credentials",
    "replies_from_v1",
    "replies_from_v2",
    "session_id_for",
]
