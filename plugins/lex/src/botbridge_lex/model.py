"""botocore's service models of the Lex runtimes, as the oracle for requests and responses.

Test support, shared by the strict fake (`botbridge_lex.testing`) and the
tests. AWS publishes each API's definition as the JSON model botocore ships
(``botocore/data/lexv2-runtime/2020-08-07/service-2.json`` for V2
`RecognizeText`, ``lex-runtime/2016-11-28/service-2.json`` for V1
`PostText`); everything here is read from those files, nothing is copied by
hand, so a misreading of the API cannot pass twice.

* `shape_errors(value, shape)`: botocore's own `ParamValidator` (required and
  unknown members, types, minimum lengths), plus the constraints it leaves to
  the server (maximum lengths and sizes, patterns, enums).
* `check_request(api, method, target, headers, body)`: maps a request as sent
  on the wire back to the operation's parameters (URI labels, headers, JSON
  body, by each member's ``location``), validates them, then has botocore's
  serializer encode the same parameters and compares path, query, headers and
  body with what was sent.
* `response_errors(api, status, headers, body)`: the same for an answer,
  against the output shape or, for a modelled error code, the error's shape.
"""

from __future__ import annotations

import base64
import json
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from functools import cache
from typing import Any
from urllib.parse import parse_qsl, unquote, urlsplit

import botocore
from botocore.exceptions import DataNotFoundError
from botocore.loaders import Loader
from botocore.model import OperationModel, ServiceModel, Shape
from botocore.serialize import create_serializer
from botocore.validate import ParamValidator

# The two operations the plugin calls, by the plugin's api name.
OPERATIONS: dict[str, tuple[str, str]] = {"v2": ("lexv2-runtime", "RecognizeText"), "v1": ("lex-runtime", "PostText")}

_CREDENTIAL_SCOPE = re.compile(r"Credential=[^/,\s]+/\d{8}/[^/,\s]+/(?P<service>[^/,\s]+)/")


@cache
def service_model(service: str) -> ServiceModel:
    return ServiceModel(Loader().load_service_model(service, "service-2"), service_name=service)


def operation_model(api: str) -> OperationModel:
    service, name = OPERATIONS[api]
    return service_model(service).operation_model(name)


def model_source(api: str) -> str:
    """Which official definition the checks use, e.g. for an assertion message or the README."""
    service, name = OPERATIONS[api]
    return f"botocore {botocore.__version__} {service}/{service_model(service).api_version}/service-2.json {name}"


def model_examples(api: str) -> list[dict[str, Any]]:
    """The operation's documented examples (``examples-1.json``); an empty list when none are shipped."""
    service, name = OPERATIONS[api]
    try:
        data = Loader().load_service_model(service, "examples-1")
    except DataNotFoundError:  # no examples-1.json in this botocore
        return []
    examples = data.get("examples", {}).get(name, [])
    return [dict(example) for example in examples]


# --- shapes --------------------------------------------------------------------------


def _name(path: str) -> str:
    return path.lstrip(".") or "input"


def _constraint_errors(value: Any, shape: Shape, path: str, out: list[str]) -> None:
    """What `ParamValidator` leaves to the server: max lengths and sizes, patterns, enums.

    Messages use AWS's ValidationException wording, so the fake can answer with them.
    """
    meta = shape.metadata
    kind = shape.type_name
    if kind == "structure" and isinstance(value, Mapping):
        if meta.get("document"):
            return
        for key, item in value.items():
            if key in shape.members:
                _constraint_errors(item, shape.members[key], f"{path}.{key}", out)
    elif kind == "list" and isinstance(value, list):
        if "max" in meta and len(value) > meta["max"]:
            out.append(
                f"Value at '{_name(path)}' failed to satisfy constraint: "
                f"Member must have length less than or equal to {meta['max']}"
            )
        for index, item in enumerate(value):
            _constraint_errors(item, shape.member, f"{path}[{index}]", out)
    elif kind == "map" and isinstance(value, Mapping):
        # ParamValidator checks no map size at all.
        if len(value) < meta.get("min", 0) or ("max" in meta and len(value) > meta["max"]):
            out.append(
                f"Value at '{_name(path)}' failed to satisfy constraint: "
                f"Member must have length between {meta.get('min', 0)} and {meta.get('max')}"
            )
        for key, item in value.items():
            _constraint_errors(key, shape.key, f"{path} (key: {key})", out)
            _constraint_errors(item, shape.value, f"{path}.{key}", out)
    elif kind == "string" and isinstance(value, str):
        if "max" in meta and len(value) > meta["max"]:
            out.append(
                f"Value at '{_name(path)}' failed to satisfy constraint: "
                f"Member must have length less than or equal to {meta['max']}"
            )
        if shape.enum and value not in shape.enum:
            out.append(
                f"Value '{value}' at '{_name(path)}' failed to satisfy constraint: "
                f"Member must satisfy enum value set: [{', '.join(shape.enum)}]"
            )
        pattern = meta.get("pattern")
        # The whole value must match: AWS validates with Java's String.matches, so a
        # sessionId with one '+' among valid characters is refused, although the
        # pattern ('[0-9a-zA-Z._:-]+') carries no anchors.
        if pattern is not None and re.fullmatch(pattern, value) is None:
            out.append(
                f"Value '{value}' at '{_name(path)}' failed to satisfy constraint: "
                f"Member must satisfy regular expression pattern: {pattern}"
            )
    elif kind in ("integer", "long", "double", "float") and isinstance(value, int | float):
        if not isinstance(value, bool) and "max" in meta and value > meta["max"]:
            out.append(
                f"Value '{value}' at '{_name(path)}' failed to satisfy constraint: "
                f"Member must have value less than or equal to {meta['max']}"
            )


def shape_errors(value: Any, shape: Shape) -> list[str]:
    """Every way `value` breaks `shape`: botocore's own validation first, then the server-side constraints."""
    report = ParamValidator().validate(value, shape)
    errors = report.generate_report().splitlines() if report.has_errors() else []
    _constraint_errors(value, shape, "", errors)
    return errors


# --- from the wire back to parameters ------------------------------------------------


def _location(member: Shape) -> str | None:
    location = member.serialization.get("location")
    return str(location) if location is not None else None


def _wire_name(name: str, member: Shape) -> str:
    return str(member.serialization.get("name", name))


def body_members(shape: Shape) -> dict[str, str]:
    """JSON key -> member name of the members carried in the body."""
    payload = shape.serialization.get("payload")
    if payload is not None:
        # Neither operation has one; a payload member would change what the body is.
        raise NotImplementedError(f"{shape.name} has a payload member ({payload}): not supported")
    return {_wire_name(name, member): name for name, member in shape.members.items() if _location(member) is None}


def _from_header(value: str, member: Shape) -> Any:
    if member.serialization.get("jsonvalue"):
        return json.loads(base64.b64decode(value))
    kind = member.type_name
    if kind in ("integer", "long"):
        return int(value)
    if kind in ("double", "float"):
        return float(value)
    if kind == "boolean":
        return {"true": True, "false": False}[value]
    return value  # strings; a timestamp stays text, which ParamValidator accepts


def params_from_wire(
    shape: Shape,
    *,
    labels: Mapping[str, str] | None = None,
    query: Iterable[tuple[str, str]] = (),
    headers: Mapping[str, str] | None = None,
    data: Mapping[str, Any] | None = None,
    status: int | None = None,
) -> tuple[dict[str, Any], list[str]]:
    """The parameters a request or answer carries, mapped back by each member's ``location``.

    `labels` are decoded URI labels, `headers` are keyed in lower case, `data` is
    the decoded JSON body. Returns the parameters and what could not be mapped
    (a body key or query parameter the shape does not have, a header that does
    not convert to its member's type).
    """
    params: dict[str, Any] = {}
    errors: list[str] = []
    headers = headers or {}
    by_location: dict[str | None, dict[str, str]] = {}
    for name, member in shape.members.items():
        by_location.setdefault(_location(member), {})[_wire_name(name, member)] = name
    for label, value in (labels or {}).items():
        member_name = by_location.get("uri", {}).get(label.rstrip("+"))
        if member_name is None:
            errors.append(f"URI label {label!r} is not a member of {shape.name}")
        else:
            params[member_name] = value
    query_members = by_location.get("querystring", {})
    for key, value in query:
        if key not in query_members:
            errors.append(f"Unknown query parameter {key!r} (not in {shape.name})")
        else:
            params[query_members[key]] = value
    for wire, member_name in by_location.get("header", {}).items():
        if wire.lower() in headers:
            try:
                params[member_name] = _from_header(headers[wire.lower()], shape.members[member_name])
            except (ValueError, KeyError, TypeError):
                errors.append(
                    f"Header {wire} {headers[wire.lower()]!r} is not a {shape.members[member_name].type_name}"
                )
    for prefix, member_name in by_location.get("headers", {}).items():
        found = {k[len(prefix) :]: v for k, v in headers.items() if k.startswith(prefix.lower())}
        if found:
            params[member_name] = found
    for member_name in by_location.get("statusCode", {}).values():
        if status is not None:
            params[member_name] = status
    wire_body = body_members(shape)
    for key, value in (data or {}).items():
        # Checked by JSON key, not left to ParamValidator: a body key named like a
        # URI member (`sessionId`) would otherwise pass as that member.
        if key not in wire_body:
            errors.append(f'Unknown parameter in body: "{key}", must be one of: {", ".join(wire_body)}')
        else:
            params[wire_body[key]] = value
    return params, errors


def _json_object(body: bytes, what: str) -> tuple[dict[str, Any] | None, list[str]]:
    if not body:
        return {}, []
    try:
        data = json.loads(body)
    except (UnicodeDecodeError, ValueError):
        return None, [f"{what} is not JSON"]
    if not isinstance(data, dict):
        return None, [f"{what} is not a JSON object"]
    return data, []


def _uri_pattern(template: str) -> tuple[re.Pattern[str], list[str]]:
    parts = re.split(r"\{([^}]+)\}", template.split("?", 1)[0])
    regex, labels = "", []
    for index, part in enumerate(parts):
        if index % 2 == 0:
            regex += re.escape(part)
        else:
            labels.append(part)
            regex += f"(?P<l{len(labels) - 1}>{'.+' if part.endswith('+') else '[^/]+'})"
    return re.compile(regex), labels


@dataclass
class RequestCheck:
    """What is wrong with one request: `api` errors Lex's model refuses; `wire` differs from botocore."""

    api: list[str] = field(default_factory=list)
    wire: list[str] = field(default_factory=list)
    params: dict[str, Any] = field(default_factory=dict)

    @property
    def errors(self) -> list[str]:
        return [*self.api, *self.wire]


def check_request(api: str | None, method: str, target: str, headers: Mapping[str, str], body: bytes) -> RequestCheck:
    """Check one request as sent (`target` is the raw path and query) against the operation's model."""
    check = RequestCheck()
    if api is None:
        check.api.append(f"No Lex runtime operation at {method} {target}")
        return check
    operation = operation_model(api)
    headers = {k.lower(): v for k, v in headers.items()}
    http = operation.http
    if method.upper() != http["method"]:
        check.api.append(f"{operation.name} is {http['method']}, not {method}")
    parts = urlsplit(target)
    pattern, labels = _uri_pattern(http["requestUri"])
    match = pattern.fullmatch(parts.path)
    if match is None:
        check.api.append(f"Path {parts.path!r} does not match {operation.name}'s {http['requestUri']}")
        return check
    decoded = {label: unquote(match[f"l{i}"]) for i, label in enumerate(labels)}
    query = parse_qsl(parts.query, keep_blank_values=True)
    data, body_errors = _json_object(body, "Body")
    check.api.extend(body_errors)
    if data is None:
        return check
    query_members = {
        _wire_name(name, member)
        for name, member in operation.input_shape.members.items()
        if _location(member) == "querystring"
    }
    known_query = [(key, value) for key, value in query if key in query_members]
    # Lex ignores query parameters it does not model; botocore would never send one.
    check.wire.extend(f"Unknown query parameter {key!r}" for key, _ in query if key not in query_members)
    params, errors = params_from_wire(
        operation.input_shape, labels=decoded, query=known_query, headers=headers, data=data
    )
    check.params = params
    check.api.extend(errors)
    check.api.extend(shape_errors(params, operation.input_shape))
    if check.api:
        return check
    # The same parameters through botocore's own serializer: what the SDK would send.
    wire = create_serializer(operation.metadata["protocol"], include_validation=False).serialize_to_request(
        params, operation
    )
    if wire["url_path"] != parts.path:
        check.wire.append(f"Path {parts.path!r} is encoded differently from botocore's {wire['url_path']!r}")
    if sorted(wire["query_string"].items()) != sorted(known_query):
        check.wire.append(f"Query {known_query!r} differs from botocore's {wire['query_string']!r}")
    for name, value in wire["headers"].items():
        if headers.get(name.lower()) != value:
            check.wire.append(f"Header {name}: {headers.get(name.lower())!r}, botocore sends {value!r}")
    if json.loads(wire["body"] or b"{}") != data:
        check.wire.append(f"Body {data!r} differs from botocore's {wire['body']!r}")
    scope = _CREDENTIAL_SCOPE.search(headers.get("authorization", ""))
    signing_name = operation.service_model.signing_name
    if scope is not None and scope["service"] != signing_name:
        check.wire.append(f"Signed for service {scope['service']!r}; the model's signingName is {signing_name!r}")
    return check


def error_code(headers: Mapping[str, str]) -> str:
    lowered = {k.lower(): v for k, v in headers.items()}
    return lowered.get("x-amzn-errortype", "").split(":", 1)[0].strip()


def error_shape(api: str, code: str) -> Shape | None:
    """The modelled error of this code, if the operation declares it (common AWS errors are not modelled)."""
    return next((shape for shape in operation_model(api).error_shapes if shape.name == code), None)


def response_errors(api: str, status: int, headers: Mapping[str, str], body: bytes) -> list[str]:
    """Check one answer against the output shape, or against its error's shape when the model declares the code.

    Errors the operation does not declare (`InvalidSignatureException`,
    `UnrecognizedClientException`, ... common to every AWS API) have no shape
    to check against: they pass.
    """
    operation = operation_model(api)
    headers = {k.lower(): v for k, v in headers.items()}
    if status < 300:
        shape = operation.output_shape
        errors: list[str] = []
    else:
        code = error_code(headers)
        found = error_shape(api, code)
        if found is None:
            return []
        shape = found
        expected = shape.metadata.get("error", {}).get("httpStatusCode")
        errors = (
            [f"{code} is HTTP {expected} in the model, answered {status}"] if expected not in (None, status) else []
        )
    data, body_errors = _json_object(body, "Response body")
    if data is None:
        return errors + body_errors
    params, mapping_errors = params_from_wire(shape, headers=headers, data=data, status=status)
    return errors + mapping_errors + shape_errors(params, shape)
