"""Schemathesis over the OpenAPI document, against a real `jarvis-dns serve`, with ACLs
off and on (then with the bootstrap token, and anonymously): no 5xx, every status,
content type, header and body as the document says, bad input refused.

Bounded (MAX_EXAMPLES per operation). Two checks are left out on purpose: "schema-valid
request rejected" (the document is looser than the server in places it cannot say, e.g.
a host must be reachable, metadata nests at most 8 deep) and response time (blocking
queries wait by design; `wait` is cut to 10 ms here so the run stays short)."""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest
from hypothesis import HealthCheck, settings
from test_serve import Server

schemathesis = pytest.importorskip("schemathesis")
from schemathesis.checks import max_response_time  # noqa: E402
from schemathesis.specs.openapi.checks import positive_data_acceptance  # noqa: E402

from jarvis_dns.http.api import openapi_text  # noqa: E402

MAX_EXAMPLES = 25
BOOT = "schemathesis-boot"
schema = schemathesis.openapi.from_dict(json.loads(openapi_text()))


@pytest.fixture(scope="module", params=["open", "acl-token", "acl-anonymous"])
def target(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[str, dict[str, str]]]:
    mode = str(request.param)
    extra = ["--store", "memory://", "--no-active-checks"]
    if mode != "open":
        extra += ["--acl", "--acl-bootstrap-token", BOOT]
    server = Server(tmp_path_factory.mktemp(mode), *extra)
    try:
        server.wait_ready()
        headers = {"Authorization": f"Bearer {BOOT}"} if mode == "acl-token" else {}
        yield server.url, headers
    finally:
        server.kill()
        server.output()


@schema.parametrize()
@settings(
    max_examples=MAX_EXAMPLES,
    deadline=None,
    suppress_health_check=list(HealthCheck),
)
def test_the_api_keeps_to_its_document(
    case: schemathesis.Case, target: tuple[str, dict[str, str]]
) -> None:
    url, headers = target
    if case.query and ("index" in case.query or "wait" in case.query):
        case.query["wait"] = "10ms"  # a blocking query answers at once after 10 ms
    case.call_and_validate(
        base_url=url,
        headers=headers,
        excluded_checks=[positive_data_acceptance, max_response_time],
        timeout=15,
    )
