"""Google's discovery documents for Dialogflow v2 (ES) and v3 (CX) as a test oracle.

The documents ship in google-api-python-client
(`googleapiclient/discovery_cache/documents/dialogflow.v2.json`, `…v3.json`).
Their schemas are close to JSON Schema draft 3; `json_schema` turns one into
a strict draft 2020-12 schema: every `$ref` resolved, unknown properties and
wrong types refused, output-only (`readOnly`) fields refused in requests.

The plugin and its fake were written from one reading of the API; this is
the other, independent reading every exchange is held against.
"""

from __future__ import annotations

import functools
import json
import re
import string
from collections.abc import Iterator
from dataclasses import dataclass
from importlib.resources import files
from typing import Any
from urllib.parse import parse_qsl

from hypothesis import strategies as st
from jsonschema import Draft202012Validator

from botbridge_dialogflow.testing import Exchange

VERSIONS = ("v2", "v3")
METHOD = "detectIntent"
INT32 = (-(2**31), 2**31 - 1)
# proto3 JSON: a Duration is decimal seconds with an "s"; bytes are base64.
_DURATION = r"^-?[0-9]+(\.[0-9]{1,9})?s$"
_BASE64 = r"^[A-Za-z0-9+/_-]*={0,2}$"


def document_path(version: str) -> Any:
    return files("googleapiclient.discovery_cache") / "documents" / f"dialogflow.{version}.json"


@functools.cache
def document(version: str) -> dict[str, Any]:
    return dict(json.loads(document_path(version).read_text(encoding="utf-8")))


def revision(version: str) -> str:
    return str(document(version)["revision"])


# --- schemas ---------------------------------------------------------------------


def _convert(schema: dict[str, Any], *, request: bool) -> dict[str, Any] | bool:
    if request and schema.get("readOnly"):
        return False  # output only: a request that sets it misreads the API
    if "$ref" in schema:
        return {"$ref": f"#/$defs/{schema['$ref']}"}
    kind = schema.get("type")
    if kind == "any":
        return True
    if "enum" in schema:
        return {"type": "string", "enum": list(schema["enum"])}
    if kind == "object":
        converted: dict[str, Any] = {"type": "object"}
        properties = schema.get("properties", {})
        converted["properties"] = {name: _convert(sub, request=request) for name, sub in properties.items()}
        extra = schema.get("additionalProperties")
        # A map (`additionalProperties`) takes any key; a message takes only its fields.
        converted["additionalProperties"] = _convert(extra, request=request) if extra else False
        return converted
    if kind == "array":
        return {"type": "array", "items": _convert(schema.get("items", {"type": "any"}), request=request)}
    if kind == "integer":
        low, high = INT32 if schema.get("format") in ("int32", "uint32") else (None, None)
        return {"type": "integer", **({"minimum": low, "maximum": high} if low is not None else {})}
    if kind == "number":
        return {"type": "number"}
    if kind == "boolean":
        return {"type": "boolean"}
    if kind == "string":
        pattern = {"google-duration": _DURATION, "byte": _BASE64, "int64": r"^-?[0-9]+$", "uint64": r"^[0-9]+$"}
        return {"type": "string", **({"pattern": pattern[schema["format"]]} if schema.get("format") in pattern else {})}
    raise ValueError(f"discovery type not understood: {schema!r}")


def _refs(schema: Any) -> Iterator[str]:
    if isinstance(schema, dict):
        if "$ref" in schema:
            yield schema["$ref"]
        for value in schema.values():
            yield from _refs(value)


def reachable(version: str, name: str) -> list[str]:
    """`name` and every schema it refers to, directly or not."""
    schemas = document(version)["schemas"]
    seen, todo = [name], [name]
    while todo:
        for ref in _refs(schemas[todo.pop()]):
            if ref not in seen:
                seen.append(ref)
                todo.append(ref)
    return seen


@functools.cache
def json_schema(version: str, name: str, *, request: bool) -> dict[str, Any]:
    """The discovery schema `name` as a strict JSON Schema, with the definitions it needs."""
    schemas = document(version)["schemas"]
    definitions = {key: _convert(schemas[key], request=request) for key in reachable(version, name)}
    return {"$schema": Draft202012Validator.META_SCHEMA["$id"], "$ref": f"#/$defs/{name}", "$defs": definitions}


@functools.cache
def validator(version: str, name: str, *, request: bool) -> Draft202012Validator:
    return Draft202012Validator(json_schema(version, name, request=request))


def problems(version: str, name: str, instance: Any, *, request: bool) -> list[str]:
    """Why `instance` is not a `name` of dialogflow.`version` (empty when it is)."""
    errors = validator(version, name, request=request).iter_errors(instance)
    return [f"{name} at {'/'.join(map(str, e.absolute_path)) or '(root)'}: {e.message}" for e in errors]


# --- methods ---------------------------------------------------------------------


@dataclass(frozen=True)
class Method:
    version: str
    id: str
    http_method: str
    flat_path: re.Pattern[str]
    path_template: str
    pattern: re.Pattern[str]
    request: str
    response: str

    def matches(self, path: str) -> bool:
        """`path` fits both the flatPath and `{+session}` with its parameter pattern."""
        if not self.flat_path.fullmatch(path):
            return False
        prefix, _, suffix = self.path_template.partition("{+session}")
        inner = path.removeprefix("/" + prefix).removesuffix(suffix)
        return bool(self.pattern.search(inner))


def _methods(resource: dict[str, Any]) -> Iterator[dict[str, Any]]:
    for name, method in resource.get("methods", {}).items():
        if name == METHOD:
            yield method
    for child in resource.get("resources", {}).values():
        yield from _methods(child)


def _flat(flat_path: str) -> re.Pattern[str]:
    parts = re.split(r"(\{[^}]+\})", flat_path)
    return re.compile("/" + "".join("[^/]+" if p.startswith("{") else re.escape(p) for p in parts))


@functools.cache
def methods(version: str) -> tuple[Method, ...]:
    found = []
    for method in _methods(document(version)):
        found.append(
            Method(
                version=version,
                id=method["id"],
                http_method=method["httpMethod"],
                flat_path=_flat(method["flatPath"]),
                path_template=method["path"],
                pattern=re.compile(method["parameters"]["session"]["pattern"]),
                request=method["request"]["$ref"],
                response=method["response"]["$ref"],
            )
        )
    return tuple(found)


def method_for(version: str, path: str) -> Method | None:
    return next((m for m in methods(version) if m.matches(path)), None)


# --- exchanges -------------------------------------------------------------------


def check_exchange(exchange: Exchange, *, request: bool = True) -> list[str]:
    """What in one exchange with the fake the discovery document does not allow.

    The request (when `request`): method and path of a detectIntent method,
    query parameters among the document's standard ones, the body a
    `…DetectIntentRequest`. The answer, when 200: a `…DetectIntentResponse`.
    Error bodies are Google's error envelope, which discovery does not describe.
    """
    where = f"{exchange.method} {exchange.path}"
    method = method_for(exchange.api, exchange.path)
    if method is None:
        return [f"{where}: no detectIntent method of dialogflow.{exchange.api} has this path"]
    found: list[str] = []
    if request:
        if exchange.method != method.http_method:
            found.append(f"{where}: {method.id} is {method.http_method}")
        allowed = document(exchange.api)["parameters"]
        found += [f"{where}: unknown query parameter {k!r}" for k, _ in parse_qsl(exchange.query) if k not in allowed]
        try:
            body = json.loads(exchange.body)
        except ValueError:
            found.append(f"{where}: the body is not JSON")
        else:
            found += [f"{where}: {p}" for p in problems(exchange.api, method.request, body, request=True)]
    if exchange.status == 200:
        answer = json.loads(exchange.response)
        found += [f"{where} answered: {p}" for p in problems(exchange.api, method.response, answer, request=False)]
    return found


# --- instances for property tests ---------------------------------------------------

# No braces, brackets or quotes: then any of them in a rendering is a structure leaking out.
SAFE_TEXT = st.text(alphabet=string.ascii_lowercase + string.digits + " .,:!?-", max_size=30)
URLS = st.builds(
    lambda host, path: f"https://{host}.test/{path}",
    st.from_regex(r"[a-z]{1,8}", fullmatch=True),
    SAFE_TEXT.map(lambda t: t.replace(" ", "-")),
)
_URL_FIELD = re.compile(r"(?i)(uri|url)$")


def _string(name: str, schema: dict[str, Any]) -> st.SearchStrategy[Any]:
    fmt = schema.get("format")
    if fmt == "google-duration":
        return st.integers(0, 10**6).map(lambda n: f"{n}s")
    if fmt == "byte":
        return st.just("")
    if fmt in ("int64", "uint64"):
        return st.integers(0, 2**40).map(str)
    if fmt == "google-datetime":
        return st.just("2024-05-01T12:00:00Z")
    if _URL_FIELD.search(name):
        return URLS | SAFE_TEXT
    return SAFE_TEXT


def instances(version: str, name: str, depth: int = 4) -> st.SearchStrategy[dict[str, Any]]:
    """Any well-formed `name` (as a response carries it), every field optional as in discovery."""
    schemas = document(version)["schemas"]

    def of(field: str, schema: dict[str, Any], depth: int) -> st.SearchStrategy[Any]:
        if "$ref" in schema:
            return message(schemas[schema["$ref"]], depth - 1)
        kind = schema.get("type")
        if "enum" in schema:
            return st.sampled_from(schema["enum"])
        if kind == "string":
            return _string(field, schema)
        if kind == "boolean":
            return st.booleans()
        if kind == "integer":
            return st.integers(*INT32)
        if kind == "number":
            return st.floats(allow_nan=False, allow_infinity=False, width=32)
        if kind == "array":
            return st.lists(of(field, schema["items"], depth), max_size=4 if depth > 0 else 0)
        if kind == "object":
            return message(schema, depth - 1)
        return st.none() | st.booleans() | SAFE_TEXT  # "any"

    def message(schema: dict[str, Any], depth: int) -> st.SearchStrategy[dict[str, Any]]:
        if depth < 0:
            return st.just({})
        if "additionalProperties" in schema and not schema.get("properties"):
            return st.dictionaries(SAFE_TEXT, of("", schema["additionalProperties"], depth), max_size=2)
        fields = {k: of(k, v, depth) for k, v in schema.get("properties", {}).items()}
        return st.fixed_dictionaries({}, optional=fields)

    return message(schemas[name], depth)
