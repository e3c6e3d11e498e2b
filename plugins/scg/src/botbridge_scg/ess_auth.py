"""How ESS deliveries authenticate to us, and the OAuth 2.0 token endpoint.

Syniverse's delivery configurations offer no auth, HTTP Basic, OAuth 2.0
(Syniverse fetches a token from the customer's token endpoint, then sends
it as a Bearer token) and mTLS; there is no static bearer and no body
signature (Syniverse KB "ESS good practices"). Basic is our default; with
`config.webhook_auth = "oauth2"` the host is the token endpoint: it issues
short-lived tokens to the client id/secret of the sender (RFC 6749 §4.4
client credentials grant, client authentication per §2.3.1).
"""

from __future__ import annotations

import base64
import binascii
from typing import Any
from urllib.parse import parse_qs

from botbridge.channel import ChannelResponse, SenderContext, WebhookRequest
from botbridge.errors import InvalidSignature
from botbridge.signing import secrets_equal
from botbridge_scg import tokens

WEBHOOK_AUTHS = ("basic", "oauth2")
TOKEN_ROUTE = "oauth/token"
TOKEN_PURPOSE = "ess-oauth2"
TOKEN_TTL = 1800  # seconds; ESS fetches a new token when it expires


def webhook_auth(config: dict[str, Any]) -> str:
    value = config.get("webhook_auth")
    return value if value in WEBHOOK_AUTHS else "basic"


def client_id(sender: SenderContext) -> str:
    value = sender.config.get("oauth_client_id")
    return value if isinstance(value, str) and value else sender.id


def _basic(value: str) -> tuple[str, str] | None:
    try:
        decoded = base64.b64decode(value, validate=True).decode("utf-8")
    except (ValueError, binascii.Error, UnicodeDecodeError):
        return None
    user, sep, password = decoded.partition(":")
    return (user, password) if sep else None


def check_authorization(header: str | None, sender: SenderContext, now: float) -> None:
    """Accept what the sender's delivery configuration presents; compare in constant time."""
    if not header:
        raise InvalidSignature("missing Authorization header")
    scheme, _, value = header.strip().partition(" ")
    scheme, value = scheme.lower(), value.strip()
    if webhook_auth(sender.config) == "oauth2":
        if scheme != "bearer":
            raise InvalidSignature("this sender expects an OAuth 2.0 bearer token from its token endpoint")
        if tokens.verify(sender.webhook_secret, f"{TOKEN_PURPOSE}|{sender.id}", value, now) is None:
            raise InvalidSignature("bearer token is unknown or expired")
        return
    if scheme != "basic":
        raise InvalidSignature("this sender expects HTTP Basic credentials")
    pair = _basic(value)
    if pair is None:
        raise InvalidSignature("malformed Basic credentials")
    username = sender.config.get("webhook_username")
    user_ok = secrets_equal(pair[0], username) if username else True
    if not (secrets_equal(pair[1], sender.webhook_secret) and user_ok):
        raise InvalidSignature("Basic credentials do not match")


def _oauth_error(status: int, error: str, description: str) -> ChannelResponse:
    headers = {"cache-control": "no-store"}
    if status == 401:
        headers["www-authenticate"] = 'Basic realm="botbridge"'
    return ChannelResponse.json({"error": error, "error_description": description}, status, headers)


def token_response(request: WebhookRequest, sender: SenderContext, now: float) -> ChannelResponse:
    """`POST {webhook_url}/oauth/token`: RFC 6749 §4.4 (answers in the §5.1/§5.2 shapes)."""
    if request.method != "POST":
        return _oauth_error(405, "invalid_request", "use POST")
    try:
        form = {k: v[0] for k, v in parse_qs(request.body.decode("utf-8"), strict_parsing=False).items()}
    except UnicodeDecodeError:
        return _oauth_error(400, "invalid_request", "the body must be application/x-www-form-urlencoded")
    if form.get("grant_type") != "client_credentials":
        return _oauth_error(400, "unsupported_grant_type", "grant_type must be client_credentials")
    scheme, _, value = (request.headers.get("authorization") or "").strip().partition(" ")
    if scheme.lower() == "basic":
        pair = _basic(value.strip())
    elif "client_id" in form:
        pair = (form["client_id"], form.get("client_secret", ""))
    else:
        pair = None
    if pair is None or not (
        secrets_equal(pair[0], client_id(sender)) and secrets_equal(pair[1], sender.webhook_secret)
    ):
        return _oauth_error(401, "invalid_client", "client authentication failed")
    expires_at = int(now) + TOKEN_TTL
    token = tokens.issue(sender.webhook_secret, f"{TOKEN_PURPOSE}|{sender.id}", sender.id, expires_at)
    body = {"access_token": token, "token_type": "Bearer", "expires_in": TOKEN_TTL}
    return ChannelResponse.json(body, 200, {"cache-control": "no-store", "pragma": "no-cache"})
