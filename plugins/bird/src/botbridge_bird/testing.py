"""A strict fake of Bird's Channels API, and the phone / Bird side of webhooks.

`BirdFake().app` is a Starlette app: use it in-process through
`httpx.ASGITransport(app=fake.app)`, or on loopback with
`python -m botbridge_bird.testing --port 8099`. It checks what the real API
checks (AccessKey auth, UUID paths that exist, required fields, size), records
what it accepted, and answers with Bird's documented shapes. It also plays
Bird's webhook emitter: inbound messages, status updates of the messages it
accepted and channel install news, signed with the subscription's signing
key over timestamp + URL + sha256(body), exactly as Bird signs them.
"""

from __future__ import annotations

import argparse
import json
import re
import time
import uuid
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
from botbridge_bird.channel import SIGNATURE_HEADER, TIMESTAMP_HEADER, sign_webhook

MAX_REQUEST_BYTES = 200 * 1024
MAX_SUBSCRIPTIONS_PER_FILTER = 5
BODY_TYPES = frozenset({"text", "image", "file", "list", "carousel", "section", "html", "location", "authentication"})
TEMPLATES = {
    "sms-messagebird:1": "sms",
    "whatsapp:1": "whatsapp",
    "instagram:1": "instagram",
    "facebook:1": "facebook",
    "telegram:1": "telegram",
    "line:1": "line",
    "email-messagebird:1": "email",
}
_E164 = re.compile(r"^\+[1-9]\d{6,14}$")
# docs.bird.com "Create a webhook subscription": `url` must match this: https,
# a hostname, no port.
SUBSCRIPTION_URL = re.compile(r"^https://([a-zA-Z0-9-]+\.)+[a-zA-Z]{2,}(/\S*)?$")
# Channels API message body schemas are `additionalProperties: false`; a file
# needs `mediaUrl` and `contentType` (docs.bird.com "Message body: file").
FILE_KEYS = frozenset({"mediaUrl", "contentType", "filename"})
_SUBSCRIPTION_EVENT = re.compile(r"^(?:[a-z_]+\.(?:inbound|outbound|interaction)|channel\.(?:created|updated))$")


class ApiError(Exception):
    def __init__(self, status: int, code: str, message: str, details: Any = None) -> None:
        super().__init__(message)
        self.status, self.code, self.message, self.details = status, code, message, details

    def response(self, headers: dict[str, str] | None = None) -> JSONResponse:
        body: dict[str, Any] = {"code": self.code, "message": self.message}
        if self.details is not None:
            body["details"] = self.details
        return JSONResponse(body, status_code=self.status, headers=headers)


def invalid(message: str, field_name: str) -> ApiError:
    return ApiError(422, "InvalidPayload", message, {field_name: [message]})


def _now_iso(seconds: float) -> str:
    moment = datetime.fromtimestamp(seconds, UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


def _is_uuid(value: Any) -> bool:
    try:
        uuid.UUID(str(value))
    except ValueError:
        return False
    return isinstance(value, str)


def compact(data: Any) -> bytes:
    """JSON the way Bird sends it: compact, UTF-8."""
    return json.dumps(data, separators=(",", ":"), ensure_ascii=False).encode()


@dataclass
class Emission:
    """One webhook the fake sent (to one or more URLs), and the answers."""

    event: str
    payload: dict[str, Any]
    body: bytes
    responses: list[httpx.Response] = field(default_factory=list)

    @property
    def status_codes(self) -> list[int]:
        return [r.status_code for r in self.responses]


class BirdFake:
    """State and behaviour of the fake Bird platform.

    `duplicate_deliveries` sends every webhook twice (same timestamp and
    signature, as Bird's retries do); `delivery_attempts` re-sends a webhook
    answered with a non-2xx up to that many times, reusing its headers.

    `channel_on_install`: a connector install answers with its channel
    (`channel.channelId`, as docs.bird.com "Installing an SMS channel" shows
    the answer), the channel pending until the install completes. False:
    the channel only appears when the install completes.
    """

    def __init__(
        self,
        *,
        access_key: str = "bird-test-access-key",
        workspace_id: str | None = None,
        organization_id: str | None = None,
        http: httpx.AsyncClient | None = None,
        clock: Any = None,
        duplicate_deliveries: bool = False,
        delivery_attempts: int = 1,
        channel_on_install: bool = True,
    ) -> None:
        self.access_key = access_key
        self.channel_on_install = channel_on_install
        self.workspace_id = workspace_id or str(uuid.uuid4())
        self.organization_id = organization_id or str(uuid.uuid4())
        self.http = http
        self.clock = clock
        self.duplicate_deliveries = duplicate_deliveries
        self.delivery_attempts = max(1, delivery_attempts)
        self.channels: dict[str, dict[str, Any]] = {}
        self.connectors: dict[str, dict[str, Any]] = {}
        self.subscriptions: dict[str, dict[str, Any]] = {}
        self.phone_numbers: dict[str, str] = {}
        self.messages: list[dict[str, Any]] = []
        self.requests: list[dict[str, Any]] = []
        self.emissions: list[Emission] = []
        self._failures: list[dict[str, Any]] = []
        # path → content type of media this fake hosts (answering HEAD), as a CDN would
        self.hosted_media: dict[str, str] = {}
        # The next N accepted messages are answered 502: accepted, the answer lost.
        self.lost_answers = 0
        self.app = Starlette(routes=self._routes())

    # --- set-up helpers ---

    def now(self) -> float:
        return float(self.clock.now()) if self.clock is not None else time.time()

    def add_channel(
        self, platform: str = "sms", identifier: str = "+3197010250000", *, channel_id: str | None = None
    ) -> str:
        channel_id = channel_id or str(uuid.uuid4())
        self.channels[channel_id] = {
            "id": channel_id,
            "workspaceId": self.workspace_id,
            "platformId": platform,
            "identifier": identifier,
            "connectorId": None,
            "status": "active",
        }
        return channel_id

    def add_phone_number(self, number: str = "+3197010250001") -> str:
        number_id = str(uuid.uuid4())
        self.phone_numbers[number_id] = number
        return number_id

    def fail_next(
        self,
        status: int,
        *,
        times: int = 1,
        code: str = "Unavailable",
        message: str = "try again later",
        retry_after: float | None = None,
        method: str | None = None,
        path: str | None = None,
        after: int = 0,
    ) -> None:
        """Answer the next `times` matching API calls with `status` (before any other check).

        `method` / `path` (a substring of the path) narrow which calls match;
        `after` lets that many matching calls through first.
        """
        headers = {"retry-after": str(retry_after)} if retry_after is not None else {}
        self._failures.append(
            {
                "status": status,
                "body": {"code": code, "message": message},
                "headers": headers,
                "method": method,
                "path": path,
                "after": after,
                "times": times,
            }
        )

    def _injected_failure(self, method: str, path: str) -> Response | None:
        for failure in self._failures:
            if failure["method"] not in (None, method) or (failure["path"] and failure["path"] not in path):
                continue
            if failure["after"] > 0:
                failure["after"] -= 1
                return None
            failure["times"] -= 1
            if failure["times"] <= 0:
                self._failures.remove(failure)
            return JSONResponse(failure["body"], status_code=failure["status"], headers=failure["headers"])
        return None

    @property
    def sent(self) -> list[dict[str, Any]]:
        return self.messages

    # --- API ---

    def _routes(self) -> list[Route]:
        ws = "/workspaces/{workspace_id}"
        # Webhook subscriptions belong to the Notifications API, which only has
        # the organization-scoped path (seeds/003, docs.bird.com).
        org = "/organizations/{organization_id}/workspaces/{workspace_id}"
        return [
            Route(ws + "/channels/{channel_id}/messages", self._guard(self.create_message), methods=["POST"]),
            Route(ws + "/channels/{channel_id}/messages", self._guard(self.list_messages), methods=["GET"]),
            Route(ws + "/channels/{channel_id}/messages/{message_id}", self._guard(self.get_message), methods=["GET"]),
            Route(ws + "/connectors", self._guard(self.create_connector), methods=["POST"]),
            Route(ws + "/connectors", self._guard(self.list_connectors), methods=["GET"]),
            Route(ws + "/connectors/{connector_id}", self._guard(self.get_connector), methods=["GET"]),
            Route(ws + "/connectors/{connector_id}", self._guard(self.delete_connector), methods=["DELETE"]),
            Route(org + "/webhook-subscriptions", self._guard(self.create_subscription), methods=["POST"]),
            Route(org + "/webhook-subscriptions", self._guard(self.list_subscriptions), methods=["GET"]),
            Route(
                org + "/webhook-subscriptions/{subscription_id}", self._guard(self.get_subscription), methods=["GET"]
            ),
            Route(
                org + "/webhook-subscriptions/{subscription_id}",
                self._guard(self.update_subscription),
                methods=["PATCH"],
            ),
            Route(
                org + "/webhook-subscriptions/{subscription_id}",
                self._guard(self.delete_subscription),
                methods=["DELETE"],
            ),
            Route("/{path:path}", self._head_media, methods=["HEAD"]),
        ]

    async def _head_media(self, request: Request) -> Response:
        # A media host, not Bird: no AccessKey is expected (or should be sent).
        self.requests.append(
            {"method": "HEAD", "path": request.url.path, "authorization": request.headers.get("authorization")}
        )
        content_type = self.hosted_media.get(request.url.path)
        if content_type is None:
            return Response(status_code=404)
        return Response(status_code=200, headers={"content-type": content_type, "content-length": "1024"})

    def _guard(self, handler: Any) -> Any:
        async def endpoint(request: Request) -> Response:
            raw = await request.body()
            entry: dict[str, Any] = {
                "method": request.method,
                "path": request.url.path,
                "authorization": request.headers.get("authorization"),
                "content_type": request.headers.get("content-type"),
                "body": raw,
            }
            self.requests.append(entry)
            injected = self._injected_failure(request.method, request.url.path)
            if injected is not None:
                return injected
            try:
                self._authenticate(request)
                self._check_scope(request)
                data: Any = None
                if request.method in ("POST", "PUT", "PATCH"):
                    data = self._json(request, raw)
                return await handler(request, data)
            except ApiError as exc:
                return exc.response()

        return endpoint

    def _authenticate(self, request: Request) -> None:
        scheme, _, key = (request.headers.get("authorization") or "").partition(" ")
        if scheme != "AccessKey" or key != self.access_key:
            raise ApiError(401, "NotAuthenticated", "authentication failed: a valid AccessKey is required")

    def _check_scope(self, request: Request) -> None:
        params = request.path_params
        for name in ("organization_id", "workspace_id", "channel_id", "connector_id", "subscription_id"):
            if name in params and not _is_uuid(params[name]):
                raise ApiError(404, "NotFound", f"{name.replace('_id', '')} not found")
        if "organization_id" in params and params["organization_id"] != self.organization_id:
            raise ApiError(404, "NotFound", "organization not found")
        if params.get("workspace_id") != self.workspace_id:
            raise ApiError(404, "NotFound", "workspace not found")

    def _json(self, request: Request, raw: bytes) -> dict[str, Any]:
        if len(raw) > MAX_REQUEST_BYTES:
            raise ApiError(413, "RequestTooLarge", "request body exceeds 200 KB")
        if (request.headers.get("content-type") or "").split(";")[0].strip() != "application/json":
            raise ApiError(415, "UnsupportedMediaType", "Content-Type must be application/json")
        try:
            data = json.loads(raw)
        except (UnicodeDecodeError, ValueError):
            raise ApiError(400, "InvalidJSON", "request body is not valid JSON") from None
        if not isinstance(data, dict):
            raise ApiError(422, "InvalidPayload", "request body must be a JSON object")
        return data

    # --- messages ---

    def _channel(self, channel_id: str) -> dict[str, Any]:
        channel = self.channels.get(channel_id)
        if channel is None or channel["workspaceId"] != self.workspace_id:
            raise ApiError(404, "NotFound", "channel not found")
        if channel["status"] != "active":
            raise ApiError(409, "ChannelNotActive", "channel is not active")
        return channel

    async def create_message(self, request: Request, data: dict[str, Any]) -> Response:
        channel = self._channel(request.path_params["channel_id"])
        contacts = _validate_receiver(data.get("receiver"))
        if ("body" in data) == ("template" in data):
            raise invalid("exactly one of body or template is required", "body")
        text = ""
        if "body" in data:
            text = _validate_body(data["body"], channel["platformId"])
        elif not isinstance(data["template"], dict) or not data["template"].get("projectId"):
            raise invalid("template.projectId is required", "template.projectId")
        reference = data.get("reference")
        if reference is not None and not isinstance(reference, str):
            raise invalid("reference must be a string", "reference")
        now = _now_iso(self.now())
        message = {
            "id": str(uuid.uuid4()),
            "channelId": channel["id"],
            "sender": {
                "connector": {
                    "id": channel["connectorId"] or str(uuid.uuid4()),
                    "identifierValue": channel["identifier"],
                }
            },
            "receiver": {"contacts": [{"id": str(uuid.uuid4()), **c} for c in contacts]},
            "body": data.get("body"),
            "reference": reference or "",
            "parts": [],
            "status": "accepted",
            "reason": "",
            "direction": "outgoing",
            "lastStatusAt": now,
            "createdAt": now,
            "updatedAt": now,
        }
        if "template" in data:
            message["template"] = data["template"]
        first = contacts[0]
        self.messages.append(
            {
                "id": message["id"],
                "to": first.get("identifierValue") or first.get("id"),
                "text": text,
                "body": data.get("body"),
                "receiver": data["receiver"],
                "reference": reference,
                "channel_id": channel["id"],
                "authorization": request.headers.get("authorization"),
                "message": message,
            }
        )
        if self.lost_answers > 0:
            self.lost_answers -= 1
            return JSONResponse({"code": "BadGateway", "message": "upstream failed"}, status_code=502)
        return JSONResponse(message, status_code=202)

    async def list_messages(self, request: Request, data: Any) -> Response:
        """The channel's messages, filtered by `reference` [UNVERIFIED filter name]."""
        channel = self._channel(request.path_params["channel_id"])
        reference = request.query_params.get("reference")
        results = [
            record["message"]
            for record in self.messages
            if record["channel_id"] == channel["id"] and (reference is None or record["reference"] == reference)
        ]
        return JSONResponse({"results": results})

    async def get_message(self, request: Request, data: Any) -> Response:
        channel = self._channel(request.path_params["channel_id"])
        for record in self.messages:
            if record["id"] == request.path_params["message_id"] and record["channel_id"] == channel["id"]:
                return JSONResponse(record["message"])
        raise ApiError(404, "NotFound", "message not found")

    # --- connectors ---

    async def create_connector(self, request: Request, data: dict[str, Any]) -> Response:
        name = data.get("name")
        if not isinstance(name, str) or not name.strip():
            raise invalid("name is required", "name")
        template = data.get("connectorTemplateRef")
        if template not in TEMPLATES:
            raise invalid("unknown connectorTemplateRef", "connectorTemplateRef")
        arguments = data.get("arguments", {})
        if not isinstance(arguments, dict):
            raise invalid("arguments must be an object", "arguments")
        if template == "sms-messagebird:1":
            number_id = arguments.get("phoneNumberId")
            if not isinstance(number_id, str) or not number_id:
                raise invalid("arguments.phoneNumberId is required", "arguments.phoneNumberId")
            if number_id not in self.phone_numbers:
                raise invalid("arguments.phoneNumberId is not a number of this workspace", "arguments.phoneNumberId")
            message_type = arguments.get("channelMessageType")
            if not isinstance(message_type, str) or not message_type:
                raise invalid("arguments.channelMessageType is required", "arguments.channelMessageType")
        now = _now_iso(self.now())
        connector = {
            "id": str(uuid.uuid4()),
            "workspaceId": self.workspace_id,
            "name": name,
            "arguments": arguments,
            "connectorTemplateRef": template,
            "connectorTemplateSlug": template.split(":")[0],
            "status": "pending",
            "channel": None,
            "createdAt": now,
            "updatedAt": now,
        }
        if self.channel_on_install:
            channel_id = self._install_channel(connector)
            self.channels[channel_id]["status"] = "pending"  # refuses sends until the install completes
        self.connectors[connector["id"]] = connector
        return JSONResponse(connector, status_code=200)

    def _install_channel(self, connector: dict[str, Any]) -> str:
        platform = TEMPLATES[connector["connectorTemplateRef"]]
        number = self.phone_numbers.get(connector["arguments"].get("phoneNumberId", ""), "+3197010250001")
        channel_id = self.add_channel(platform, number)
        self.channels[channel_id]["connectorId"] = connector["id"]
        connector["channel"] = {"channelId": channel_id, "platform": platform}
        return channel_id

    def _connector(self, connector_id: str) -> dict[str, Any]:
        connector = self.connectors.get(connector_id)
        if connector is None:
            raise ApiError(404, "NotFound", "connector not found")
        return connector

    async def list_connectors(self, request: Request, data: Any) -> Response:
        ref = request.query_params.get("templateRef")
        results = [c for c in self.connectors.values() if ref is None or c["connectorTemplateRef"] == ref]
        return JSONResponse({"results": results})

    async def get_connector(self, request: Request, data: Any) -> Response:
        return JSONResponse(self._connector(request.path_params["connector_id"]))

    async def delete_connector(self, request: Request, data: Any) -> Response:
        connector = self.connectors.pop(self._connector(request.path_params["connector_id"])["id"])
        channel = connector.get("channel") or {}
        self.channels.pop(channel.get("channelId", ""), None)
        return Response(status_code=204)

    async def complete_install(
        self, connector_id: str, *, ok: bool = True, reason: str = "number is not available", emit: bool = True
    ) -> Emission | None:
        """Finish a pending install: the channel appears (or the install fails) and Bird says so."""
        connector = self.connectors[connector_id]
        template = connector["connectorTemplateRef"]
        platform = TEMPLATES[template]
        payload: dict[str, Any] = {
            "connectorId": connector_id,
            "platformId": platform,
            "updatedAt": _now_iso(self.now()),
        }
        channel_id = (connector.get("channel") or {}).get("channelId")
        created = ok and channel_id is None
        if ok:
            channel_id = channel_id or self._install_channel(connector)
            channel = self.channels[channel_id]
            channel["status"] = connector["status"] = "active"
            payload.update({"id": channel_id, "channelId": channel_id, "identifier": channel["identifier"]})
            payload["status"] = "active"
        else:
            connector["status"] = "failed"
            connector["statusReason"] = reason
            if channel_id:  # news about an existing channel names it
                self.channels[channel_id]["status"] = "failed"
                payload.update({"id": channel_id, "channelId": channel_id})
            payload.update({"status": "failed", "reason": reason})
        if not emit:
            return None
        if created:
            await self.deliver({"service": "channels", "event": "channel.created", "payload": payload})
        return await self.deliver({"service": "channels", "event": "channel.updated", "payload": payload})

    # --- webhook subscriptions ---

    async def create_subscription(self, request: Request, data: dict[str, Any]) -> Response:
        if data.get("service") != "channels":
            raise invalid("service must be channels", "service")
        event = data.get("event")
        if not isinstance(event, str) or not _SUBSCRIPTION_EVENT.match(event):
            raise invalid("event is not a known channels event", "event")
        url = data.get("url")
        _check_subscription_url(url)
        key = data.get("signingKey")
        if key is not None and (not isinstance(key, str) or not key):
            raise invalid("signingKey must be a non-empty string", "signingKey")
        filters = data.get("eventFilters", [])
        _check_filters(filters)
        self._check_filter_limit(event, filters)
        now = _now_iso(self.now())
        subscription = {
            "id": str(uuid.uuid4()),
            "organizationId": self.organization_id,
            "workspaceId": self.workspace_id,
            "service": "channels",
            "event": event,
            "url": url,
            "eventFilters": filters,
            "status": "active",
            "createdAt": now,
            "updatedAt": now,
        }
        self.subscriptions[subscription["id"]] = {**subscription, "signingKey": key or ""}
        return JSONResponse(subscription, status_code=201)

    def _check_filter_limit(self, event: str, filters: list[dict[str, str]], *, ignore: str | None = None) -> None:
        same = [
            s
            for s in self.subscriptions.values()
            if s["id"] != ignore and s["event"] == event and _filter_set(s["eventFilters"]) == _filter_set(filters)
        ]
        if len(same) >= MAX_SUBSCRIPTIONS_PER_FILTER:
            raise ApiError(409, "LimitExceeded", "at most 5 subscriptions per identical filter combination")

    async def update_subscription(self, request: Request, data: dict[str, Any]) -> Response:
        subscription = self.subscriptions.get(request.path_params["subscription_id"])
        if subscription is None:
            raise ApiError(404, "NotFound", "webhook subscription not found")
        unknown = sorted(set(data) - {"url", "signingKey", "eventFilters"})
        if unknown:
            raise invalid(f"{unknown[0]} cannot be updated", unknown[0])
        if "url" in data:
            _check_subscription_url(data["url"])
        if "eventFilters" in data:
            _check_filters(data["eventFilters"])
            self._check_filter_limit(subscription["event"], data["eventFilters"], ignore=subscription["id"])
        subscription.update(data, updatedAt=_now_iso(self.now()))
        return JSONResponse(self._public_subscription(subscription))

    def _public_subscription(self, subscription: dict[str, Any]) -> dict[str, Any]:
        return {k: v for k, v in subscription.items() if k != "signingKey"}

    async def list_subscriptions(self, request: Request, data: Any) -> Response:
        return JSONResponse({"results": [self._public_subscription(s) for s in self.subscriptions.values()]})

    async def get_subscription(self, request: Request, data: Any) -> Response:
        subscription = self.subscriptions.get(request.path_params["subscription_id"])
        if subscription is None:
            raise ApiError(404, "NotFound", "webhook subscription not found")
        return JSONResponse(self._public_subscription(subscription))

    async def delete_subscription(self, request: Request, data: Any) -> Response:
        if self.subscriptions.pop(request.path_params["subscription_id"], None) is None:
            raise ApiError(404, "NotFound", "webhook subscription not found")
        return Response(status_code=204)

    # --- webhook payloads ---

    def inbound_event(
        self,
        text: str = "",
        contact: str = "+31612345678",
        *,
        message_id: str | None = None,
        channel_id: str | None = None,
        body: dict[str, Any] | None = None,
        identifier_key: str = "phonenumber",
    ) -> dict[str, Any]:
        channel_id = channel_id or next(iter(self.channels), str(uuid.uuid4()))
        channel = self.channels.get(channel_id, {"platformId": "sms", "identifier": "+3197010250000"})
        now = _now_iso(self.now())
        payload = {
            "id": message_id or str(uuid.uuid4()),
            "channelId": channel_id,
            "sender": {
                "contact": {"id": str(uuid.uuid4()), "identifierKey": identifier_key, "identifierValue": contact}
            },
            "receiver": {
                "connector": {
                    "id": channel.get("connectorId") or str(uuid.uuid4()),
                    "identifierValue": channel["identifier"],
                }
            },
            "body": body or {"type": "text", "text": {"text": text}},
            "parts": [{"platformReference": uuid.uuid4().hex}],
            "status": "delivered",
            "direction": "incoming",
            "lastStatusAt": now,
            "createdAt": now,
            "updatedAt": now,
        }
        return {"service": "channels", "event": f"{channel['platformId']}.inbound", "payload": payload}

    def status_event(
        self, message_id: str, status: str, *, reason: str = "", failure: dict[str, Any] | None = None
    ) -> dict[str, Any]:
        """An `<platform>.outbound` status update of a message the fake accepted (or any id)."""
        record = next((m for m in self.messages if m["id"] == message_id), None)
        if record is not None:
            payload = dict(record["message"])
            channel = self.channels.get(record["channel_id"], {"platformId": "sms"})
        else:
            channel_id = next(iter(self.channels), str(uuid.uuid4()))
            channel = self.channels.get(channel_id, {"platformId": "sms"})
            payload = {"id": message_id, "channelId": channel_id, "direction": "outgoing"}
        now = _now_iso(self.now())
        payload.update({"status": status, "reason": reason, "lastStatusAt": now, "updatedAt": now})
        if failure is None and "failed" in status:
            # Failed messages carry `failure{code, description, source}` [OBS/DOC message object].
            failure = {"code": 15, "description": reason or "delivery failed", "source": "platform"}
        if failure is not None:
            payload["failure"] = failure
        if record is not None:
            record["message"] = payload
        return {"service": "channels", "event": f"{channel['platformId']}.outbound", "payload": payload}

    def interaction_event(self, message_id: str, kind: str = "read") -> dict[str, Any]:
        record = next((m for m in self.messages if m["id"] == message_id), None)
        channel_id = record["channel_id"] if record else next(iter(self.channels), str(uuid.uuid4()))
        platform = self.channels.get(channel_id, {"platformId": "whatsapp"})["platformId"]
        payload = {
            "id": str(uuid.uuid4()),
            "messageId": message_id,
            "channelId": channel_id,
            "type": kind,
            "createdAt": _now_iso(self.now()),
        }
        return {"service": "channels", "event": f"{platform}.interaction", "payload": payload}

    # --- signing and emitting ---

    def signed_headers(
        self, body: bytes, url: str, signing_key: str, timestamp: float | str | None = None
    ) -> dict[str, str]:
        stamp = (
            str(int(self.now()))
            if timestamp is None
            else str(timestamp if isinstance(timestamp, str) else int(timestamp))
        )
        return {
            "content-type": "application/json",
            SIGNATURE_HEADER: sign_webhook(signing_key, stamp, url, body),
            TIMESTAMP_HEADER: stamp,
        }

    def _targets(self, event: dict[str, Any]) -> list[tuple[str, str]]:
        payload = event.get("payload") or {}
        targets = []
        for subscription in self.subscriptions.values():
            if subscription["event"] != event["event"]:
                continue
            if all(str(payload.get(f["key"])) == f["value"] for f in subscription["eventFilters"]):
                targets.append((subscription["url"], subscription["signingKey"]))
        return targets

    async def deliver(
        self,
        event: dict[str, Any],
        *,
        url: str | None = None,
        signing_key: str | None = None,
        timestamp: float | str | None = None,
        http: httpx.AsyncClient | None = None,
    ) -> Emission:
        """POST `event` to `url` (or to every matching subscription), signed as Bird signs."""
        client = http or self.http
        if client is None:
            raise RuntimeError("BirdFake needs an httpx.AsyncClient (http=) to deliver webhooks")
        body = compact(event)
        if url is not None:
            key = signing_key or next((s["signingKey"] for s in self.subscriptions.values() if s["url"] == url), None)
            if not key:
                raise ValueError(f"no signing key for {url}: pass signing_key=")
            targets = [(url, key)]
        else:
            targets = self._targets(event)
        emission = Emission(event=event["event"], payload=event["payload"], body=body)
        for target, key in targets:
            headers = self.signed_headers(body, target, key, timestamp)
            for _ in range(self.delivery_attempts):
                response = await client.post(target, content=body, headers=headers)
                emission.responses.append(response)
                if response.is_success:
                    break
            if self.duplicate_deliveries:
                emission.responses.append(await client.post(target, content=body, headers=headers))
        self.emissions.append(emission)
        return emission

    async def emit_inbound(
        self,
        url: str | None = None,
        *,
        text: str = "",
        contact: str = "+31612345678",
        signing_key: str | None = None,
        message_id: str | None = None,
        channel_id: str | None = None,
        body: dict[str, Any] | None = None,
        http: httpx.AsyncClient | None = None,
    ) -> Emission:
        event = self.inbound_event(text, contact, message_id=message_id, channel_id=channel_id, body=body)
        return await self.deliver(event, url=url, signing_key=signing_key, http=http)

    async def emit_statuses(
        self,
        message_id: str,
        statuses: Sequence[str] = ("sent", "delivered"),
        *,
        url: str | None = None,
        signing_key: str | None = None,
        reason: str = "",
        reverse: bool = False,
        http: httpx.AsyncClient | None = None,
    ) -> list[Emission]:
        """Status updates of a sent message, in order or (out-of-order mode) reversed."""
        events = [self.status_event(message_id, s, reason=reason if "failed" in s else "") for s in statuses]
        ordered: Iterable[dict[str, Any]] = reversed(events) if reverse else events
        return [await self.deliver(e, url=url, signing_key=signing_key, http=http) for e in ordered]


def _filter_set(filters: list[dict[str, Any]]) -> frozenset[tuple[str, str]]:
    return frozenset((f["key"], f["value"]) for f in filters)


def _validate_receiver(receiver: Any) -> list[dict[str, Any]]:
    if not isinstance(receiver, dict):
        raise invalid("receiver is required", "receiver")
    contacts = receiver.get("contacts")
    if not isinstance(contacts, list) or not contacts:
        raise invalid("receiver.contacts must be a non-empty list", "receiver.contacts")
    for contact in contacts:
        if not isinstance(contact, dict):
            raise invalid("receiver.contacts[] must be objects", "receiver.contacts")
        if "id" in contact and "identifierValue" not in contact:
            if not _is_uuid(contact["id"]):
                raise invalid("receiver.contacts[].id must be a contact UUID", "receiver.contacts.id")
            continue
        key, value = contact.get("identifierKey"), contact.get("identifierValue")
        if not isinstance(key, str) or not key or not isinstance(value, str) or not value:
            raise invalid(
                "receiver.contacts[] needs identifierKey and identifierValue, or id", "receiver.contacts.identifierKey"
            )
        if key == "phonenumber" and not _E164.match(value):
            raise invalid("phonenumber identifierValue must be E.164 with +", "receiver.contacts.identifierValue")
        if key == "emailaddress" and "@" not in value:
            raise invalid("emailaddress identifierValue must be an email address", "receiver.contacts.identifierValue")
    return contacts


def _check_subscription_url(url: Any) -> None:
    if not isinstance(url, str) or not SUBSCRIPTION_URL.match(url):
        raise invalid("url must be an https:// URL on a hostname without a port", "url")


def _check_filters(filters: Any) -> None:
    if not isinstance(filters, list) or not all(
        isinstance(f, dict) and isinstance(f.get("key"), str) and isinstance(f.get("value"), str) for f in filters
    ):
        raise invalid("eventFilters must be a list of {key, value}", "eventFilters")
    if sum(1 for f in filters if f["key"] == "channelId") > 1:
        raise invalid("only one channelId filter is allowed", "eventFilters")


def _check_actions(actions: Any, where: str) -> None:
    if not isinstance(actions, list):
        raise invalid(f"{where} must be a list", where)
    for action in actions:
        postback = action.get("postback") if isinstance(action, dict) else None
        if (
            not isinstance(action, dict)
            or action.get("type") != "postback"
            or not isinstance(postback, dict)
            or not isinstance(postback.get("text"), str)
            or not postback["text"].strip()
            or not isinstance(postback.get("payload"), str)
        ):
            raise invalid(f"{where}[] must be postback actions with text and payload", where)


def _validate_body(body: Any, platform: str) -> str:
    """Check a message body for a channel platform; return its text."""
    if not isinstance(body, dict) or body.get("type") not in BODY_TYPES:
        raise invalid("body.type is not a supported message type", "body.type")
    kind = body["type"]
    if platform == "sms" and kind != "text":
        raise invalid(f"body.type {kind} is not supported on sms channels", "body.type")
    content = body.get(kind)
    if not isinstance(content, dict):
        raise invalid(f"body.{kind} is required", f"body.{kind}")
    if kind == "text":
        text = content.get("text")
        if not isinstance(text, str) or not text.strip():
            raise invalid("body.text.text must be a non-empty string", "body.text.text")
        actions = content.get("actions", [])
        _check_actions(actions, "body.text.actions")
        if platform == "sms" and actions:
            raise invalid("actions are not supported on sms channels", "body.text.actions")
        return text
    items_key = {"image": "images", "file": "files"}.get(kind)
    if items_key is not None:
        items = content.get(items_key)
        if not isinstance(items, list) or not items:
            raise invalid(f"body.{kind}.{items_key} must be a non-empty list", f"body.{kind}.{items_key}")
        for item in items:
            media_url = item.get("mediaUrl") if isinstance(item, dict) else None
            if not isinstance(media_url, str) or not re.match(r"^https?://", media_url):
                raise invalid("mediaUrl must be a public http(s) URL", f"body.{kind}.{items_key}.mediaUrl")
            if kind == "file":
                unknown = sorted(set(item) - FILE_KEYS)
                if unknown:
                    raise invalid(f"body.file.files[].{unknown[0]} is not allowed", f"body.file.files.{unknown[0]}")
                content_type = item.get("contentType")
                if not isinstance(content_type, str) or not re.match(r"^[\w.+-]+/[\w.+-]+", content_type):
                    raise invalid("body.file.files[].contentType is required", "body.file.files.contentType")
        if "actions" in content:
            _check_actions(content["actions"], f"body.{kind}.actions")
        text = content.get("text", "")
        return text if isinstance(text, str) else ""
    return ""


# --- running on loopback ---------------------------------------------------------


class BirdPhone(ChannelFake):
    """The fake as the demo and end-to-end tests drive it: a phone behind Bird."""

    name = "bird"
    access_key = "bird-demo-access-key"
    signing_key = "bird-demo-signing-key-0001"

    def __init__(self, fake: BirdFake | None = None) -> None:
        self.fake = fake or BirdFake(access_key=self.access_key)
        self.channel_id = self.fake.add_channel("sms", "+3197010250000")
        self.app = self.fake.app

    def sender_body(self, base_url: str) -> dict[str, Any]:
        return {
            "channel": "bird",
            "address": "+3197010250000",
            "credentials": self.fake.access_key,
            "webhook_secret": self.signing_key,
            "config": {"workspace_id": self.fake.workspace_id, "channel_id": self.channel_id, "base_url": base_url},
        }

    async def phone_says(self, webhook_url: str, text: str, contact: str) -> int | None:
        async with httpx.AsyncClient() as http:
            emission = await self.fake.emit_inbound(
                webhook_url,
                text=text,
                contact=contact,
                signing_key=self.signing_key,
                channel_id=self.channel_id,
                http=http,
            )
        return emission.status_codes[-1] if emission.status_codes else None

    def sent(self) -> list[dict[str, Any]]:
        return self.fake.sent

    async def report_delivered(self, webhook_url: str) -> int:
        async with httpx.AsyncClient() as http:
            for message in self.fake.sent:
                await self.fake.emit_statuses(
                    message["id"], ("delivered",), url=webhook_url, signing_key=self.signing_key, http=http
                )
        return len(self.fake.sent)


def serve(host: str = "127.0.0.1", port: int = 8099, **options: Any) -> None:
    """Run a fake on `host:port` until interrupted (needs uvicorn)."""
    import uvicorn

    fake = BirdFake(**options)
    channel_id = fake.add_channel()
    number_id = fake.add_phone_number()
    print(
        json.dumps(
            {
                "base_url": f"http://{host}:{port}",
                "access_key": fake.access_key,
                "workspace_id": fake.workspace_id,
                "organization_id": fake.organization_id,
                "channel_id": channel_id,
                "phone_number_id": number_id,
            }
        ),
        flush=True,
    )
    uvicorn.run(fake.app, host=host, port=port, log_level="warning")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m botbridge_bird.testing", description="A strict fake of Bird.")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8099)
    parser.add_argument("--access-key", default="bird-test-access-key")
    parser.add_argument("--workspace-id", default=None)
    args = parser.parse_args(argv)
    serve(args.host, args.port, access_key=args.access_key, workspace_id=args.workspace_id)


if __name__ == "__main__":
    main()
