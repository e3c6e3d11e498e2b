"""A strict fake of the Amazon Lex runtime APIs (V1 PostText, V2 RecognizeText).

Use it in-process::

    fake = FakeLex(clock=clock)
    http = httpx.AsyncClient(transport=httpx.ASGITransport(app=fake.app), base_url=FAKE_BASE_URL)

or on loopback: ``python -m botbridge_lex.testing --port 8091`` (or `serve(host, port)`).

Every request's SigV4 signature is recomputed with botocore from the secret of
its access key id, over the method, raw path, query, signed headers and body.
Refusals use Lex's error shape: the status, an `x-amzn-ErrorType` header and
a ``{"message": ...}`` body. The date-skew window (5 minutes) is measured on
the fake's clock, so tests share one `FakeClock` with the backend.

What a request may carry is read from botocore's service models
(`botbridge_lex.model`): the routes are the operations' ``requestUri``s, and
required and unknown members, types, lengths, patterns and enums of the path
labels and the JSON body are checked against the input shapes; refusals of
those are 400 (`BadRequestException` for V1, `ValidationException` for V2).
The error codes `fail_next` uses per status are the operations' modelled
errors. Every exchange is kept in `exchanges` (as sent and as answered), so
tests can check both sides against the model.

The scripted bot: ``options`` (OPTIONS_TRIGGER) answers a response card /
ImageResponseCard with buttons Billing→billing and Sales→sales; ``picture``
answers a card with an image; ``composite`` answers two messages;
``confirm`` asks to confirm an intent (V2 dialogAction ConfirmIntent, V1
dialogState ConfirmIntent); ``payload`` answers a CustomPayload and ``ssml``
an SSML message; keyword rules (`rules[word] = answer`) answer fixed text;
anything else answers ``echo: <text>``. Answers other than ``confirm`` close
the intent (V2 dialogAction Close). Every answer carries the session
attribute ``turns`` (the count of turns, read from the attributes the client
sent back).
"""

from __future__ import annotations

import argparse
import json
import re
import time
import uuid
from collections import deque
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import cache
from typing import Any
from urllib.parse import unquote

from botocore.auth import SIGV4_TIMESTAMP, SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from botbridge.clock import Clock
from botbridge.fakes import BotFake
from botbridge.signing import secrets_equal
from botbridge_lex.model import error_shape, operation_model, params_from_wire, shape_errors

FAKE_BASE_URL = "http://lex.fake"
REGION = "us-east-1"
ACCESS_KEY_ID = "AKIAFAKELEX000000001"
SECRET_KEY = "fake/lex+secret/key/0123456789abcdefghij"
V1_BOT = {"name": "TestGreeter", "alias": "Testing"}
V2_BOT = {"id": "BOTID12345", "aliasId": "TSTALIASID", "localeId": "en_US"}
OPTIONS_TRIGGER = "options"
OPTIONS = [("Billing", "billing"), ("Sales", "sales")]
MAX_SKEW = 300.0

_AUTH = re.compile(
    r"^AWS4-HMAC-SHA256 Credential=(?P<key>[^/,\s]+)/(?P<date>\d{8})/(?P<region>[^/,\s]+)/(?P<service>[^/,\s]+)"
    r"/(?P<term>[^/,\s]+),\s*SignedHeaders=(?P<headers>[a-z0-9;-]+),\s*Signature=(?P<signature>[0-9a-f]{64})$"
)
_ERROR_NAMESPACE = "http://internal.amazon.com/coral/com.amazonaws.deepsense.runtime.service/"
# Errors every AWS API answers but the Lex operations do not model (V1 declares no 403).
_COMMON_ERRORS = {403: "AccessDeniedException", 503: "ServiceUnavailableException"}
_ALL_METHODS = ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"]
MAX_TEXT = 1024  # Lex's `Text` shape (messages, input text)


@cache
def fail_codes(api: str) -> dict[int, str]:
    """The error code per HTTP status: the operation's modelled errors, else AWS's common ones."""
    codes = dict(_COMMON_ERRORS)
    for shape in operation_model(api).error_shapes:
        codes[shape.metadata["error"]["httpStatusCode"]] = shape.name
    return codes


def fake_credentials(api: str = "v2", *, secret: str = SECRET_KEY, region: str = REGION) -> str:
    """Connector credentials (a JSON string) the fake accepts (with the default secret)."""
    bot = V2_BOT if api == "v2" else V1_BOT
    return json.dumps({"accessKeyId": ACCESS_KEY_ID, "secretKey": secret, "region": region, "bot": bot})


class LexFault(Exception):
    """A refusal in Lex's error shape."""

    def __init__(self, status: int, code: str, message: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status, self.code, self.message, self.headers = status, code, message, headers or {}

    def response(self, api: str | None = None) -> Response:
        headers = {
            "x-amzn-ErrorType": f"{self.code}:{_ERROR_NAMESPACE}",
            "x-amzn-RequestId": str(uuid.uuid4()),
            **self.headers,
        }
        # Some V1 errors (DependencyFailed, BadGateway, LoopDetected) model the text as `Message`.
        shape = error_shape(api, self.code) if api is not None else None
        key = "Message" if shape is not None and "Message" in shape.members else "message"
        return JSONResponse({key: self.message}, status_code=self.status, headers=headers)


@dataclass
class FakeSession:
    api: str
    session_id: str
    bot: str
    turns: int = 0
    attributes: dict[str, str] = field(default_factory=dict)


@dataclass
class Recorded:
    """A request the fake accepted (signature and model checks passed)."""

    api: str
    path: str
    session_id: str
    body: dict[str, Any]
    headers: dict[str, str]


@dataclass
class Exchange:
    """Any request that reached the fake, as sent, and the fake's answer, as answered."""

    api: str | None  # None: no Lex operation at this path
    method: str
    target: str  # the raw path and query, percent-encoding as sent
    headers: dict[str, str]
    body: bytes
    status: int
    response_headers: dict[str, str]
    response_body: bytes


class FakeLex:
    """The fake Lex runtime; `app` is the Starlette app."""

    def __init__(
        self,
        *,
        clock: Clock | None = None,
        region: str = REGION,
        keys: dict[str, str] | None = None,
        v1_bots: dict[str, set[str]] | None = None,
        v2_bots: dict[str, dict[str, set[str]]] | None = None,
    ) -> None:
        self.clock = clock
        self.region = region
        self.keys = dict(keys) if keys is not None else {ACCESS_KEY_ID: SECRET_KEY}
        # V1: bot name -> aliases; V2: bot id -> alias id -> locales
        self.v1_bots = v1_bots if v1_bots is not None else {V1_BOT["name"]: {V1_BOT["alias"]}}
        self.v2_bots = v2_bots if v2_bots is not None else {V2_BOT["id"]: {V2_BOT["aliasId"]: {V2_BOT["localeId"]}}}
        self.rules: dict[str, str] = {}
        self.sessions: dict[str, FakeSession] = {}
        self.requests: list[Recorded] = []
        self.exchanges: list[Exchange] = []
        self.refusals: list[tuple[int, str]] = []
        self._failures: deque[tuple[int, str | None, dict[str, str]]] = deque()
        # The model's requestUri templates are Starlette's path syntax too ({label}).
        # Every method and path is routed, so that every request is kept in `exchanges`.
        self.app = Starlette(
            routes=[
                Route(operation_model("v1").http["requestUri"], self._post_text, methods=_ALL_METHODS),
                Route(operation_model("v2").http["requestUri"], self._recognize_text, methods=_ALL_METHODS),
                Route("/{path:path}", self._unknown_operation, methods=_ALL_METHODS),
            ]
        )

    # --- scripting ---

    def fail_next(self, status: int, code: str | None = None, *, retry_after: float | None = None) -> None:
        """Answer the next signed call with this status (queued; one call each)."""
        headers = {"Retry-After": f"{retry_after:g}"} if retry_after is not None else {}
        self._failures.append((status, code, headers))

    def now(self) -> float:
        return self.clock.now() if self.clock is not None else time.time()

    # --- checks ---

    async def _verify(self, request: Request) -> bytes:
        body = await request.body()
        auth = request.headers.get("authorization")
        if not auth:
            raise LexFault(403, "MissingAuthenticationTokenException", "Missing Authentication Token")
        match = _AUTH.match(auth)
        if not match:
            raise LexFault(
                400,
                "IncompleteSignatureException",
                "Authorization header requires Credential, SignedHeaders, Signature.",
            )
        amz_date = request.headers.get("x-amz-date", "")
        try:
            signed_at = datetime.strptime(amz_date, SIGV4_TIMESTAMP).replace(tzinfo=UTC).timestamp()
        except ValueError:
            raise LexFault(
                400, "IncompleteSignatureException", "Authorization header requires existence of X-Amz-Date."
            ) from None
        now = self.now()
        stamp = datetime.fromtimestamp(now, UTC).strftime(SIGV4_TIMESTAMP)
        if signed_at < now - MAX_SKEW:
            earliest = datetime.fromtimestamp(now - MAX_SKEW, UTC).strftime(SIGV4_TIMESTAMP)
            raise LexFault(
                403,
                "InvalidSignatureException",
                f"Signature expired: {amz_date} is now earlier than {earliest} ({stamp} - 5 min.)",
            )
        if signed_at > now + MAX_SKEW:
            latest = datetime.fromtimestamp(now + MAX_SKEW, UTC).strftime(SIGV4_TIMESTAMP)
            raise LexFault(
                403,
                "InvalidSignatureException",
                f"Signature not yet current: {amz_date} is still later than {latest} ({stamp} + 5 min.)",
            )
        secret = self.keys.get(match["key"])
        if secret is None:
            raise LexFault(403, "UnrecognizedClientException", "The security token included in the request is invalid.")
        if match["date"] != amz_date[:8]:
            raise LexFault(
                403,
                "InvalidSignatureException",
                f"Date in Credential scope does not match YYYYMMDD from ISO-8601 version of date from HTTP: "
                f"'{match['date']}' != '{amz_date[:8]}', from '{amz_date}'.",
            )
        if match["region"] != self.region:
            raise LexFault(
                403,
                "InvalidSignatureException",
                f"Credential should be scoped to a valid region. (got '{match['region']}', expected '{self.region}')",
            )
        if match["service"] != "lex":
            raise LexFault(403, "InvalidSignatureException", "Credential should be scoped to correct service: 'lex'.")
        if match["term"] != "aws4_request":
            raise LexFault(
                403, "InvalidSignatureException", "Credential should be scoped with a valid terminator: 'aws4_request'."
            )
        names = match["headers"].split(";")
        if "host" not in names or "x-amz-date" not in names:
            raise LexFault(403, "InvalidSignatureException", "Signed headers must include host and x-amz-date.")
        missing = [name for name in names if name not in request.headers]
        if missing:
            raise LexFault(403, "InvalidSignatureException", f"Signed header {missing[0]!r} is missing.")
        raw_path = request.scope.get("raw_path") or request.url.path.encode()
        query = request.scope.get("query_string", b"")
        url = f"{request.url.scheme}://{request.headers['host']}{raw_path.decode('latin-1')}"
        if query:
            url += "?" + query.decode("latin-1")
        recomputed = AWSRequest(
            method=request.method, url=url, data=body, headers={name: request.headers[name] for name in names}
        )
        recomputed.context["timestamp"] = amz_date
        signer = SigV4Auth(Credentials(match["key"], secret), "lex", self.region)
        expected = signer.signature(signer.string_to_sign(recomputed, signer.canonical_request(recomputed)), recomputed)
        if not secrets_equal(expected, match["signature"]):
            raise LexFault(
                403,
                "InvalidSignatureException",
                "The request signature we calculated does not match the signature you provided. "
                "Check your AWS Secret Access Key and signing method. Consult the service documentation for details.",
            )
        return body

    @staticmethod
    def _json_body(request: Request, body: bytes, bad: str) -> dict[str, Any]:
        content_type = request.headers.get("content-type", "")
        if content_type.split(";")[0].strip().lower() != "application/json":
            raise LexFault(415, "UnsupportedMediaTypeException", f"Unsupported Content-Type: {content_type!r}")
        try:
            data = json.loads(body)
        except (UnicodeDecodeError, ValueError):
            raise LexFault(400, bad, "Could not parse request body into json.") from None
        if not isinstance(data, dict):
            raise LexFault(400, bad, "Request body must be a JSON object.")
        return data

    def _failure(self, api: str) -> None:
        if self._failures:
            status, code, headers = self._failures.popleft()
            code = code or fail_codes(api).get(status, "ServiceUnavailableException" if status >= 500 else "Error")
            raise LexFault(status, code, f"Scripted failure {status}", headers)

    async def _handle(self, request: Request, api: str | None) -> Response:
        body = await request.body()
        response: Response
        try:
            if api is None or request.method != operation_model(api).http["method"]:
                raise LexFault(404, "UnknownOperationException", f"No operation at {request.method} {request.url.path}")
            response = await self._turn(request, api)
        except LexFault as fault:
            self.refusals.append((fault.status, fault.code))
            response = fault.response(api)
        raw_path = request.scope.get("raw_path") or request.url.path.encode()
        query = request.scope.get("query_string", b"")
        target = raw_path.decode("latin-1") + ("?" + query.decode("latin-1") if query else "")
        self.exchanges.append(
            Exchange(
                api=api,
                method=request.method,
                target=target,
                headers=dict(request.headers),
                body=body,
                status=response.status_code,
                response_headers=dict(response.headers),
                response_body=bytes(response.body),
            )
        )
        return response

    async def _post_text(self, request: Request) -> Response:
        return await self._handle(request, "v1")

    async def _recognize_text(self, request: Request) -> Response:
        return await self._handle(request, "v2")

    async def _unknown_operation(self, request: Request) -> Response:
        return await self._handle(request, None)

    # --- the turn ---

    async def _turn(self, request: Request, api: str) -> Response:
        body = await self._verify(request)
        bad = fail_codes(api)[400]
        data = self._json_body(request, body, bad)
        shape = operation_model(api).input_shape
        params, errors = params_from_wire(shape, labels=request.path_params, headers=request.headers, data=data)
        errors += shape_errors(params, shape)
        if errors:
            count = f"{len(errors)} validation error{'s' if len(errors) > 1 else ''}"
            raise LexFault(400, bad, f"{count} detected: {'; '.join(errors)}")
        if api == "v1":
            bot, alias = params["botName"], params["botAlias"]
            if bot not in self.v1_bots or alias not in self.v1_bots[bot]:
                raise LexFault(404, "NotFoundException", "The resource (bot or alias) you are looking for is not found")
            session_id, text = params["userId"], params["inputText"]
            sent_attributes = dict(params.get("sessionAttributes") or {})
            bot_key = f"{bot}/{alias}"
        else:
            bot, alias, locale = params["botId"], params["botAliasId"], params["localeId"]
            aliases = self.v2_bots.get(bot)
            if aliases is None or alias not in aliases or locale not in aliases[alias]:
                raise LexFault(404, "ResourceNotFoundException", "Could not find the bot, alias or locale.")
            session_id, text = params["sessionId"], params["text"]
            sent_attributes = dict((params.get("sessionState") or {}).get("sessionAttributes") or {})
            bot_key = f"{bot}/{alias}/{locale}"
        self.requests.append(Recorded(api, unquote(request.url.path), session_id, data, dict(request.headers)))
        self._failure(api)

        session = self.sessions.setdefault(session_id, FakeSession(api=api, session_id=session_id, bot=bot_key))
        attributes = dict(sent_attributes)
        if api == "v2" and "sessionState" not in data:
            attributes = dict(session.attributes)  # V2 keeps the session on the server
        attributes["turns"] = str(int(attributes.get("turns", "0")) + 1 if attributes.get("turns", "").isdigit() else 1)
        session.turns += 1
        session.attributes = attributes
        answer = self._script(text)
        return JSONResponse(
            self._v1_answer(answer, attributes) if api == "v1" else self._v2_answer(answer, attributes, session_id)
        )

    def _script(self, text: str) -> dict[str, Any]:
        """The answer to `text`: an intent, messages as (contentType, content), maybe a card."""
        word = text.strip().casefold()
        if word == OPTIONS_TRIGGER:
            return {
                "intent": "Options",
                "messages": [("PlainText", "What can we help you with?")],
                "card": {"title": "Choose a topic", "buttons": OPTIONS},
            }
        if word == "picture":
            return {
                "intent": "Picture",
                "messages": [("PlainText", "Here it is.")],
                "card": {
                    "title": "Our shop",
                    "subtitle": "Open 9-5",
                    "imageUrl": "https://example.com/shop.png",
                    "buttons": [],
                },
            }
        if word == "composite":
            return {"intent": "Composite", "messages": [("PlainText", "First part."), ("PlainText", "Second part.")]}
        if word == "confirm":
            return {"intent": "BookTable", "messages": [("PlainText", "Book it for Friday?")], "confirm": True}
        if word == "payload":
            return {"intent": "Payload", "messages": [("CustomPayload", json.dumps({"text": "From the payload"}))]}
        if word == "ssml":
            return {"intent": "Speech", "messages": [("SSML", '<speak>Hello <break time="1s"/>there</speak>')]}
        if word in self.rules:
            return {"intent": "Rule", "messages": [("PlainText", self.rules[word])]}
        # A real bot's messages are at most 1024 characters (the models' `Text` shape), so is the echo.
        return {"intent": "Echo", "messages": [("PlainText", f"echo: {text}"[:MAX_TEXT])]}

    @staticmethod
    def _v1_answer(answer: dict[str, Any], attributes: dict[str, str]) -> dict[str, Any]:
        messages: list[tuple[str, str]] = answer["messages"]
        data: dict[str, Any] = {
            "intentName": answer["intent"],
            "nluIntentConfidence": {"score": 1.0},
            "slots": {},
            "sessionAttributes": attributes,
            "dialogState": "ConfirmIntent" if answer.get("confirm") else "Fulfilled",
            "botVersion": "$LATEST",
            "sessionId": f"{datetime.now(UTC).strftime('%Y-%m-%dT%H:%M:%S.%f')[:-3]}Z-{uuid.uuid4().hex[:8]}",
        }
        if len(messages) > 1:
            group = {
                "messages": [
                    {"type": kind, "group": i, "value": content} for i, (kind, content) in enumerate(messages, 1)
                ]
            }
            data["message"], data["messageFormat"] = json.dumps(group), "Composite"
        else:
            ((kind, content),) = messages
            data["message"], data["messageFormat"] = content[:MAX_TEXT], kind
        card = answer.get("card")
        if card:
            attachment: dict[str, Any] = {
                "title": card["title"],
                "buttons": [{"text": label, "value": value} for label, value in card["buttons"]],
            }
            if card.get("subtitle"):
                attachment["subTitle"] = card["subtitle"]
            if card.get("imageUrl"):
                attachment["imageUrl"] = card["imageUrl"]
            data["responseCard"] = {
                "version": "1",
                "contentType": "application/vnd.amazonaws.card.generic",
                "genericAttachments": [attachment],
            }
        return data

    @staticmethod
    def _v2_answer(answer: dict[str, Any], attributes: dict[str, str], session_id: str) -> dict[str, Any]:
        messages: list[dict[str, Any]] = [
            {"content": content[:MAX_TEXT], "contentType": kind} for kind, content in answer["messages"]
        ]
        card = answer.get("card")
        if card:
            image_card: dict[str, Any] = {
                "title": card["title"],
                "buttons": [{"text": label, "value": value} for label, value in card["buttons"]],
            }
            if card.get("subtitle"):
                image_card["subtitle"] = card["subtitle"]
            if card.get("imageUrl"):
                image_card["imageUrl"] = card["imageUrl"]
            messages.append({"contentType": "ImageResponseCard", "imageResponseCard": image_card})
        confirm = bool(answer.get("confirm"))
        intent = {
            "name": answer["intent"],
            "slots": {},
            "state": "InProgress" if confirm else "Fulfilled",
            "confirmationState": "None",
        }
        return {
            "messages": messages,
            "sessionState": {
                "dialogAction": {"type": "ConfirmIntent" if confirm else "Close"},
                "intent": intent,
                "sessionAttributes": attributes,
                "originatingRequestId": str(uuid.uuid4()),
            },
            "interpretations": [{"nluConfidence": {"score": 1.0}, "intent": intent, "interpretationSource": "Lex"}],
            "sessionId": session_id,
        }


class LexScript(BotFake):
    """The fake as the demo and end-to-end tests drive it: a scripted Lex V2 bot."""

    type = "AMAZON_LEX"
    options_trigger = OPTIONS_TRIGGER

    def __init__(self, fake: FakeLex | None = None) -> None:
        self.fake = fake or FakeLex()
        self.app = self.fake.app

    def connector_body(self, sender_id: str, base_url: str) -> dict[str, Any]:
        credentials = {"accessKeyId": ACCESS_KEY_ID, "secretKey": SECRET_KEY, "region": REGION, "bot": V2_BOT}
        return {
            "type": self.type,
            "sender_id": sender_id,
            "credentials": json.dumps(credentials),
            "config": {"base_url": base_url},
        }

    def sessions(self) -> set[str]:
        return set(self.fake.sessions)


def serve(host: str = "127.0.0.1", port: int = 8091) -> None:
    """Run the fake on loopback (real time), accepting `fake_credentials()`."""
    import uvicorn

    uvicorn.run(FakeLex().app, host=host, port=port, log_level="warning")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="A strict fake of the Amazon Lex runtime (V1 and V2).")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8091)
    args = parser.parse_args(argv)
    serve(args.host, args.port)


if __name__ == "__main__":
    main()
