"""Amazon Lex bot backend: V2 `RecognizeText`, and legacy V1 `PostText`.

Credentials are a JSON string:

* V2 (the working path): ``{"accessKeyId", "secretKey", "region",
  "bot": {"id", "aliasId", "localeId"}}``
* V1 (the seed's format; Lex V1 reached end of support on 15 Sep 2025):
  ``{"accessKeyId", "secretKey", "region", "bot": {"name", "alias"}}``

Every request is signed with botocore's SigV4 signer (service ``lex``) over
the exact bytes that are sent, with the injected clock's time.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import re
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, ClassVar
from urllib.parse import quote, urlsplit

import httpx
from botocore.auth import SIGV4_TIMESTAMP, SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials

from botbridge import (
    BotBackend,
    BotCredentialsInvalid,
    BotError,
    BotSession,
    Clock,
    ConfigInvalid,
    InboundMessage,
    Media,
    Option,
    Reply,
)
from botbridge.http import RetryPolicy, call_with_retry

CONNECTOR_TYPE = "AMAZON_LEX"
SIGNING_SERVICE = "lex"
MAX_INPUT_CHARS = 1024

_REGION = re.compile(r"^[a-z]{2}(-gov|-iso[a-z]?)?-[a-z]+-\d{1,2}$")
_ACCESS_KEY_ID = re.compile(r"^[A-Z0-9]{16,128}$")
_V1_NAME = re.compile(r"^([A-Za-z]_?)+$")
_V1_ALIAS = re.compile(r"^(\$LATEST|([A-Za-z]_?)+)$")
_V2_ID = re.compile(r"^[0-9A-Za-z]{10}$")
_V2_LOCALE = re.compile(r"^[a-z]{2}_[A-Z0-9]{2,3}$")
SESSION_ID = re.compile(r"^[0-9a-zA-Z._:-]{2,100}$")
_SSML_TAG = re.compile(r"<[^>]+>")

V1_RETIRED = (
    "Amazon Lex V1 reached end of support on 15 Sep 2025, and this connector uses the V1 "
    'format bot{"name", "alias"}. Migrate the bot to Lex V2 and update the connector\'s '
    'credentials to bot{"id": "<10-character bot id>", "aliasId": "<10-character alias id>", '
    '"localeId": "en_US"}.'
)


# --- credentials -------------------------------------------------------------


@dataclass(frozen=True)
class V1Bot:
    name: str
    alias: str


@dataclass(frozen=True)
class V2Bot:
    id: str
    alias_id: str
    locale_id: str


@dataclass(frozen=True)
class LexCredentials:
    access_key_id: str
    secret_key: str = field(repr=False)
    region: str
    bot: V1Bot | V2Bot

    @property
    def api(self) -> str:
        return "v2" if isinstance(self.bot, V2Bot) else "v1"


def _text(data: dict[str, Any], key: str, where: str, pattern: re.Pattern[str] | None, hint: str) -> str:
    value = data.get(key)
    if not isinstance(value, str) or not value.strip():
        raise ConfigInvalid(f"{where}.{key}", "is required (a non-empty string)")
    # fullmatch: `$` alone lets a pasted trailing newline through, and Lex refuses the id.
    if pattern is not None and not pattern.fullmatch(value):
        raise ConfigInvalid(f"{where}.{key}", hint)
    return value


def parse_credentials(raw: str) -> LexCredentials:
    """The connector's credentials, checked; `ConfigInvalid` names the wrong field.

    Messages never contain the secret key.
    """
    try:
        data = json.loads(raw)
    except (TypeError, ValueError):
        raise ConfigInvalid("credentials", "must be a JSON object (as a string)") from None
    if not isinstance(data, dict):
        raise ConfigInvalid("credentials", "must be a JSON object")
    access_key_id = _text(data, "accessKeyId", "credentials", _ACCESS_KEY_ID, "does not look like an AWS access key id")
    secret_key = _text(data, "secretKey", "credentials", None, "")
    region = _text(data, "region", "credentials", _REGION, "does not look like an AWS region (e.g. us-east-1)")
    bot = data.get("bot")
    if not isinstance(bot, dict):
        raise ConfigInvalid(
            "credentials.bot", 'is required: {"id", "aliasId", "localeId"} (Lex V2) or {"name", "alias"} (Lex V1)'
        )
    parsed: V1Bot | V2Bot
    if any(key in bot for key in ("id", "aliasId", "localeId")):
        parsed = V2Bot(
            id=_text(bot, "id", "credentials.bot", _V2_ID, "must be the 10-character Lex V2 bot id"),
            alias_id=_text(bot, "aliasId", "credentials.bot", _V2_ID, "must be the 10-character Lex V2 alias id"),
            locale_id=_text(bot, "localeId", "credentials.bot", _V2_LOCALE, "must be a Lex locale such as en_US"),
        )
    elif any(key in bot for key in ("name", "alias")):
        parsed = V1Bot(
            name=_text(bot, "name", "credentials.bot", _V1_NAME, "must be a Lex V1 bot name (letters, _)"),
            alias=_text(bot, "alias", "credentials.bot", _V1_ALIAS, "must be a Lex V1 alias name (letters, _)"),
        )
    else:
        raise ConfigInvalid(
            "credentials.bot.aliasId", 'bot needs {"id", "aliasId", "localeId"} (Lex V2) or {"name", "alias"} (Lex V1)'
        )
    return LexCredentials(access_key_id=access_key_id, secret_key=secret_key, region=region, bot=parsed)


def asks_handoff(data: Any, config: dict[str, Any]) -> bool:
    """Whether Lex's answer hands the conversation to a person, as the connector's config says.

    `handoff_intents`: intent names (V2 `sessionState.intent.name`, V1 `intentName`);
    `handoff_attribute`: a session attribute whose value "true" (any case) hands off.
    """
    if not isinstance(data, dict):
        return False
    state = data.get("sessionState") if isinstance(data.get("sessionState"), dict) else {}
    intent = state.get("intent") if isinstance(state.get("intent"), dict) else {}
    name = intent.get("name") if "sessionState" in data else data.get("intentName")
    if isinstance(name, str) and name in (config.get("handoff_intents") or ()):
        return True
    attribute = config.get("handoff_attribute")
    attributes = state.get("sessionAttributes") if "sessionState" in data else data.get("sessionAttributes")
    if attribute and isinstance(attributes, dict):
        return str(attributes.get(attribute, "")).strip().lower() == "true"
    return False


def _check_config(config: dict[str, Any]) -> None:
    base_url = config.get("base_url")
    if base_url is not None:
        parts = urlsplit(base_url) if isinstance(base_url, str) else None
        if parts is None or parts.scheme not in ("http", "https") or not parts.netloc or parts.query:
            raise ConfigInvalid("config.base_url", "must be an http(s) URL without a query")
    attributes = config.get("request_attributes")
    if attributes is not None and not (
        isinstance(attributes, dict) and all(isinstance(k, str) and isinstance(v, str) for k, v in attributes.items())
    ):
        raise ConfigInvalid("config.request_attributes", "must be an object of strings")
    if attributes and "" in attributes:
        # RecognizeText's model: requestAttributes keys are NonEmptyString (1+ characters).
        raise ConfigInvalid("config.request_attributes", "keys must not be empty")
    intents = config.get("handoff_intents")
    if intents is not None and not (isinstance(intents, list) and all(isinstance(i, str) and i for i in intents)):
        raise ConfigInvalid("config.handoff_intents", "must be a list of intent names")
    attribute = config.get("handoff_attribute")
    if attribute is not None and not (isinstance(attribute, str) and attribute):
        raise ConfigInvalid("config.handoff_attribute", "must be a session attribute name")


# --- ids -----------------------------------------------------------------------


def session_id_for(connector_id: str, conversation_id: str) -> str:
    """A valid Lex user/session id (2–100 of `[0-9a-zA-Z._:-]`) for one conversation.

    Stable for a conversation, different for the next one, and free of the
    contact's phone number (a `+` is not allowed, and the number is personal).
    """
    digest = hashlib.sha256(f"{connector_id}\x00{conversation_id}".encode()).hexdigest()
    return f"bb.{digest[:40]}"


# --- responses -----------------------------------------------------------------


def aws_domain(region: str) -> str:
    """The DNS suffix of a region's endpoints: China's partition has its own (botocore's endpoints.json)."""
    return "amazonaws.com.cn" if region.startswith("cn-") else "amazonaws.com"


def _plain(value: Any) -> str:
    return value.strip() if isinstance(value, str) else ""


def _custom_payload(content: Any) -> str:
    """A custom payload is for the client app; on a text channel use its `text`, if any."""
    if not isinstance(content, str):
        return ""
    try:
        data = json.loads(content)
    except ValueError:
        return ""  # free text for the client app (XML, a command): never shown to a user as is
    if isinstance(data, dict):
        for key in ("text", "message"):
            if isinstance(data.get(key), str):
                return data[key].strip()
    return ""


def _message_text(content_type: Any, content: Any) -> str:
    if content_type == "CustomPayload":
        return _custom_payload(content)
    if content_type == "SSML":
        return _SSML_TAG.sub("", content).strip() if isinstance(content, str) else ""
    return _plain(content)


def _options(buttons: Any) -> list[Option]:
    options = []
    for button in buttons if isinstance(buttons, list) else []:
        if not isinstance(button, dict):
            continue
        label, value = _plain(button.get("text")), _plain(button.get("value"))
        if label or value:
            options.append(Option(label=label or value, value=value or label))
    return options


def _card_reply(title: Any, subtitle: Any, image_url: Any, buttons: Any) -> Reply | None:
    text = "\n".join(part for part in (_plain(title), _plain(subtitle)) if part)
    url = _plain(image_url)
    media = [Media(url=url, caption=_plain(title) or None)] if url.startswith(("https://", "http://")) else []
    reply = Reply(text=text, media=media, options=_options(buttons))
    return reply if (reply.text or reply.media or reply.options) else None


def replies_from_v1(data: Any) -> list[Reply]:
    """PostText's answer as replies: `message` (any `messageFormat`), then response-card attachments."""
    if not isinstance(data, dict):
        return []
    replies: list[Reply] = []
    message, fmt = data.get("message"), data.get("messageFormat")
    if fmt == "Composite" and isinstance(message, str):
        try:
            group = json.loads(message)
        except ValueError:
            group = None
        items = group.get("messages") if isinstance(group, dict) else None
        for item in items if isinstance(items, list) else []:
            if isinstance(item, dict):
                text = _message_text(item.get("type"), item.get("value"))
                if text:
                    replies.append(Reply(text=text))
    else:
        text = _message_text(fmt, message)
        if text:
            replies.append(Reply(text=text))
    card = data.get("responseCard")
    attachments = card.get("genericAttachments") if isinstance(card, dict) else None
    for attachment in attachments if isinstance(attachments, list) else []:
        if isinstance(attachment, dict):
            reply = _card_reply(
                attachment.get("title"),
                attachment.get("subTitle"),
                attachment.get("imageUrl"),
                attachment.get("buttons"),
            )
            if reply is not None:
                replies.append(reply)
    return replies


def replies_from_v2(data: Any) -> list[Reply]:
    """RecognizeText's `messages[]` as replies (PlainText, SSML, CustomPayload, ImageResponseCard)."""
    messages = data.get("messages") if isinstance(data, dict) else None
    replies: list[Reply] = []
    for message in messages if isinstance(messages, list) else []:
        if not isinstance(message, dict):
            continue
        if message.get("contentType") == "ImageResponseCard":
            card = message.get("imageResponseCard")
            if isinstance(card, dict):
                reply = _card_reply(card.get("title"), card.get("subtitle"), card.get("imageUrl"), card.get("buttons"))
                if reply is not None:
                    replies.append(reply)
            continue
        text = _message_text(message.get("contentType"), message.get("content"))
        if text:
            replies.append(Reply(text=text))
    return _with_dialog_action(replies, data)


_CONFIRM = [Option(label="Yes", value="yes"), Option(label="No", value="no")]


def _with_dialog_action(replies: list[Reply], data: Any) -> list[Reply]:
    """`sessionState.dialogAction`: ConfirmIntent asks yes/no; Close ends the conversation."""
    state = data.get("sessionState") if isinstance(data, dict) else None
    action = state.get("dialogAction") if isinstance(state, dict) else None
    kind = action.get("type") if isinstance(action, dict) else None
    if kind == "ConfirmIntent" and replies and not replies[-1].options:
        # On a text channel a confirmation is a question with two numbered answers Lex understands.
        replies[-1] = replies[-1].model_copy(update={"options": list(_CONFIRM)})
    elif kind == "Close":
        if replies:
            replies[-1] = replies[-1].model_copy(update={"signals": [*replies[-1].signals, "end"]})
        else:
            replies.append(Reply(signals=["end"]))
    return replies


def _well_formed(text: str) -> str:
    """`text` with lone surrogates (from JSON such as "\\ud83d" cut from its pair) as U+FFFD.

    They cannot be encoded as UTF-8, so the body could not be sent at all.
    """
    return text.encode("utf-16", "surrogatepass").decode("utf-16", "replace")


def _string_map(value: Any) -> dict[str, str]:
    if not isinstance(value, dict):
        return {}
    return {_well_formed(k): _well_formed(v) for k, v in value.items() if isinstance(k, str) and isinstance(v, str)}


# --- signing -------------------------------------------------------------------


class _SigV4AtTime(SigV4Auth):
    """botocore's SigV4 signer, dated by our clock instead of the system's."""

    def __init__(self, credentials: Credentials, service: str, region: str, when: datetime) -> None:
        super().__init__(credentials, service, region)
        self._timestamp = when.astimezone(UTC).strftime(SIGV4_TIMESTAMP)

    def _modify_request_before_signing(self, request: AWSRequest) -> None:
        request.context["timestamp"] = self._timestamp
        super()._modify_request_before_signing(request)


def signed_headers(credentials: LexCredentials, url: str, body: bytes, when: datetime) -> dict[str, str]:
    """The headers that sign a POST of exactly `body` to `url` (SigV4, service `lex`)."""
    request = AWSRequest(method="POST", url=url, data=body, headers={"Content-Type": "application/json"})
    signer = _SigV4AtTime(
        Credentials(credentials.access_key_id, credentials.secret_key), SIGNING_SERVICE, credentials.region, when
    )
    signer.add_auth(request)
    return dict(request.headers.items())


# --- the backend ---------------------------------------------------------------


def _aws_error(response: httpx.Response) -> str:
    """`Code: message` from Lex's error (`x-amzn-ErrorType` header, `{"message"}` body)."""
    code = response.headers.get("x-amzn-errortype", "").split(":", 1)[0].strip()
    message = ""
    try:
        body = response.json()
    except ValueError:
        body = None
    if isinstance(body, dict):
        code = code or str(body.get("__type", "")).rsplit("#", 1)[-1]
        raw = body.get("message", body.get("Message"))
        message = raw if isinstance(raw, str) else ""
    message = " ".join(message.split())[:300]
    return ": ".join(part for part in (code, message) if part) or "no error details"


class LexBot(BotBackend):
    """Connector type `AMAZON_LEX`: one Lex session per botbridge conversation."""

    type: ClassVar[str] = CONNECTOR_TYPE
    description: ClassVar[str] = "Amazon Lex V2 RecognizeText (V1 PostText for the legacy bot{name, alias} format)"

    def __init__(self, http: httpx.AsyncClient, clock: Clock, *, retry_policy: RetryPolicy | None = None) -> None:
        super().__init__(http, clock)
        self.retry_policy = retry_policy or RetryPolicy()

    def validate_credentials(self, credentials: str, config: dict[str, Any]) -> None:
        parse_credentials(credentials)
        _check_config(config)

    async def open(self, session: BotSession) -> None:
        credentials = parse_credentials(session.credentials)
        session.state.clear()
        session.state.update(
            api=credentials.api,
            session_id=session_id_for(session.connector.id, session.conversation_id),
            session_attributes={},
        )

    async def send(self, session: BotSession, message: InboundMessage) -> list[Reply]:
        try:
            credentials = parse_credentials(session.credentials)
        except ConfigInvalid as exc:
            raise BotError(f"Lex connector credentials are invalid: {exc.message}") from None
        if not session.state.get("session_id") or session.state.get("api") != credentials.api:
            await self.open(session)
        text = _well_formed(message.postback or message.text).strip()[:MAX_INPUT_CHARS]
        if not text:
            return []  # Lex needs 1+ characters of text; a media-only message has nothing to say
        session_id: str = session.state["session_id"]
        attributes = _string_map(session.state.get("session_attributes"))
        request_attributes = _string_map(session.config.get("request_attributes"))
        payload: dict[str, Any]
        if isinstance(credentials.bot, V2Bot):
            bot = credentials.bot
            path = (
                f"/bots/{quote(bot.id, safe='')}/botAliases/{quote(bot.alias_id, safe='')}"
                f"/botLocales/{quote(bot.locale_id, safe='')}/sessions/{quote(session_id, safe='')}/text"
            )
            default_host = f"https://runtime-v2-lex.{credentials.region}.{aws_domain(credentials.region)}"
            payload = {"text": text}
            # The V2 model's attribute keys are NonEmptyString: an empty one would fail the whole turn.
            attributes = {k: v for k, v in attributes.items() if k}
            request_attributes = {k: v for k, v in request_attributes.items() if k}
            if attributes:
                payload["sessionState"] = {"sessionAttributes": attributes}
        else:
            bot_v1 = credentials.bot
            path = (
                f"/bot/{quote(bot_v1.name, safe='')}/alias/{quote(bot_v1.alias, safe='')}"
                f"/user/{quote(session_id, safe='')}/text"
            )
            default_host = f"https://runtime.lex.{credentials.region}.{aws_domain(credentials.region)}"
            payload = {"inputText": text}
            if attributes:
                payload["sessionAttributes"] = attributes
        if request_attributes:
            payload["requestAttributes"] = request_attributes
        url = str(session.config.get("base_url") or default_host).rstrip("/") + path
        body = json.dumps(payload, separators=(",", ":"), ensure_ascii=False).encode()
        data = await self._post(credentials, url, body)
        if isinstance(credentials.bot, V2Bot):
            state = data.get("sessionState")
            returned = state.get("sessionAttributes") if isinstance(state, dict) else None
            replies = replies_from_v2(data)
        else:
            returned = data.get("sessionAttributes")
            replies = replies_from_v1(data)
        if returned is not None:
            session.state["session_attributes"] = _string_map(returned)
        if asks_handoff(data, session.config):
            replies.append(Reply(signals=["handoff"]))
        return replies

    async def _post(self, credentials: LexCredentials, url: str, body: bytes) -> dict[str, Any]:
        operation = "Lex RecognizeText" if credentials.api == "v2" else "Lex V1 PostText"
        last: list[httpx.Response] = []

        async def attempt() -> httpx.Response:
            # Signed per attempt: a retry after a backoff gets a fresh date.
            when = datetime.fromtimestamp(self.clock.now(), UTC)
            response = await self.http.post(url, content=body, headers=signed_headers(credentials, url, body, when))
            last[:] = [response]
            return response

        try:
            response = await call_with_retry(
                attempt,
                operation,
                clock=self.clock,
                # A turn moves the session on: not repeated after a 5xx or timeout.
                # 409 ConflictException is another call on the session in progress:
                # refused, so safe to retry with backoff.
                policy=dataclasses.replace(self.retry_policy, idempotent=False, not_processed=frozenset({409})),
                error=BotError,
                credentials_error=BotCredentialsInvalid,
            )
        except BotError as exc:
            raise self._explained(exc, operation, credentials, last[0] if last else None) from None
        try:
            data = response.json()
        except ValueError:
            data = None
        if not isinstance(data, dict):
            raise BotError(f"{operation} answered {response.status_code} with a body that is not a JSON object")
        return data

    @staticmethod
    def _explained(
        exc: BotError, operation: str, credentials: LexCredentials, response: httpx.Response | None
    ) -> BotError:
        detail = str(exc)
        if response is not None and not response.is_success and exc.status_code == response.status_code:
            detail = f"{operation} answered {response.status_code} {_aws_error(response)}"
        error_class = BotCredentialsInvalid if isinstance(exc, BotCredentialsInvalid) else BotError
        if credentials.api == "v1" and error_class is BotError:
            detail = f"{V1_RETIRED} ({detail})"
        return error_class(
            detail,
            retryable=exc.retryable,
            status_code=exc.status_code,
            retry_after=exc.retry_after,
            outcome_unknown=exc.outcome_unknown,
        )
