"""The OpenAPI document lists exactly the routes the server has."""

from __future__ import annotations

import json
import re

from conftest import ApiServer, new_changes

from jarvis_dns.config import Config
from jarvis_dns.discovery import Discovery
from jarvis_dns.http.blocking import IndexWaiter
from jarvis_dns.http.common import Context, Hooks
from jarvis_dns.http.routes import make_web_app

METHODS = {"get", "post", "put", "delete", "patch"}


def _server_routes() -> set[tuple[str, str]]:
    changes = new_changes(lambda: 0.0)
    ctx = Context(changes, Discovery(changes.view), Config(), IndexWaiter(changes), Hooks())
    app = make_web_app(ctx)
    found = set()
    for route in app.router.routes():
        if route.method in ("HEAD", "*"):
            continue
        path = route.resource.canonical if route.resource else ""
        found.add((route.method.lower(), path))
    return found


def _spec_routes(spec: dict[str, dict[str, object]]) -> set[tuple[str, str]]:
    return {(m, p) for p, ops in spec["paths"].items() for m in ops if m in METHODS}  # type: ignore[attr-defined]


async def test_spec_matches_routes(api: ApiServer) -> None:
    spec = (await api.client.get("/v1/openapi.json")).json()
    assert spec["openapi"].startswith("3.")
    assert _spec_routes(spec) == _server_routes()


async def test_every_path_parameter_is_declared(api: ApiServer) -> None:
    spec = (await api.client.get("/v1/openapi.json")).json()
    for path, ops in spec["paths"].items():
        names = set(re.findall(r"{(\w+)}", path))
        for op in ops.values():
            declared = {p["name"] for p in op.get("parameters", []) if p["in"] == "path"}
            assert declared == names, path


def test_spec_is_valid_json_with_refs_resolving() -> None:
    from jarvis_dns.http.api import openapi_text

    text = openapi_text()
    spec = json.loads(text)
    for ref in re.findall(r'"\$ref": "#/components/schemas/(\w+)"', text):
        assert ref in spec["components"]["schemas"]


async def test_instance_schema_names_every_key_an_instance_has(api: ApiServer) -> None:
    spec = (await api.client.get("/v1/openapi.json")).json()
    body = {"service_type": "auth", "instance_id": 1, "port": 80}
    inst = (await api.client.post("/v1/instances", json=body)).json()
    schema = spec["components"]["schemas"]["Instance"]["properties"]
    assert set(schema) == set(inst)
    assert schema["check_failing"]["type"] == "boolean" and inst["check_failing"] is False
