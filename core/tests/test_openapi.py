from __future__ import annotations

import pytest

from botbridge.openapi import OPERATIONS, route_operations

pytestmark = pytest.mark.anyio


async def test_every_route_is_documented(app, client) -> None:  # type: ignore[no-untyped-def]
    routes = route_operations(app)
    assert routes == set(OPERATIONS)
    document = (await client.get("/openapi.json")).json()
    documented = {(path, method) for path, methods in document["paths"].items() for method in methods}
    assert documented == routes


async def test_schemas_resolve_and_hide_secrets(client) -> None:  # type: ignore[no-untyped-def]
    document = (await client.get("/openapi.json")).json()
    schemas = document["components"]["schemas"]

    def refs(node):  # type: ignore[no-untyped-def]
        if isinstance(node, dict):
            if "$ref" in node:
                yield node["$ref"]
            for value in node.values():
                yield from refs(value)
        elif isinstance(node, list):
            for value in node:
                yield from refs(value)

    for ref in refs(document):
        assert ref.startswith("#/components/schemas/") and ref.split("/")[-1] in schemas
    for view in ("ConnectorView", "SenderView"):
        properties = schemas[view]["properties"]
        assert not {"credentials", "credentials_enc", "webhook_secret", "webhook_secret_enc"} & set(properties)
    assert "credentials" in schemas["ConnectorCreate"]["required"]
    assert "version_number" in schemas["ConnectorUpdate"]["required"]
