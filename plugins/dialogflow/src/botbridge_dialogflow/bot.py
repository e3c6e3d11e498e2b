"""The `GOOGLE_DIALOG_FLOW` bot backend: Dialogflow ES v2 (and CX v3) over REST."""

from __future__ import annotations

import dataclasses
import hashlib
from typing import Any, ClassVar
from urllib.parse import quote

import httpx

from botbridge import (
    BotBackend,
    BotCredentialsInvalid,
    BotError,
    BotSession,
    Clock,
    ConfigInvalid,
    InboundMessage,
    Reply,
)
from botbridge.http import RetryPolicy, call_with_retry
from botbridge_dialogflow.auth import TokenSource
from botbridge_dialogflow.credentials import (
    GOOGLE_TOKEN_URL,
    ServiceAccount,
    Settings,
    parse_service_account,
    parse_settings,
)
from botbridge_dialogflow.responses import cx_replies, error_message, es_replies

DEFAULT_HOST = "https://dialogflow.googleapis.com"
MAX_TEXT = 256
MAX_SESSION_ID = 36
SESSION_KEY = "session_id"
MAX_CACHED_ACCOUNTS = 1024


def session_id_for(conversation_id: str) -> str:
    """A Dialogflow session id for a conversation: 32 hex characters.

    Dialogflow wants ≤ 36 characters and recommends hashing user-derived
    ids; the same conversation always maps to the same session.
    """
    return hashlib.sha256(conversation_id.encode()).hexdigest()[:32]


def truncate_text(text: str, limit: int = MAX_TEXT) -> str:
    """Dialogflow refuses input over 256 characters: keep the first 256."""
    return text if len(text) <= limit else text[:limit]


def regional_host(location: str | None) -> str:
    if not location or location == "global":
        return DEFAULT_HOST
    return f"https://{location}-dialogflow.googleapis.com"


def detect_intent_url(project_id: str, session_id: str, settings: Settings) -> str:
    """Where to POST: the regional host *and* `locations/` in the path for regional agents."""
    base = settings.base_url or regional_host(settings.location)
    project = quote(project_id, safe="")
    session = quote(session_id, safe="")
    environment = quote(settings.environment, safe="") if settings.environment else None
    if settings.agent:
        location = quote(settings.location or "global", safe="")
        agent = quote(settings.agent, safe="")
        version = f"/environments/{environment}" if environment else ""
        return (
            f"{base}/v3/projects/{project}/locations/{location}/agents/{agent}{version}/sessions/{session}:detectIntent"
        )
    # ES: a published environment's sessions are per user; "-" is any user.
    version = f"/environments/{environment}/users/-" if environment else ""
    if settings.location:
        location = quote(settings.location, safe="")
        return f"{base}/v2/projects/{project}/locations/{location}/agent{version}/sessions/{session}:detectIntent"
    return f"{base}/v2/projects/{project}/agent{version}/sessions/{session}:detectIntent"


def request_body(text: str, settings: Settings) -> dict[str, Any]:
    query_params: dict[str, Any] = {}
    if settings.time_zone:
        query_params["timeZone"] = settings.time_zone
    if settings.agent and settings.channel:
        query_params["channel"] = settings.channel
    if settings.agent:
        body: dict[str, Any] = {"queryInput": {"text": {"text": text}, "languageCode": settings.language_code}}
    else:
        body = {"queryInput": {"text": {"text": text, "languageCode": settings.language_code}}}
    if query_params:
        body["queryParams"] = query_params
    return body


def query_text(message: InboundMessage) -> str:
    """What the bot is asked: a chosen option's value, the text, or else the media links."""
    text = (message.postback or message.text or "").strip()
    if not text and message.media:
        text = " ".join(m.url for m in message.media)
    return truncate_text(text)


class DialogflowBackend(BotBackend):
    """Dialogflow ES v2 `detectIntent` (CX v3 when the connector config names an `agent`).

    Credentials: the service-account key file's JSON. Config: `language_code`
    (default "en"), `location` (regional agents), `agent` (CX), `time_zone`,
    `platform` (which platform's rich responses to show), `base_url`,
    `token_url`.
    """

    type: ClassVar[str] = "GOOGLE_DIALOG_FLOW"
    description: ClassVar[str] = "Google Dialogflow ES (v2) and CX (v3) detectIntent"
    retry_policy: ClassVar[RetryPolicy] = RetryPolicy()

    def __init__(self, http: httpx.AsyncClient, clock: Clock, *, retry_policy: RetryPolicy | None = None) -> None:
        super().__init__(http, clock)
        self.policy = retry_policy or self.retry_policy
        self.tokens = TokenSource(http, clock, self.policy)
        self._accounts: dict[str, ServiceAccount] = {}

    def validate_credentials(self, credentials: str, config: dict[str, Any]) -> None:
        parse_service_account(credentials)
        parse_settings(config)

    async def open(self, session: BotSession) -> None:
        session.state[SESSION_KEY] = session_id_for(session.conversation_id)

    async def send(self, session: BotSession, message: InboundMessage) -> list[Reply]:
        account = self._account(session)
        settings = self._settings(session)
        session_id = session.state.get(SESSION_KEY)
        if not isinstance(session_id, str) or not session_id:
            session_id = session.state[SESSION_KEY] = session_id_for(session.conversation_id)
        text = query_text(message)
        if not text:
            return []
        token_url = settings.token_url or account.token_uri or GOOGLE_TOKEN_URL
        url = detect_intent_url(account.project_id, session_id, settings)
        body = request_body(text, settings)
        response = await self._detect_intent(account, token_url, url, body)
        try:
            data = response.json()
        except ValueError:
            raise BotError("Dialogflow answered with a body that is not JSON", retryable=True) from None
        return cx_replies(data) if settings.agent else es_replies(data, settings.platform)

    async def close(self, session: BotSession) -> None:
        # Nothing to end at Google: a session's contexts simply lapse. The
        # next conversation has another id, so it gets another session.
        return None

    async def aclose(self) -> None:
        self.tokens.clear()
        self._accounts.clear()

    # --- internals ---

    def _account(self, session: BotSession) -> ServiceAccount:
        # Parsed once per distinct credentials: loading an RSA key costs CPU.
        digest = hashlib.sha256(session.credentials.encode()).hexdigest()
        account = self._accounts.get(digest)
        if account is None:
            try:
                account = parse_service_account(session.credentials)
            except ConfigInvalid as exc:
                raise BotCredentialsInvalid(f"connector credentials are unusable: {exc}") from None
            if len(self._accounts) >= MAX_CACHED_ACCOUNTS:
                self._accounts.clear()
            self._accounts[digest] = account
        return account

    def _settings(self, session: BotSession) -> Settings:
        try:
            return parse_settings(session.config)
        except ConfigInvalid as exc:
            raise BotError(f"connector config is invalid: {exc}") from None

    async def _detect_intent(
        self, account: ServiceAccount, token_url: str, url: str, body: dict[str, Any]
    ) -> httpx.Response:
        # One fresh token on a 401: a cached token may be revoked or expire early.
        for attempt in range(2):
            token = await self.tokens.token(account, token_url)
            last: list[httpx.Response] = []

            async def send(token: str = token, last: list[httpx.Response] = last) -> httpx.Response:
                response = await self.http.post(url, json=body, headers={"authorization": f"Bearer {token}"})
                last.append(response)
                return response

            try:
                return await call_with_retry(
                    send,
                    "Dialogflow detectIntent",
                    clock=self.clock,
                    # "This method is not idempotent" (the discovery documents): a 5xx
                    # or timeout may come after the turn moved the session on.
                    policy=dataclasses.replace(self.policy, idempotent=False),
                    error=BotError,
                    credentials_error=BotCredentialsInvalid,
                )
            except BotCredentialsInvalid as exc:
                if exc.status_code == 401 and attempt == 0:
                    self.tokens.invalidate(account, token_url, token)
                    continue
                raise _with_google_message(exc, last) from None
            except BotError as exc:
                raise _with_google_message(exc, last) from None
        raise AssertionError("unreachable")  # pragma: no cover


def _with_google_message(exc: BotError, responses: list[httpx.Response]) -> BotError:
    """The same error, its message taken from Google's error body when there is one."""
    if not responses or exc.status_code is None:
        return exc
    try:
        detail = error_message(responses[-1].json())
    except ValueError:
        detail = ""
    if not detail:
        return exc
    error = type(exc)(
        f"Dialogflow answered {exc.status_code}: {detail}",
        retryable=exc.retryable,
        status_code=exc.status_code,
        retry_after=exc.retry_after,
        outcome_unknown=exc.outcome_unknown,
    )
    return error
