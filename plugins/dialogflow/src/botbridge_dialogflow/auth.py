"""OAuth2 access tokens for a service account, without a blocking call.

The JWT-bearer grant (RFC 7523) is signed with google-auth's RS256 signer
and exchanged at the token endpoint with the host's shared httpx client
(google-auth's own refresh would block on its `requests` transport). Tokens are cached per
key (the same account with a different key gets its own token), refreshed
`REFRESH_MARGIN` seconds before they expire by the injected clock, and one
refresh at a time per key: concurrent conversations wait for it.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any

import httpx
from cryptography.hazmat.primitives.asymmetric import rsa
from google.auth import crypt, jwt

from botbridge import BotCredentialsInvalid, BotError, Clock
from botbridge.http import RetryPolicy, call_with_retry
from botbridge_dialogflow.credentials import ServiceAccount, load_private_key

SCOPE = "https://www.googleapis.com/auth/cloud-platform"
GRANT_TYPE = "urn:ietf:params:oauth:grant-type:jwt-bearer"
ASSERTION_LIFETIME = 3600
REFRESH_MARGIN = 300.0
# OAuth error codes that mean the key itself is refused (RFC 6749 §5.2).
_REFUSED = frozenset({"invalid_grant", "invalid_client", "unauthorized_client", "access_denied"})


def sign_assertion(account: ServiceAccount, key: rsa.RSAPrivateKey, now: float, *, scope: str = SCOPE) -> str:
    """The signed JWT a service account presents to the token endpoint (google-auth signs it)."""
    issued = int(now)
    claims = {
        "iss": account.client_email,
        "scope": scope,
        "aud": account.audience,
        "iat": issued,
        "exp": issued + ASSERTION_LIFETIME,
    }
    signer = crypt.RSASigner(key, key_id=account.private_key_id or None)
    return jwt.encode(signer, claims).decode("ascii")


@dataclass
class AccessToken:
    value: str
    expires_at: float

    def fresh(self, now: float) -> bool:
        return now < self.expires_at - REFRESH_MARGIN


class TokenSource:
    """Access tokens for any number of service accounts, cached and single-flight."""

    def __init__(self, http: httpx.AsyncClient, clock: Clock, policy: RetryPolicy) -> None:
        self.http = http
        self.clock = clock
        self.policy = policy
        self._tokens: dict[str, AccessToken] = {}
        self._keys: dict[str, rsa.RSAPrivateKey] = {}
        self._locks: dict[str, asyncio.Lock] = {}

    async def token(self, account: ServiceAccount, token_url: str) -> str:
        cache_key = account.cache_key + "\0" + token_url
        cached = self._tokens.get(cache_key)
        if cached is not None and cached.fresh(self.clock.now()):
            return cached.value
        lock = self._locks.setdefault(cache_key, asyncio.Lock())
        async with lock:
            cached = self._tokens.get(cache_key)
            if cached is not None and cached.fresh(self.clock.now()):
                return cached.value
            token = await self._fetch(account, token_url)
            self._tokens[cache_key] = token
            return token.value

    def invalidate(self, account: ServiceAccount, token_url: str, value: str) -> None:
        """Forget a token the API refused (revoked, or expired early), unless already replaced."""
        cache_key = account.cache_key + "\0" + token_url
        cached = self._tokens.get(cache_key)
        if cached is not None and cached.value == value:
            del self._tokens[cache_key]

    def clear(self) -> None:
        self._tokens.clear()
        self._keys.clear()
        self._locks.clear()

    def _key(self, account: ServiceAccount) -> rsa.RSAPrivateKey:
        key = self._keys.get(account.cache_key)
        if key is None:
            key = self._keys[account.cache_key] = load_private_key(account.private_key_pem)
        return key

    async def _fetch(self, account: ServiceAccount, token_url: str) -> AccessToken:
        requested_at = self.clock.now()
        assertion = sign_assertion(account, self._key(account), requested_at)
        form = {"grant_type": GRANT_TYPE, "assertion": assertion}
        refused: list[httpx.Response] = []

        async def send() -> httpx.Response:
            response = await self.http.post(token_url, data=form, headers={"accept": "application/json"})
            if response.status_code in (400, 401) and _oauth_error(response) in _REFUSED:
                refused.append(response)
                # A refused key is final: answer as a credentials error, not a retry.
                return httpx.Response(401, request=response.request)
            return response

        try:
            response = await call_with_retry(
                send,
                "Google token endpoint",
                clock=self.clock,
                policy=self.policy,
                error=BotError,
                credentials_error=BotCredentialsInvalid,
            )
        except BotCredentialsInvalid as exc:
            reason = _oauth_description(refused[-1]) if refused else f"answered {exc.status_code}"
            raise BotCredentialsInvalid(
                f"Google refused the service-account key: {reason}", status_code=exc.status_code
            ) from None
        try:
            body = response.json()
            value = body["access_token"]
            expires_in = float(body.get("expires_in", 3600))
        except (ValueError, KeyError, TypeError):
            raise BotError("Google token endpoint answered without an access token", retryable=True) from None
        if not isinstance(value, str) or not value:
            raise BotError("Google token endpoint answered without an access token", retryable=True)
        return AccessToken(value=value, expires_at=requested_at + expires_in)


def _oauth_body(response: httpx.Response) -> dict[str, Any]:
    try:
        body = response.json()
    except ValueError:
        return {}
    return body if isinstance(body, dict) else {}


def _oauth_error(response: httpx.Response) -> str:
    error = _oauth_body(response).get("error")
    return error if isinstance(error, str) else ""


def _oauth_description(response: httpx.Response) -> str:
    body = _oauth_body(response)
    error = body.get("error") if isinstance(body.get("error"), str) else "refused"
    description = body.get("error_description")
    text = f"{error}: {description}" if isinstance(description, str) and description else str(error)
    return text[:200]
