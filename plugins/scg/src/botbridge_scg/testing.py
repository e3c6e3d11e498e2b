"""A strict fake of Syniverse SCG and its Event Subscription Service (ESS).

The API side (`FakeScg.app`, a Starlette app) checks the bearer token, the
paths and the message request fields the way SCG documents them, answers
with SCG's error shape (`{"error_code": "SCG_ERROR_…", "error_description"}`)
and records every accepted message.

The ESS side plays the phone and the carrier: it builds `mo_message_received`
and `message_state_change` events in the exact ESS format and POSTs them to
a webhook URL with ESS's headers and the delivery configuration's auth,
retrying the same `event-id` with `attempt + 1` on non-2xx answers. Modes:
`duplicate` (every event is delivered twice), `out_of_order` (lifecycles are
delivered newest first) and `whitelisted = False` (nothing is delivered, as
SCG does until support whitelists the webhook domain).

Use it in-process (`httpx.ASGITransport(app=fake.app)`) or on a port:
`python -m botbridge_scg.testing --port 8090 --token my-token`.
"""

from __future__ import annotations

import argparse
import base64
import json
import re
import secrets
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import httpx
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from botbridge.fakes import ChannelFake

__all__ = [
    "EssAuth",
    "FakeScg",
    "delivered",
    "main",
    "new_scg_id",
    "serve",
]

API = "/scg-external-api/api/v1"
TOPIC = "SCG-Message"

FROM_PATTERN = re.compile(r"^(channel|sender_id):[A-Za-z0-9_-]+$")
MDN = re.compile(r"^\+[1-9]\d{6,14}$")
OTT = re.compile(r"^[a-z]{1,12}:\+?\d{6,15}(@\d{3,15})?$")
RESOURCE_ID = re.compile(r"^[A-Za-z0-9_-]{22}$")
URL = re.compile(r"^https?://[^\s]+$")

# Message_Request fields SCG documents; anything else is 40020.
REQUEST_FIELDS = frozenset(
    {
        "from", "to", "body", "media_urls", "attachments", "subject", "external_id", "verify_number",
        "consent_requirement", "failover", "expiry_time", "scheduled_delivery_time",
        "scheduled_delivery_time_zone", "contact_delivery_address_priority", "test_message_flag",
        "pause_before_transmit", "pause_expiry_time", "translate", "src_language", "dst_language",
        "content_type", "options", "body_extensions", "criteria", "application_id", "group_mms",
    }
)  # fmt: skip
MESSAGE_FIELDS = (REQUEST_FIELDS - {"group_mms"}) | {
    "verify_sms",
    "sender_id_sort_criteria",
    "price_threshold",
    "conversation_id",
    "campaign_id",
}
MAX_MEDIA_URLS = 10
FAILURE_REASONS = {
    "1002": "Invalid recipient address or format",
    "1005": "No subscriber consent",
    "1007": "Expired before delivery",
    "1009": "Delivery failure",
}


def new_scg_id() -> str:
    """A 22-character URL-safe id, like SCG's."""
    return secrets.token_urlsafe(16)


def iso_now(now: float | None = None) -> str:
    moment = datetime.fromtimestamp(time.time() if now is None else now, UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


def scg_error(status: int, code: str, description: str) -> JSONResponse:
    return JSONResponse({"error_code": f"SCG_ERROR_{code}", "error_description": description}, status_code=status)


class ScgReject(Exception):
    def __init__(self, status: int, code: str, description: str) -> None:
        super().__init__(description)
        self.response = scg_error(status, code, description)


# What a delivery configuration may use to authenticate to the customer's
# webhook (Syniverse KB "ESS good practices": none, Basic, OAuth 2.0, mTLS;
# there is no static bearer). mTLS is out of this fake's reach.
DELIVERY_AUTH_TYPES = ("NONE", "BASIC", "OAUTH2")


def _basic_header(user: str, password: str) -> dict[str, str]:
    pair = base64.b64encode(f"{user}:{password}".encode()).decode()
    return {"Authorization": f"Basic {pair}"}


@dataclass(frozen=True)
class EssAuth:
    """How a delivery configuration authenticates to the customer's webhook.

    `bearer` presents a fixed token (what an OAuth 2.0 configuration sends
    once it holds one; tests use it to present forged or stale tokens).
    `oauth2` first fetches a token from the customer's `token_url` with the
    client credentials grant, as ESS does, and presents that.
    """

    scheme: str = "bearer"  # "bearer", "basic", "oauth2" or "none"
    secret: str = ""
    username: str = "syniverse"
    token_url: str = ""

    def header(self) -> dict[str, str]:
        if self.scheme == "bearer":
            return {"Authorization": f"Bearer {self.secret}"}
        if self.scheme == "basic":
            return _basic_header(self.username, self.secret)
        return {}

    async def headers(self, http: httpx.AsyncClient) -> dict[str, str]:
        if self.scheme != "oauth2":
            return self.header()
        response = await http.post(
            self.token_url,
            content=b"grant_type=client_credentials",
            headers={"content-type": "application/x-www-form-urlencoded", **_basic_header(self.username, self.secret)},
        )
        if response.status_code != 200:
            return {}  # ESS delivers nothing it cannot authenticate; the webhook answers 401
        return {"Authorization": f"Bearer {response.json()['access_token']}"}

    @classmethod
    def bearer(cls, token: str) -> EssAuth:
        return cls("bearer", token)

    @classmethod
    def basic(cls, secret: str, username: str = "syniverse") -> EssAuth:
        return cls("basic", secret, username)

    @classmethod
    def oauth2(cls, token_url: str, client_id: str, client_secret: str) -> EssAuth:
        return cls("oauth2", client_secret, client_id, token_url)


@dataclass
class Delivery:
    """One attempt of the ESS emitter."""

    url: str
    event_id: str
    attempt: int
    evt_tp: str
    status: int | None  # None: transport error / timeout


def delivered(deliveries: Iterable[Delivery]) -> list[Delivery]:
    return [d for d in deliveries if d.status is not None and 200 <= d.status < 300]


@dataclass
class FakeScg:
    """The fake SCG API and ESS emitter. Mutate the fields to set up a test."""

    tokens: set[str] = field(default_factory=lambda: {"scg-test-token-0001"})
    expired_tokens: set[str] = field(default_factory=set)
    max_recipients: int = 100
    # Queue of (status, error_code, retry_after) answers for the next sends.
    failures: list[tuple[int, str, str | None]] = field(default_factory=list)
    # The next N accepted message requests are answered 502: accepted, the answer lost.
    lost_answers: int = 0
    # ESS modes
    duplicate: bool = False
    out_of_order: bool = False
    whitelisted: bool = True
    max_attempts: int = 3
    now: float | None = None  # fixed event time (epoch seconds); None = wall clock

    def __post_init__(self) -> None:
        self.sent: list[dict[str, Any]] = []
        self.message_requests: dict[str, dict[str, Any]] = {}
        self.messages: dict[str, dict[str, Any]] = {}
        self.delivery_configurations: dict[str, dict[str, Any]] = {}
        self.attachments: dict[str, tuple[str, bytes]] = {}
        self.deliveries: list[Delivery] = []
        self.requests_seen: list[dict[str, Any]] = []
        self.app = self._build_app()

    # --- the API ---------------------------------------------------------

    def _build_app(self) -> Starlette:
        routes = [
            Route(API + "/messaging/message_requests", self._create_request, methods=["POST"]),
            Route(API + "/messaging/message_requests/", self._create_request, methods=["POST"]),
            Route(API + "/messaging/message_requests/{id}", self._get_request, methods=["GET"]),
            Route(API + "/messaging/message_requests/{id}/messages", self._request_messages, methods=["GET"]),
            Route(API + "/messaging/messages", self._create_message, methods=["POST"]),
            Route(API + "/messaging/messages/", self._create_message, methods=["POST"]),
            Route(API + "/messaging/messages", self._list_messages, methods=["GET"]),
            Route(API + "/messaging/messages/{id}", self._get_message, methods=["GET"]),
            Route(API + "/messaging/attachments/{id}", self._get_attachment, methods=["GET"]),
            Route(API + "/messaging/attachments/{id}/content", self._attachment_content, methods=["GET"]),
            Route("/ess/v1/delivery-configurations", self._create_delivery_configuration, methods=["POST"]),
            Route("/ess/v1/delivery-configurations/{id}", self._get_delivery_configuration, methods=["GET"]),
            Route("/ess/v1/delivery-configurations/{id}", self._delete_delivery_configuration, methods=["DELETE"]),
        ]
        return Starlette(routes=routes, exception_handlers={ScgReject: _reject_handler})

    def _authorize(self, request: Request) -> str:
        self.requests_seen.append(
            {"method": request.method, "path": request.url.path, "authorization": request.headers.get("authorization")}
        )
        scheme, _, token = request.headers.get("authorization", "").partition(" ")
        token = token.strip()
        if scheme.lower() == "bearer" and token in self.expired_tokens:
            raise ScgReject(404, "4046", "Access token expired")
        if scheme.lower() != "bearer" or token not in self.tokens:
            raise ScgReject(401, "4010", "Unauthorized: no access to the resource")
        return token

    async def _json_object(self, request: Request) -> dict[str, Any]:
        raw = await request.body()
        try:
            data = json.loads(raw)
        except (UnicodeDecodeError, ValueError):
            raise ScgReject(400, "40025", "Invalid payload: the body is not JSON") from None
        if not isinstance(data, dict):
            raise ScgReject(400, "40025", "Invalid payload: the body must be a JSON object")
        return data

    def _check_common(self, data: dict[str, Any], allowed: frozenset[str]) -> None:
        unknown = sorted(set(data) - allowed)
        if unknown:
            raise ScgReject(400, "40020", f"Unknown option: {unknown[0]}")
        sender = data.get("from")
        if sender is None:
            raise ScgReject(400, "4001", "Missing mandatory parameter: from")
        if not isinstance(sender, str):
            raise ScgReject(400, "4002", "Invalid parameter type: from")
        # `channel:<id>` or `sender_id:<id>` (Swagger `Message_Request.from`); a bare
        # address is refused, as SCG does when it maps to no single sender id.
        if not FROM_PATTERN.match(sender):
            raise ScgReject(400, "40018", "Invalid sender")
        body = data.get("body")
        if body is not None and not isinstance(body, str):
            raise ScgReject(400, "4002", "Invalid parameter type: body")
        media = data.get("media_urls")
        attachments = data.get("attachments")
        if media is not None and attachments is not None:
            raise ScgReject(400, "40010", "media_urls and attachments cannot be combined")
        for name, value in (("media_urls", media), ("attachments", attachments)):
            if value is not None and (not isinstance(value, list) or not all(isinstance(v, str) for v in value)):
                raise ScgReject(400, "4002", f"Invalid parameter type: {name}")
        if media is not None:
            if len(media) > MAX_MEDIA_URLS:
                raise ScgReject(400, "4009", "Too many media URLs")
            if not all(URL.match(url) for url in media):
                raise ScgReject(400, "4004", "Invalid parameter: media_urls")
        if not body and not media and not attachments:
            raise ScgReject(400, "4001", "Missing mandatory parameter: body or media_urls")
        external_id = data.get("external_id")
        if external_id is not None and not isinstance(external_id, str):
            raise ScgReject(400, "4002", "Invalid parameter type: external_id")

    def _check_recipient(self, value: Any) -> str:
        if not isinstance(value, str) or not (MDN.match(value) or OTT.match(value) or RESOURCE_ID.match(value)):
            raise ScgReject(400, "40024", "Invalid recipient")
        return value

    def _injected_failure(self) -> Response | None:
        if not self.failures:
            return None
        status, code, retry_after = self.failures.pop(0)
        response = scg_error(status, code, "Injected failure")
        if retry_after is not None:
            response.headers["retry-after"] = retry_after
        return response

    async def _create_request(self, request: Request) -> Response:
        token = self._authorize(request)
        failure = self._injected_failure()
        if failure is not None:
            return failure
        data = await self._json_object(request)
        self._check_common(data, REQUEST_FIELDS)
        recipients = data.get("to")
        if recipients is None:
            raise ScgReject(400, "4001", "Missing mandatory parameter: to")
        if not isinstance(recipients, list) or not recipients:
            raise ScgReject(400, "40024", "Invalid recipient: to must be a non-empty array")
        if len(recipients) > self.max_recipients:
            raise ScgReject(400, "40015", "Too many recipients")
        recipients = [self._check_recipient(value) for value in recipients]
        request_id = new_scg_id()
        message_ids = [self._store_message(data, to, request_id) for to in recipients]
        self.message_requests[request_id] = {
            "id": request_id,
            "from": data["from"],
            "to": recipients,
            "body": data.get("body"),
            "media_urls": data.get("media_urls"),
            "external_id": data.get("external_id"),
            "state": "COMPLETED",
            "recipient_count": len(recipients),
            "message_ids": message_ids,
        }
        self._record(token, data, recipients, request_id, message_ids)
        if self.lost_answers > 0:
            self.lost_answers -= 1
            return scg_error(502, "5002", "Bad gateway (the request was accepted)")
        return JSONResponse({"id": request_id})

    async def _create_message(self, request: Request) -> Response:
        token = self._authorize(request)
        failure = self._injected_failure()
        if failure is not None:
            return failure
        data = await self._json_object(request)
        self._check_common(data, MESSAGE_FIELDS)
        recipient = data.get("to")
        if recipient is None:
            raise ScgReject(400, "4001", "Missing mandatory parameter: to")
        if not isinstance(recipient, str):
            raise ScgReject(400, "4002", "Invalid parameter type: to must be a string")
        self._check_recipient(recipient)
        message_id = self._store_message(data, recipient, None)
        self._record(token, data, [recipient], None, [message_id])
        return JSONResponse({"id": message_id})

    def _store_message(self, data: dict[str, Any], to: str, request_id: str | None) -> str:
        message_id = new_scg_id()
        body = data.get("body") or ""
        self.messages[message_id] = {
            "id": message_id,
            "message_request_id": request_id,
            "external_id": data.get("external_id"),
            "direction": "MT",
            "from_address": data["from"],
            "to_address": to,
            "state": "CREATED",
            "failure_code": None,
            "failure_details": None,
            "body": body,
            "media_urls": data.get("media_urls") or [],
            "fragment_count": max(1, -(-len(body) // 153)) if len(body) > 160 else 1,
            "created_date": int((self.now or time.time()) * 1000),
        }
        return message_id

    def _record(
        self,
        token: str,
        data: dict[str, Any],
        recipients: list[str],
        request_id: str | None,
        message_ids: list[str],
    ) -> None:
        self.sent.append(
            {
                "id": request_id or message_ids[0],
                "message_request_id": request_id,
                "message_ids": message_ids,
                "to": recipients[0],
                "recipients": recipients,
                "text": data.get("body") or "",
                "from": data["from"],
                "media_urls": data.get("media_urls") or [],
                "external_id": data.get("external_id"),
                "token": token,
                "payload": data,
            }
        )

    async def _get_request(self, request: Request) -> Response:
        self._authorize(request)
        found = self.message_requests.get(request.path_params["id"])
        if found is None:
            raise ScgReject(404, "4040", "Message request not found")
        public = {k: v for k, v in found.items() if k != "message_ids"}
        return JSONResponse(public)

    async def _request_messages(self, request: Request) -> Response:
        self._authorize(request)
        found = self.message_requests.get(request.path_params["id"])
        if found is None:
            raise ScgReject(404, "4040", "Message request not found")
        return JSONResponse({"list": [self.messages[i] for i in found["message_ids"]]})

    async def _list_messages(self, request: Request) -> Response:
        """SCG Swagger `GET /messaging/messages`: filters incl. `external_id`, answered as `{"list": [...]}`."""
        self._authorize(request)
        filters = {
            k: v
            for k, v in request.query_params.items()
            if k in ("external_id", "message_request_id", "state", "direction")
        }
        unknown = set(request.query_params) - set(filters) - {"limit", "offset"}
        if unknown:
            raise ScgReject(400, "40020", f"Unknown option: {sorted(unknown)[0]}")
        found = [m for m in self.messages.values() if all(str(m.get(k)) == v for k, v in filters.items())]
        return JSONResponse({"list": found})

    async def _get_message(self, request: Request) -> Response:
        self._authorize(request)
        found = self.messages.get(request.path_params["id"])
        if found is None:
            raise ScgReject(404, "4041", "Message not found")
        return JSONResponse(found)

    async def _get_attachment(self, request: Request) -> Response:
        """Metadata only (SCG Swagger "Attachments"); the bytes are at `…/content`."""
        self._authorize(request)
        found = self.attachments.get(request.path_params["id"])
        if found is None:
            raise ScgReject(404, "4040", "Attachment not found")
        content_type, content = found
        return JSONResponse(
            {"id": request.path_params["id"], "type": content_type, "size": len(content), "state": "UPLOADED"}
        )

    async def _attachment_content(self, request: Request) -> Response:
        self._authorize(request)
        found = self.attachments.get(request.path_params["id"])
        if found is None:
            raise ScgReject(404, "4040", "Attachment not found")
        return Response(found[1], media_type=found[0])

    def add_attachment(self, content: bytes, content_type: str = "image/jpeg") -> str:
        """An attachment a phone sent (to reference in `mo_event(attachment_ids=…)`)."""
        attachment_id = new_scg_id()
        self.attachments[attachment_id] = (content_type, content)
        return attachment_id

    @staticmethod
    def _check_delivery_auth(data: dict[str, Any]) -> None:
        auth = data.get("auth") or {"type": "NONE"}
        kind = str(auth.get("type", "")).upper() if isinstance(auth, dict) else ""
        if kind not in DELIVERY_AUTH_TYPES:
            raise ScgReject(400, "4004", "Invalid parameter: auth.type (NONE, BASIC or OAUTH2)")
        if kind == "OAUTH2" and not all(isinstance(auth.get(k), str) and auth[k] for k in ("token_url", "client_id")):
            raise ScgReject(400, "4001", "Missing mandatory parameter: auth.token_url and auth.client_id")

    async def _create_delivery_configuration(self, request: Request) -> Response:
        self._authorize(request)
        data = await self._json_object(request)
        self._check_delivery_auth(data)
        for name in ("del-cfg-nm", "addr"):
            if not isinstance(data.get(name), str) or not data[name]:
                raise ScgReject(400, "4001", f"Missing mandatory parameter: {name}")
        if data.get("del-prtcl-cd") != "REST":
            raise ScgReject(400, "4004", "Invalid parameter: del-prtcl-cd")
        if data.get("del-fmt-cd") not in ("JSON", "XML"):
            raise ScgReject(400, "4004", "Invalid parameter: del-fmt-cd")
        if not URL.match(data["addr"]):
            raise ScgReject(400, "4004", "Invalid parameter: addr")
        config_id = new_scg_id()
        self.delivery_configurations[config_id] = {**data, "id": config_id}
        return JSONResponse({"id": config_id}, status_code=201)

    async def _get_delivery_configuration(self, request: Request) -> Response:
        self._authorize(request)
        found = self.delivery_configurations.get(request.path_params["id"])
        if found is None:
            raise ScgReject(404, "4040", "Delivery configuration not found")
        return JSONResponse(found)

    async def _delete_delivery_configuration(self, request: Request) -> Response:
        self._authorize(request)
        if self.delivery_configurations.pop(request.path_params["id"], None) is None:
            raise ScgReject(404, "4040", "Delivery configuration not found")
        return Response(status_code=204)

    def add_delivery_configuration(self, description: dict[str, Any]) -> str:
        """Register a delivery configuration as an operator would in SCG's console."""
        self._check_delivery_auth(description)
        config_id = new_scg_id()
        self.delivery_configurations[config_id] = {**description, "id": config_id}
        return config_id

    def target(self, config_id: str) -> tuple[str, EssAuth]:
        """(addr, auth) of a registered delivery configuration."""
        config = self.delivery_configurations[config_id]
        auth = config.get("auth") or {}
        kind = str(auth.get("type", "")).lower()
        if kind == "basic":
            return config["addr"], EssAuth.basic(auth.get("password", ""), auth.get("username", "syniverse"))
        if kind == "oauth2":
            return config["addr"], EssAuth.oauth2(auth["token_url"], auth["client_id"], auth.get("client_secret", ""))
        return config["addr"], EssAuth("none")

    # --- ESS events --------------------------------------------------------

    def envelope(self, evt_tp: str, fields: dict[str, Any], *, event_id: str | None = None) -> dict[str, Any]:
        return {
            "topic": TOPIC,
            "attempt": 1,
            "event": {"fld-val-list": fields, "evt-tp": evt_tp, "timestamp": iso_now(self.now)},
            "event-id": event_id or new_scg_id(),
        }

    def mo_event(
        self,
        text: str,
        contact: str,
        to: str = "66000",
        *,
        message_id: str | None = None,
        media_urls: Sequence[str] = (),
        attachment_ids: Sequence[str] = (),
        extra: dict[str, Any] | None = None,
    ) -> dict[str, Any]:
        """A `mo_message_received` event as ESS sends it (documented sample's field set)."""
        fields: dict[str, Any] = {
            "sender_id_alias": "fake-alias",
            "mo_price": 0.005,
            "company-id": 1234,
            "sender_id_id": "Fy4db1bd4RE9A665JjY4v6",
            "message_body": text[:1530],
            "message_id": message_id or new_scg_id(),
            "to_address": to,
            "has_attachment": bool(attachment_ids),
            "fragments_count": 1,
            "from_address": contact,
            "application_id": 304,
            # extra keys seen in live traffic: receivers must ignore them
            "country": "US",
            "carrier_id": "1234",
            "carrier_name": "Fake Carrier",
        }
        if len(text) > 1530:
            fields["message_body_truncated"] = True
        if media_urls:
            fields["media_urls"] = list(media_urls)
        if attachment_ids:
            fields["attachment_ids"] = ",".join(attachment_ids)
        fields.update(extra or {})
        return self.envelope("mo_message_received", fields)

    def state_event(
        self,
        message_request_id: str,
        new_state: str,
        *,
        previous_state: str | None = None,
        reason_code: str | None = None,
        reason_description: str | None = None,
        request_level: bool = False,
        extra: dict[str, Any] | None = None,
    ) -> dict[str, Any]:
        """A `message_state_change` (or `message_request_state_change`) event.

        For a request this fake accepted, the ids and addresses are the
        recorded ones; for any other id the event is built as given.
        """
        stored = self.message_requests.get(message_request_id)
        message = self.messages[stored["message_ids"][0]] if stored else None
        if reason_code is None:
            reason_code = "1009" if new_state in ("FAILED", "EXPIRED") else "200"
        if reason_description is None:
            reason_description = FAILURE_REASONS.get(reason_code, "SUCCESS" if reason_code == "200" else "Failure")
        fields: dict[str, Any] = {
            "previous_state": previous_state or (message["state"] if message else "CREATED"),
            "new_state": new_state,
            "message_request_id": message_request_id,
            "message_id": message["id"] if message else message_request_id,
            "to_address": _report_address(message["to_address"]) if message else "+14085551212",
            "from_address": message["from_address"] if message else "28776",
            "has_attachment": False,
            "reason_code": reason_code,
            "reason_description": reason_description,
            "application_id": 1234,
            "sender_id_alias": "28776",
            "company-id": 1063,
            "sender_id_id": "Vk0XyVo8AkoSbScfERWwc4",
            "external_message_request_id": (message or {}).get("external_id") or "",
            "fragments_count": (message or {}).get("fragment_count", 1),
            "mt_price": "0.0075",  # a string, as seen in real traffic
        }
        fields.update(extra or {})
        if message is not None:
            message["state"] = new_state
            if new_state in ("FAILED", "EXPIRED"):
                message["failure_code"] = "INVALID_RECIPIENT" if reason_code == "1002" else "OTHER"
                message["failure_details"] = reason_description
        kind = "message_request_state_change" if request_level else "message_state_change"
        return self.envelope(kind, fields)

    @staticmethod
    def encode(event: dict[str, Any]) -> bytes:
        return json.dumps(event, separators=(",", ":")).encode()

    def headers(self, event: dict[str, Any], auth: EssAuth | None) -> dict[str, str]:
        """ESS's headers, with the auth of a fixed-credential configuration."""
        fields = event["event"]["fld-val-list"]
        key_address = fields.get("from_address") if event["event"]["evt-tp"] == "mo_message_received" else None
        key_address = key_address or fields.get("to_address") or ""
        headers = {
            "Content-Type": "application/json; charset=UTF-8",
            "X-ESS-EVENT-KEY": f"{key_address},",
            "X-ESS-EVENT-TIMESTAMP": event["event"]["timestamp"],
        }
        headers.update((auth or EssAuth("none")).header())
        return headers

    async def deliver(
        self,
        url: str,
        event: dict[str, Any],
        auth: EssAuth | None,
        *,
        client: httpx.AsyncClient | None = None,
    ) -> list[Delivery]:
        """POST one event like ESS: retried with attempt+1 on non-2xx, twice in duplicate mode."""
        if not self.whitelisted:
            return []
        owned = client is None
        http = client or httpx.AsyncClient(timeout=10.0)
        attempts: list[Delivery] = []
        try:
            for _ in range(2 if self.duplicate else 1):
                attempts += await self._deliver_once(http, url, dict(event), auth)
        finally:
            if owned:
                await http.aclose()
        self.deliveries += attempts
        return attempts

    async def _deliver_once(
        self, http: httpx.AsyncClient, url: str, event: dict[str, Any], auth: EssAuth | None
    ) -> list[Delivery]:
        attempts: list[Delivery] = []
        for attempt in range(1, self.max_attempts + 1):
            event["attempt"] = attempt
            try:
                headers = self.headers(event, None)
                headers.update(await (auth or EssAuth("none")).headers(http))
                response = await http.post(url, content=self.encode(event), headers=headers)
                status: int | None = response.status_code
            except httpx.HTTPError:
                status = None
            attempts.append(Delivery(url, event["event-id"], attempt, event["event"]["evt-tp"], status))
            if status is not None and 200 <= status < 300:
                break
        return attempts

    async def emit_inbound(
        self,
        url: str,
        *,
        text: str,
        contact: str,
        to: str = "66000",
        auth: EssAuth | None = None,
        client: httpx.AsyncClient | None = None,
        **kwargs: Any,
    ) -> list[Delivery]:
        """The phone sends an MO: build the event and deliver it."""
        event = self.mo_event(text, contact, to, **kwargs)
        return await self.deliver(url, event, auth, client=client)

    async def emit_report(
        self,
        url: str,
        message_request_id: str,
        new_state: str,
        *,
        auth: EssAuth | None = None,
        client: httpx.AsyncClient | None = None,
        **kwargs: Any,
    ) -> list[Delivery]:
        event = self.state_event(message_request_id, new_state, **kwargs)
        return await self.deliver(url, event, auth, client=client)

    async def emit_lifecycle(
        self,
        url: str,
        message_request_id: str,
        states: Sequence[str] = ("SENT", "DELIVERED"),
        *,
        auth: EssAuth | None = None,
        client: httpx.AsyncClient | None = None,
    ) -> list[Delivery]:
        """The carrier's receipts for a sent message, in order (or reversed in out-of-order mode)."""
        events = []
        previous = "QUEUED"
        for state in states:
            events.append(self.state_event(message_request_id, state, previous_state=previous))
            previous = state
        if self.out_of_order:
            events.reverse()
        attempts: list[Delivery] = []
        for event in events:
            attempts += await self.deliver(url, event, auth, client=client)
        return attempts


def _report_address(to: str) -> str:
    # WhatsApp delivery reports carry `wa:+1…@1…`, not the `wa:+1…` sent to [OBS].
    return f"{to}@15550000000" if to.startswith("wa:") else to


async def _reject_handler(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, ScgReject)
    return exc.response


class ScgPhone(ChannelFake):
    """The fake as the demo and end-to-end tests drive it: a phone behind SCG."""

    name = "scg"
    token = "scg-test-token-0001"
    secret = "scg-demo-delivery-secret"

    def __init__(self, fake: FakeScg | None = None) -> None:
        self.fake = fake or FakeScg()
        self.app = self.fake.app

    def sender_body(self, base_url: str) -> dict[str, Any]:
        return {
            "channel": "scg",
            "address": "66000",
            "credentials": self.token,
            "webhook_secret": self.secret,
            "config": {"base_url": base_url, "from": "channel:demoChannel01"},
        }

    async def phone_says(self, webhook_url: str, text: str, contact: str) -> int | None:
        deliveries = await self.fake.emit_inbound(
            webhook_url, text=text, contact=contact, auth=EssAuth.basic(self.secret)
        )
        return deliveries[-1].status if deliveries else None

    def sent(self) -> list[dict[str, Any]]:
        return self.fake.sent

    async def report_delivered(self, webhook_url: str) -> int:
        for message in self.fake.sent:
            await self.fake.emit_report(webhook_url, message["id"], "DELIVERED", auth=EssAuth.basic(self.secret))
        return len(self.fake.sent)


def serve(host: str = "127.0.0.1", port: int = 8090, fake: FakeScg | None = None) -> None:
    """Serve the fake's API with uvicorn until interrupted."""
    import uvicorn

    uvicorn.run((fake or FakeScg()).app, host=host, port=port, log_level="warning")


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="A strict fake of the Syniverse SCG API")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8090)
    parser.add_argument("--token", action="append", help="an accepted bearer token (repeatable)")
    args = parser.parse_args(argv)
    fake = FakeScg()
    if args.token:
        fake.tokens = set(args.token)
    serve(args.host, args.port, fake)


if __name__ == "__main__":
    main()
