"""Errors with an HTTP meaning, and the errors plugins raise.

Every 4xx/5xx the host answers has one JSON shape:
``{"error": {"code": "...", "message": "...", "details": ...}}``.
"""

from __future__ import annotations

import unicodedata
from typing import Any


class APIError(Exception):
    status_code = 400
    code = "bad_request"

    def __init__(
        self,
        message: str,
        *,
        status_code: int | None = None,
        code: str | None = None,
        details: Any = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        if status_code is not None:
            self.status_code = status_code
        if code is not None:
            self.code = code
        self.details = details
        self.headers = headers or {}

    def body(self) -> dict[str, Any]:
        return {"error": {"code": self.code, "message": self.message, "details": self.details}}


class NotFound(APIError):
    status_code = 404
    code = "not_found"


class Conflict(APIError):
    status_code = 409
    code = "conflict"


class Unauthorized(APIError):
    status_code = 401
    code = "unauthorized"


class ConfigInvalid(APIError):
    """A plugin rejects credentials or config; `field` names what is wrong."""

    status_code = 422
    code = "validation_error"

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}", details=[{"field": field, "message": message}])
        self.field = field
        self.reason = message


# --- webhooks -----------------------------------------------------------


class WebhookRejected(APIError):
    """A channel plugin refuses an incoming webhook."""


class InvalidSignature(WebhookRejected):
    """Missing, forged or replayed: the provider gets a 401.

    The message must never contain the expected signature.
    """

    status_code = 401
    code = "invalid_signature"


class MalformedWebhook(WebhookRejected):
    status_code = 400
    code = "malformed_webhook"


# --- store --------------------------------------------------------------


class StoreError(Exception):
    """Base of the errors a store raises for the host to map."""


class VersionConflict(StoreError):
    pass


class SenderTaken(StoreError):
    """The sender is already bound to another connector."""


class StoreUnavailable(StoreError):
    """The store cannot be reached; the host answers 503 so providers retry."""


# --- outbound calls -----------------------------------------------------


class ProviderError(Exception):
    """A provider API call failed.

    `retryable` says whether the same call may succeed later (429, 5xx,
    timeouts); `retry_after` is the provider's hint in seconds, if any.
    `outcome_unknown` says the provider may have processed the call anyway
    (a 502 after the bot received the turn, a read timeout after the body
    was sent): repeating a call that is not idempotent could then do it
    twice (the bot answers twice, the user gets two SMS). Only
    `safe_to_retry` failures are ever repeated blindly.
    """

    def __init__(
        self,
        message: str,
        *,
        retryable: bool = False,
        status_code: int | None = None,
        retry_after: float | None = None,
        outcome_unknown: bool = False,
        provider_code: str | None = None,
    ) -> None:
        super().__init__(message)
        self.provider_code = provider_code
        self.retryable = retryable
        self.status_code = status_code
        self.retry_after = retry_after
        self.outcome_unknown = outcome_unknown

    @property
    def safe_to_retry(self) -> bool:
        return self.retryable and not self.outcome_unknown


class CredentialsInvalid(ProviderError):
    """The provider refused our credentials (401/403): a person must fix them."""


class BotError(ProviderError):
    pass


class BotCredentialsInvalid(CredentialsInvalid, BotError):
    pass


class SendError(ProviderError):
    pass


# --- what a tenant may see of a provider's answer ------------------------

TENANT_TEXT_LIMIT = 200


def tenant_text(text: str, limit: int = TENANT_TEXT_LIMIT) -> str:
    """Provider-made text as it may reach a tenant's API or events.

    One line, no control or formatting characters (no forged log lines, no
    bidi tricks), at most `limit` characters. Every reason a tenant reads
    (`reason_description`, `state_reason`, `bot_error`) passes through here;
    the provider's full answer is only in the operator's debug log.
    """
    visible = "".join(" " if unicodedata.category(c)[0] == "C" else c for c in text)
    line = " ".join(visible.split())
    return line if len(line) <= limit else line[: limit - 1].rstrip() + "…"


def tenant_reason(exc: BaseException) -> str:
    return tenant_text(str(exc) or type(exc).__name__)
