"""A strict fake of Google's token endpoint and Dialogflow's `detectIntent`.

Use it in-process (`httpx.ASGITransport(app=fake.app)`) or on loopback
(`serve(host, port)` / `python -m botbridge_dialogflow.testing --port 8085`).

It refuses what Google refuses: JWT grants that are not RS256-signed by a
registered key, with the wrong audience, scope or lifetime; calls without a
live bearer token, for another project, on the wrong regional host, with a
session id over 36 characters or outside `[A-Za-z0-9_-]`, with input text
over 256 characters, without a language code, or with unknown JSON fields.
Errors have Google's shapes: `{"error", "error_description"}` from the token
endpoint and `{"error": {"code", "message", "status"}}` from the API.

The scripted agent answers "echo: <text>", keyword rules, a card with the
buttons Billing/billing and Sales/sales to "menu", and quick replies
["Billing", "Sales"] to "quick". CX rules may carry channel-specific
messages (`ResponseMessage.channel`); they are answered as CX does: only to a
query whose `queryParams.channel` names their channel, which then gets no
channel-less message of that rule.

Every detectIntent exchange is kept in `exchanges` (path, body and answer as
sent on the wire), so a test can hold them against Google's own definitions.
"""

from __future__ import annotations

import argparse
import base64
import binascii
import json
import re
import secrets
import uuid
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from botbridge import Clock, SystemClock
from botbridge.fakes import BotFake

GOOGLE_TOKEN_URL = "https://oauth2.googleapis.com/token"
GRANT_TYPE = "urn:ietf:params:oauth:grant-type:jwt-bearer"
SCOPES = frozenset({"https://www.googleapis.com/auth/cloud-platform", "https://www.googleapis.com/auth/dialogflow"})
OPTIONS_TRIGGER = "menu"
QUICK_REPLIES_TRIGGER = "quick"
MAX_TEXT = 256
MAX_SESSION_ID = 36
MAX_ASSERTION_LIFETIME = 3600
CLOCK_SKEW = 300

_SESSION_ID = re.compile(r"^[A-Za-z0-9_-]+$")
_LANGUAGE = re.compile(r"^[A-Za-z]{2,3}(?:-[A-Za-z0-9]{2,8}){0,3}$")
_ES_PATH = re.compile(
    r"^/v2/projects/(?P<project>[^/]+)(?:/locations/(?P<location>[^/]+))?"
    r"/agent(?:/environments/(?P<environment>[^/]+)/users/(?P<user>[^/]+))?/sessions/(?P<session>[^/]+):detectIntent$"
)
_CX_PATH = re.compile(
    r"^/v3/projects/(?P<project>[^/]+)/locations/(?P<location>[^/]+)"
    r"/agents/(?P<agent>[^/]+)(?:/environments/(?P<environment>[^/]+))?/sessions/(?P<session>[^/]+):detectIntent$"
)
_STATUS_NAMES = {
    400: "INVALID_ARGUMENT",
    401: "UNAUTHENTICATED",
    403: "PERMISSION_DENIED",
    404: "NOT_FOUND",
    409: "ABORTED",
    429: "RESOURCE_EXHAUSTED",
    500: "INTERNAL",
    501: "NOT_IMPLEMENTED",
    502: "UNAVAILABLE",
    503: "UNAVAILABLE",
    504: "DEADLINE_EXCEEDED",
}
_ES_BODY_KEYS = frozenset({"queryInput", "queryParams", "outputAudioConfig", "outputAudioConfigMask", "inputAudio"})
_ES_PARAMS_KEYS = frozenset(
    {
        "timeZone",
        "geoLocation",
        "contexts",
        "resetContexts",
        "sessionEntityTypes",
        "payload",
        "sentimentAnalysisRequestConfig",
        "webhookHeaders",
        "platform",
    }
)
_CX_BODY_KEYS = frozenset({"queryInput", "queryParams", "outputAudioConfig"})
_CX_PARAMS_KEYS = frozenset(
    {
        "timeZone",
        "geoLocation",
        "sessionEntityTypes",
        "payload",
        "parameters",
        "currentPage",
        "webhookHeaders",
        "channel",
    }
)


# --- service accounts for tests -------------------------------------------


def generate_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


def service_account_info(
    key: rsa.RSAPrivateKey,
    *,
    project_id: str = "demo-agent-4711",
    client_email: str | None = None,
    private_key_id: str | None = None,
    token_uri: str = "",
) -> dict[str, str]:
    """A service-account key file's content, shaped like Google's (and the seed's)."""
    pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()
    return {
        "type": "service_account",
        "project_id": project_id,
        "private_key_id": private_key_id or secrets.token_hex(20),
        "private_key": pem,
        "client_email": client_email or f"bot-{secrets.token_hex(3)}@{project_id}.iam.gserviceaccount.com",
        "client_id": str(secrets.randbelow(10**21)),
        "auth_uri": "",
        "token_uri": token_uri,
        "auth_provider_x509_cert_url": "",
        "client_x509_cert_url": "",
    }


# --- what the fake records ---------------------------------------------------


@dataclass
class RegisteredAccount:
    client_email: str
    project_id: str
    key_id: str
    public_key: rsa.RSAPublicKey


@dataclass
class IssuedToken:
    value: str
    client_email: str
    project_id: str
    expires_at: float


@dataclass
class Agent:
    project_id: str
    location: str | None = None
    languages: tuple[str, ...] = ("en",)


@dataclass
class DetectCall:
    api: str  # "v2" or "v3"
    host: str
    project_id: str
    location: str | None
    session_id: str
    text: str
    language_code: str
    body: dict[str, Any]
    agent: str | None = None
    environment: str | None = None  # None: the draft agent


@dataclass
class Rule:
    keyword: str
    text: str = ""
    messages: list[dict[str, Any]] = field(default_factory=list)
    intent: str = "scripted"
    result: dict[str, Any] = field(default_factory=dict)  # more queryResult fields


@dataclass
class Exchange:
    """One detectIntent request and the fake's answer, as they crossed the wire."""

    api: str  # "v2" or "v3"
    method: str
    path: str  # undecoded, as sent
    query: str
    body: bytes
    status: int
    response: bytes


def google_error(status: int, message: str, *, headers: dict[str, str] | None = None) -> JSONResponse:
    body = {"error": {"code": status, "message": message, "status": _STATUS_NAMES.get(status, "UNKNOWN")}}
    return JSONResponse(body, status_code=status, headers=headers)


def oauth_error(error: str, description: str, status: int = 400) -> JSONResponse:
    return JSONResponse({"error": error, "error_description": description}, status_code=status)


class _Refused(Exception):
    def __init__(self, response: Response) -> None:
        self.response = response


def _b64decode(segment: str) -> bytes:
    if not re.fullmatch(r"[A-Za-z0-9_-]*", segment):
        raise ValueError("not base64url")
    return base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4))


class FakeDialogflow:
    """Google's token endpoint and Dialogflow ES/CX `detectIntent`, strictly."""

    def __init__(
        self,
        clock: Clock | None = None,
        *,
        token_lifetime: int = 3600,
        audiences: frozenset[str] | set[str] = frozenset({GOOGLE_TOKEN_URL}),
    ) -> None:
        self.clock = clock or SystemClock()
        self.token_lifetime = token_lifetime
        self.audiences = set(audiences)
        self.accounts: dict[str, RegisteredAccount] = {}
        self.agents: dict[tuple[str, str | None], Agent] = {}
        self.cx_agents: dict[tuple[str, str, str], Agent] = {}
        self.tokens: dict[str, IssuedToken] = {}
        self.rules: list[Rule] = []
        self.calls: list[DetectCall] = []
        self.exchanges: list[Exchange] = []
        # The environments each agent has published; set `draft_traffic = False` to refuse
        # calls without one, as an operator's production check would.
        self.environments: set[str] = {"production"}
        self.draft_traffic = True
        self.received = 0  # detectIntent requests, answered or not
        self.token_grants: list[dict[str, Any]] = []
        self.token_refusals: list[str] = []
        self._failures: deque[tuple[int, dict[str, str]]] = deque()
        self._token_failures: deque[int] = deque()
        self.app = Starlette(
            routes=[
                Route("/token", self._token, methods=["POST"]),
                Route("/v2/{path:path}", self._recorded("v2", self._detect_es), methods=["POST"]),
                Route("/v3/{path:path}", self._recorded("v3", self._detect_cx), methods=["POST"]),
            ]
        )

    # --- scripting ---

    def register(
        self,
        info: dict[str, Any] | str,
        *,
        location: str | None = None,
        languages: tuple[str, ...] = ("en",),
        public_key: rsa.RSAPublicKey | None = None,
    ) -> RegisteredAccount:
        """Know a service account's public key; give its project an ES agent (at `location`)."""
        data = json.loads(info) if isinstance(info, str) else info
        if public_key is None:
            private = serialization.load_pem_private_key(data["private_key"].encode(), password=None)
            assert isinstance(private, rsa.RSAPrivateKey)
            public_key = private.public_key()
        account = RegisteredAccount(
            client_email=data["client_email"],
            project_id=data["project_id"],
            key_id=data.get("private_key_id") or "",
            public_key=public_key,
        )
        self.accounts[account.client_email] = account
        self.agents.setdefault((account.project_id, location), Agent(account.project_id, location, languages))
        return account

    def add_agent(self, project_id: str, *, location: str | None = None, languages: tuple[str, ...] = ("en",)) -> None:
        self.agents[(project_id, location)] = Agent(project_id, location, languages)

    def add_cx_agent(
        self, project_id: str, location: str, agent_id: str, *, languages: tuple[str, ...] = ("en",)
    ) -> None:
        self.cx_agents[(project_id, location, agent_id)] = Agent(project_id, location, languages)

    def rule(
        self,
        keyword: str,
        *,
        text: str = "",
        messages: list[dict[str, Any]] | None = None,
        result: dict[str, Any] | None = None,
    ) -> None:
        """Answer inputs containing `keyword` with `messages` (and `text` as fulfillmentText).

        `result` adds queryResult fields (e.g. CX `dataStoreConnectionSignals`).
        """
        self.rules.insert(0, Rule(keyword.casefold(), text, messages or [], result=result or {}))

    def fail_next(self, status: int, *, retry_after: float | None = None) -> None:
        """The next detectIntent call (one per call to this) answers `status`."""
        headers = {"retry-after": str(retry_after)} if retry_after is not None else {}
        self._failures.append((status, headers))

    def fail_next_token(self, status: int) -> None:
        self._token_failures.append(status)

    def issue_token(self, client_email: str) -> str:
        """A live access token for a registered account, without a grant (for tests of the API)."""
        account = self.accounts[client_email]
        token = IssuedToken(
            value="ya29.fake-" + secrets.token_urlsafe(24),
            client_email=account.client_email,
            project_id=account.project_id,
            expires_at=self.clock.now() + self.token_lifetime,
        )
        self.tokens[token.value] = token
        return token.value

    def revoke_tokens(self) -> None:
        self.tokens.clear()

    @property
    def sessions(self) -> list[str]:
        """Session ids seen, in call order."""
        return [call.session_id for call in self.calls]

    # --- the token endpoint ---

    async def _token(self, request: Request) -> Response:
        if self._token_failures:
            status = self._token_failures.popleft()
            return oauth_error("internal_failure" if status >= 500 else "invalid_request", "Scripted failure", status)
        if request.headers.get("content-type", "").split(";")[0].strip() != "application/x-www-form-urlencoded":
            return oauth_error("invalid_request", "Content-Type must be application/x-www-form-urlencoded")
        try:
            form = dict(parse_qsl((await request.body()).decode(), keep_blank_values=True, strict_parsing=True))
        except (ValueError, UnicodeDecodeError):
            return oauth_error("invalid_request", "Malformed form body")
        if form.get("grant_type") != GRANT_TYPE:
            return oauth_error("unsupported_grant_type", "Invalid grant_type: " + form.get("grant_type", "")[:40])
        assertion = form.get("assertion")
        if not assertion:
            return oauth_error("invalid_request", "Missing required parameter: assertion")
        try:
            account, claims = self._verify(assertion)
        except _Refused as refused:
            return refused.response
        value = self.issue_token(account.client_email)
        self.token_grants.append(claims)
        return JSONResponse({"access_token": value, "expires_in": self.token_lifetime, "token_type": "Bearer"})

    def _refuse(self, description: str, error: str = "invalid_grant") -> _Refused:
        self.token_refusals.append(description)
        return _Refused(oauth_error(error, description))

    def _verify(self, assertion: str) -> tuple[RegisteredAccount, dict[str, Any]]:
        parts = assertion.split(".")
        if len(parts) != 3:
            raise self._refuse("Invalid JWT: malformed assertion")
        try:
            header = json.loads(_b64decode(parts[0]))
            claims = json.loads(_b64decode(parts[1]))
            signature = _b64decode(parts[2])
        except (ValueError, binascii.Error):
            raise self._refuse("Invalid JWT: malformed assertion") from None
        if not isinstance(header, dict) or not isinstance(claims, dict):
            raise self._refuse("Invalid JWT: malformed assertion")
        if header.get("alg") != "RS256":
            raise self._refuse("Invalid JWT Signature.")
        account = self.accounts.get(str(claims.get("iss")))
        if account is None:
            raise self._refuse("Invalid grant: account not found")
        if "kid" in header and account.key_id and header["kid"] != account.key_id:
            raise self._refuse("Invalid JWT Signature.")
        signing_input = (parts[0] + "." + parts[1]).encode("ascii")
        try:
            account.public_key.verify(signature, signing_input, padding.PKCS1v15(), hashes.SHA256())
        except InvalidSignature:
            raise self._refuse("Invalid JWT Signature.") from None
        if claims.get("aud") not in self.audiences:
            raise self._refuse("Invalid JWT: Failed audience check.")
        iat, exp, now = claims.get("iat"), claims.get("exp"), self.clock.now()
        if (
            not isinstance(iat, int)
            or not isinstance(exp, int)
            or isinstance(iat, bool)
            or isinstance(exp, bool)
            or exp <= iat
            or exp - iat > MAX_ASSERTION_LIFETIME
            or exp <= now
            or iat > now + CLOCK_SKEW
        ):
            raise self._refuse(
                "Invalid JWT: Token must be a short-lived token (60 minutes) and in a reasonable timeframe. "
                "Check your iat and exp values in the JWT claim."
            )
        scopes = set(str(claims.get("scope", "")).split())
        if not scopes & SCOPES:
            raise self._refuse("Invalid OAuth scope or ID token audience provided.", "invalid_scope")
        return account, claims

    # --- detectIntent ---

    def _recorded(self, api: str, handler: Callable[[Request], Awaitable[Response]]) -> Callable[..., Any]:
        async def endpoint(request: Request) -> Response:
            response = await handler(request)
            raw_path = request.scope.get("raw_path") or request.url.path.encode()
            self.exchanges.append(
                Exchange(
                    api=api,
                    method=request.method,
                    path=raw_path.decode("latin-1"),
                    query=request.url.query,
                    body=await request.body(),  # Starlette keeps the body the handler read
                    status=response.status_code,
                    response=bytes(response.body),
                )
            )
            return response

        return endpoint

    def _authorize(self, request: Request, project_id: str, resource: str) -> None:
        self.received += 1
        if self._failures:
            status, headers = self._failures.popleft()
            raise _Refused(google_error(status, f"Scripted failure {status}.", headers=headers))
        if request.headers.get("content-type", "").split(";")[0].strip() != "application/json":
            raise _Refused(google_error(400, "Invalid JSON payload: expected Content-Type application/json."))
        authorization = request.headers.get("authorization", "")
        scheme, _, value = authorization.partition(" ")
        token = self.tokens.get(value) if scheme.lower() == "bearer" else None
        if token is None or token.expires_at <= self.clock.now():
            raise _Refused(
                google_error(
                    401,
                    "Request had invalid authentication credentials. Expected OAuth 2 access token, login cookie "
                    "or other valid authentication credential.",
                )
            )
        if token.project_id != project_id:
            raise _Refused(
                google_error(403, f"IAM permission 'dialogflow.sessions.detectIntent' on '{resource}' denied.")
            )

    @staticmethod
    def _check_host(request: Request, location: str | None) -> None:
        host = request.headers.get("host", "").split(":")[0]
        if not host.endswith("dialogflow.googleapis.com"):
            return  # a base_url override (the fake on loopback, a test host)
        expected = (
            "dialogflow.googleapis.com" if location in (None, "global") else f"{location}-dialogflow.googleapis.com"
        )
        if host != expected:
            raise _Refused(
                google_error(
                    400, f"Please switch to '{expected}' to access resources located in '{location or 'global'}'."
                )
            )

    @staticmethod
    def _check_session(session_id: str) -> None:
        if len(session_id) > MAX_SESSION_ID:
            raise _Refused(google_error(400, f"Session id must not exceed {MAX_SESSION_ID} characters."))
        if not _SESSION_ID.match(session_id):
            raise _Refused(google_error(400, "Session id may only contain characters in [A-Za-z0-9_-]."))

    @staticmethod
    async def _json_object(request: Request, allowed: frozenset[str]) -> dict[str, Any]:
        try:
            body = json.loads(await request.body())
        except (ValueError, UnicodeDecodeError):
            raise _Refused(google_error(400, "Invalid JSON payload received.")) from None
        if not isinstance(body, dict):
            raise _Refused(google_error(400, "Invalid JSON payload received. Expected an object."))
        _unknown(body, allowed)
        return body

    @staticmethod
    def _check_text(text: Any, language: Any, agent: Agent) -> None:
        if not isinstance(text, str) or not text.strip():
            raise _Refused(google_error(400, "Input text not set."))
        if len(text) > MAX_TEXT:
            raise _Refused(google_error(400, f"Input text exceeds the limit of {MAX_TEXT} characters."))
        if not isinstance(language, str) or not language:
            raise _Refused(google_error(400, "Language code is required."))
        if not _LANGUAGE.match(language):
            raise _Refused(google_error(400, f"Invalid language code '{language[:20]}'."))
        root = language.split("-")[0].lower()
        if language.lower() not in agent.languages and root not in agent.languages:
            raise _Refused(google_error(400, f"Agent does not support language '{language}'."))

    async def _detect_es(self, request: Request) -> Response:
        match = _ES_PATH.match(request.url.path)
        if match is None:
            return google_error(404, "Requested entity was not found.")
        project, location, session = match["project"], match["location"], match["session"]
        resource = f"projects/{project}" + (f"/locations/{location}" if location else "") + "/agent"
        try:
            self._check_host(request, location)
            self._authorize(request, project, resource)
            agent = self.agents.get((project, location)) or (
                self.agents.get((project, None)) if location == "global" else None
            )
            if agent is None:
                return google_error(404, f"No DesignTimeAgent found for project '{project}'.")
            self._check_session(session)
            self._check_environment(match["environment"])
            body = await self._json_object(request, _ES_BODY_KEYS)
            query_input = body.get("queryInput")
            if not isinstance(query_input, dict) or not isinstance(query_input.get("text"), dict):
                return google_error(400, "Invalid query input: text input is required by this agent.")
            _unknown(query_input, frozenset({"text", "event", "audioConfig"}), "query_input")
            text_input = query_input["text"]
            _unknown(text_input, frozenset({"text", "languageCode"}), "query_input.text")
            params = body.get("queryParams", {})
            if not isinstance(params, dict):
                return google_error(400, "Invalid value at 'query_params'.")
            _unknown(params, _ES_PARAMS_KEYS, "query_params")
            if "timeZone" in params and not isinstance(params["timeZone"], str):
                return google_error(400, "Invalid value at 'query_params.time_zone'.")
            text, language = text_input.get("text"), text_input.get("languageCode")
            self._check_text(text, language, agent)
        except _Refused as refused:
            return refused.response
        assert isinstance(text, str) and isinstance(language, str)
        self.calls.append(
            DetectCall(
                "v2",
                request.headers.get("host", ""),
                project,
                location,
                session,
                text,
                language,
                body,
                environment=match["environment"],
            )
        )
        return JSONResponse(self._es_answer(project, text, language))

    async def _detect_cx(self, request: Request) -> Response:
        match = _CX_PATH.match(request.url.path)
        if match is None:
            return google_error(404, "Requested entity was not found.")
        project, location, agent_id, session = match["project"], match["location"], match["agent"], match["session"]
        resource = f"projects/{project}/locations/{location}/agents/{agent_id}"
        try:
            self._check_host(request, location)
            self._authorize(request, project, resource)
            agent = self.cx_agents.get((project, location, agent_id))
            if agent is None:
                return google_error(
                    404, f"com.google.apps.framework.request.NotFoundException: Agent '{agent_id}' does not exist."
                )
            self._check_session(session)
            self._check_environment(match["environment"])
            body = await self._json_object(request, _CX_BODY_KEYS)
            query_input = body.get("queryInput")
            if not isinstance(query_input, dict) or not isinstance(query_input.get("text"), dict):
                return google_error(400, "Invalid query input: text input is required by this agent.")
            _unknown(
                query_input, frozenset({"text", "intent", "audio", "event", "dtmf", "languageCode"}), "query_input"
            )
            _unknown(query_input["text"], frozenset({"text"}), "query_input.text")
            params = body.get("queryParams", {})
            if not isinstance(params, dict):
                return google_error(400, "Invalid value at 'query_params'.")
            _unknown(params, _CX_PARAMS_KEYS, "query_params")
            text, language = query_input["text"].get("text"), query_input.get("languageCode")
            self._check_text(text, language, agent)
        except _Refused as refused:
            return refused.response
        assert isinstance(text, str) and isinstance(language, str)
        self.calls.append(
            DetectCall(
                "v3",
                request.headers.get("host", ""),
                project,
                location,
                session,
                text,
                language,
                body,
                agent_id,
                environment=match["environment"],
            )
        )
        channel = params.get("channel")
        return JSONResponse(self._cx_answer(text, language, channel if isinstance(channel, str) else None))

    def _check_environment(self, environment: str | None) -> None:
        if environment is None:
            if not self.draft_traffic:
                raise _Refused(google_error(400, "Draft agent traffic is refused here: use an environment."))
            return
        if environment not in self.environments:
            raise _Refused(google_error(404, f"Environment '{environment}' does not exist."))

    # --- the scripted agent ---

    def _script(self, text: str) -> Rule:
        folded = text.casefold()
        for rule in self.rules:
            if rule.keyword in folded:
                return rule
        if OPTIONS_TRIGGER in folded:
            card = {
                "title": "How can we help?",
                "buttons": [{"text": "Billing", "postback": "billing"}, {"text": "Sales", "postback": "sales"}],
            }
            return Rule(OPTIONS_TRIGGER, "How can we help?", [{"card": card}], "menu")
        if QUICK_REPLIES_TRIGGER in folded:
            quick = {"title": "Pick one", "quickReplies": ["Billing", "Sales"]}
            return Rule(QUICK_REPLIES_TRIGGER, "Pick one", [{"quickReplies": quick}], "quick")
        answer = f"echo: {text}"
        return Rule("", answer, [{"text": {"text": [answer]}}], "echo")

    def _es_answer(self, project: str, text: str, language: str) -> dict[str, Any]:
        rule = self._script(text)
        intent, fulfillment = rule.intent, rule.text
        # Channel-specific responses are CX's: an ES agent has none.
        messages = [m for m in rule.messages if "channel" not in m]
        return {
            "responseId": str(uuid.uuid4()),
            "queryResult": {
                "queryText": text,
                "languageCode": language,
                "action": intent,
                "parameters": {},
                "allRequiredParamsPresent": True,
                "fulfillmentText": fulfillment,
                "fulfillmentMessages": messages,
                "intent": {"name": f"projects/{project}/agent/intents/{uuid.uuid4()}", "displayName": intent},
                "intentDetectionConfidence": 1,
                **rule.result,
            },
        }

    def _cx_answer(self, text: str, language: str, channel: str | None = None) -> dict[str, Any]:
        rule = self._script(text)
        intent, fulfillment = rule.intent, rule.text
        # CX v3 reference, QueryParameters.channel: a query for a channel gets that channel's
        # messages only; a channel with none of its own falls back to the channel-less ones,
        # which are also all a query without a channel gets.
        specific = [m for m in rule.messages if channel and m.get("channel") == channel]
        messages = specific or [m for m in rule.messages if not m.get("channel")]
        response_messages: list[dict[str, Any]] = []
        for message in messages:
            if "text" in message:
                response_messages.append(message)
            elif "card" in message or "quickReplies" in message:
                chips = [{"text": b["text"]} for b in message.get("card", {}).get("buttons", [])] or [
                    {"text": q} for q in message.get("quickReplies", {}).get("quickReplies", [])
                ]
                response_messages.append({"text": {"text": [fulfillment]}})
                response_messages.append({"payload": {"richContent": [[{"type": "chips", "options": chips}]]}})
            else:
                response_messages.append(message)
        return {
            "responseId": str(uuid.uuid4()),
            "queryResult": {
                "text": text,
                "languageCode": language,
                "responseMessages": response_messages,
                "match": {"matchType": "INTENT", "confidence": 1},
                "intent": {"displayName": intent},
                **rule.result,
            },
        }


def _unknown(data: dict[str, Any], allowed: frozenset[str], where: str = "") -> None:
    for name in data:
        if name not in allowed:
            place = f" at '{where}'" if where else ""
            raise _Refused(
                google_error(400, f'Invalid JSON payload received. Unknown name "{name}"{place}: Cannot find field.')
            )


# --- on loopback -------------------------------------------------------------


class DialogflowScript(BotFake):
    """The fake as the demo and end-to-end tests drive it: a scripted Dialogflow agent."""

    type = "GOOGLE_DIALOG_FLOW"
    options_trigger = OPTIONS_TRIGGER

    def __init__(self, fake: FakeDialogflow | None = None) -> None:
        self.fake = fake or FakeDialogflow()
        self.info = service_account_info(rsa.generate_private_key(public_exponent=65537, key_size=2048))
        self.fake.register(self.info)
        self.app = self.fake.app

    def connector_body(self, sender_id: str, base_url: str) -> dict[str, Any]:
        return {
            "type": self.type,
            "sender_id": sender_id,
            "credentials": json.dumps(self.info),
            "config": {"base_url": base_url, "token_url": base_url + "/token"},
        }

    def sessions(self) -> set[str]:
        return {call.session_id for call in self.fake.calls}


def serve(host: str = "127.0.0.1", port: int = 8085, accounts: list[dict[str, Any]] | None = None) -> None:
    """Run the fake with uvicorn; `accounts` are service-account infos it knows."""
    import uvicorn

    fake = FakeDialogflow(audiences={GOOGLE_TOKEN_URL, f"http://{host}:{port}/token"})
    for info in accounts or []:
        fake.register(info)
    uvicorn.run(fake.app, host=host, port=port, log_level="warning")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="A strict fake of Google's token endpoint and Dialogflow.")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8085)
    parser.add_argument("--service-account", action="append", default=[], help="key file the fake accepts")
    parser.add_argument("--generate", help="write a new service-account key file here and accept it")
    args = parser.parse_args(argv)
    accounts = []
    for path in args.service_account:
        with open(path, encoding="utf-8") as handle:
            accounts.append(json.load(handle))
    if args.generate:
        info = service_account_info(generate_key(), token_uri=f"http://{args.host}:{args.port}/token")
        with open(args.generate, "w", encoding="utf-8") as handle:
            json.dump(info, handle, indent=2)
        accounts.append(info)
    serve(args.host, args.port, accounts)


if __name__ == "__main__":
    main()
