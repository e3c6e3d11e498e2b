"""Webhook signatures, checked the same way for every channel.

Channel plugins call these helpers instead of comparing digests themselves:
compares are constant-time, digests are taken over the raw body bytes, the
timestamp window is enforced here, and no error message ever contains the
expected value.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
from collections.abc import Iterable, Mapping
from typing import Literal

from botbridge.errors import InvalidSignature

Encoding = Literal["base64", "hex"]


def hmac_digest(secret: str | bytes, message: bytes, algorithm: str = "sha256") -> bytes:
    key = secret.encode() if isinstance(secret, str) else secret
    return hmac.new(key, message, getattr(hashlib, algorithm)).digest()


def _decode(signature: str, encoding: Encoding) -> bytes | None:
    try:
        if encoding == "hex":
            return bytes.fromhex(signature.strip())
        return base64.b64decode(signature.strip(), validate=True)
    except (ValueError, binascii.Error):
        return None


def verify_digest(
    provided: str | None,
    expected: bytes,
    *,
    encoding: Encoding = "base64",
) -> None:
    """Raise InvalidSignature unless `provided` encodes `expected`."""
    if not provided:
        raise InvalidSignature("missing signature")
    decoded = _decode(provided, encoding)
    if decoded is None or not hmac.compare_digest(decoded, expected):
        raise InvalidSignature("signature does not match")


def verify_any_digest(provided: Iterable[str], expected: bytes, *, encoding: Encoding = "base64") -> None:
    """Accept when any of several provided signatures matches (key rotation)."""
    matched = False
    seen = False
    for candidate in provided:
        seen = True
        decoded = _decode(candidate, encoding)
        # Compare every candidate so timing does not reveal which one matched.
        if decoded is not None and hmac.compare_digest(decoded, expected):
            matched = True
    if not seen:
        raise InvalidSignature("missing signature")
    if not matched:
        raise InvalidSignature("signature does not match")


def check_timestamp(
    value: str | int | float | None, *, now: float, window: float, future: float | None = None
) -> float:
    """Parse an epoch timestamp (seconds or milliseconds) and require it in the window.

    `window` is how old it may be; `future` how far ahead of our clock it may
    be (defaults to `window`; a wide replay window wants a narrow future).
    """
    if value is None or value == "":
        raise InvalidSignature("missing timestamp")
    try:
        timestamp = float(value)
    except (TypeError, ValueError):
        raise InvalidSignature("timestamp is not a number") from None
    if timestamp != timestamp:  # NaN
        raise InvalidSignature("timestamp is not a number")
    if timestamp > 1e11:  # milliseconds
        timestamp /= 1000.0
    ahead = window if future is None else future
    if now - timestamp > window or timestamp - now > ahead:
        raise InvalidSignature("timestamp outside the accepted window")
    return timestamp


def secrets_equal(provided: str | None, expected: str) -> bool:
    if not provided or not expected:
        return False
    return hmac.compare_digest(provided.encode(), expected.encode())


# --- Standard Webhooks (outgoing events) ---------------------------------


def standard_webhook_headers(secret: str, message_id: str, timestamp: int, body: bytes) -> dict[str, str]:
    """Headers that sign an outgoing event the Standard Webhooks way.

    Secrets of the form `whsec_<base64>` are used as their decoded bytes, as
    the specification says; any other secret is used as its UTF-8 bytes.
    """
    signed = f"{message_id}.{timestamp}.".encode() + body
    digest = hmac_digest(standard_webhook_key(secret), signed)
    return {
        "webhook-id": message_id,
        "webhook-timestamp": str(timestamp),
        "webhook-signature": "v1," + base64.b64encode(digest).decode(),
    }


def standard_webhook_key(secret: str) -> bytes:
    if secret.startswith("whsec_"):
        try:
            return base64.b64decode(secret[len("whsec_") :], validate=True)
        except (ValueError, binascii.Error):
            pass
    return secret.encode()


def verify_standard_webhook(
    secret: str, headers: Mapping[str, str], body: bytes, *, now: float, window: float = 300
) -> None:
    message_id = headers.get("webhook-id")
    timestamp = headers.get("webhook-timestamp")
    signatures = headers.get("webhook-signature", "")
    if not message_id:
        raise InvalidSignature("missing webhook-id")
    ts = int(check_timestamp(timestamp, now=now, window=window))
    expected = hmac_digest(standard_webhook_key(secret), f"{message_id}.{ts}.".encode() + body)
    candidates = [part[3:] for part in signatures.split() if part.startswith("v1,")]
    verify_any_digest(candidates, expected)
