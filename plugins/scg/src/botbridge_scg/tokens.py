"""Short-lived tokens the host issues and checks itself, without a store.

A token names its purpose, a subject and an expiry, and carries an HMAC
over them keyed by the sender's webhook secret (stored encrypted, never
returned). Changing that secret revokes every token issued with it.
"""

from __future__ import annotations

import base64
import binascii
import hmac
import re
import secrets

from botbridge.signing import hmac_digest

_TOKEN = re.compile(r"^([A-Za-z0-9_-]{1,700})\.(\d{1,12})\.([A-Za-z0-9_-]{16,64})\.([A-Za-z0-9_-]{43})$")


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def _mac(secret: str, purpose: str, subject: str, expires_at: int, nonce: str) -> str:
    message = f"botbridge-scg|{purpose}|{subject}|{expires_at}|{nonce}".encode()
    return _b64(hmac_digest(secret, message))


def issue(secret: str, purpose: str, subject: str, expires_at: int) -> str:
    """An unguessable token for `subject`, valid until `expires_at` (epoch s)."""
    nonce = secrets.token_urlsafe(16)
    encoded = _b64(subject.encode())
    return f"{encoded}.{expires_at}.{nonce}.{_mac(secret, purpose, subject, expires_at, nonce)}"


def verify(secret: str, purpose: str, token: str, now: float) -> str | None:
    """The token's subject, or None when it is forged, for another purpose or expired."""
    match = _TOKEN.match(token)
    if match is None:
        return None
    encoded, expiry, nonce, mac = match.groups()
    try:
        subject = base64.urlsafe_b64decode(encoded + "=" * (-len(encoded) % 4)).decode()
    except (binascii.Error, ValueError):
        return None
    expected = _mac(secret, purpose, subject, int(expiry), nonce)
    if not hmac.compare_digest(mac, expected) or int(expiry) <= now:
        return None
    return subject
