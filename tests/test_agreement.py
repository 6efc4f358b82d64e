"""DNS and HTTP answer alike (issue 9): one view, two faces, generated fleets.

The faces run over ONE Changes (HTTP through start_api; DNS through two DnsServers over
Discovery(changes.view), one per DNS path: fast and dnslib) and are started once per
test; every Hypothesis example clears the registry and registers its own fleet. Then,
for every service S and tag T, on both DNS paths:

* ``_T._sub._S._tcp`` SRV == GET /v1/services/S with ``{"capabilities": [T]}`` == with
  ``{"tags": [T]}`` (active only); NXDOMAIN exactly when that list is empty;
* POST /v1/discover with ``{"capabilities": [T]}`` picks one of them, or 404 when none;
* ``_S._tcp`` SRV == GET /v1/services/S?status=active, in the same (discovery) order;
* ``S.jarvis.internal`` A == the hosts of the live idle ones (all live when none is idle).
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import dns.asyncquery
import dns.flags
import dns.message
import dns.rcode
import httpx
import pytest
from conftest import FakeClock, new_changes, start_api
from dns_helpers import config
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from jarvis_dns.changes import Changes
from jarvis_dns.discovery import Discovery
from jarvis_dns.dns.server import DnsServer
from jarvis_dns.models import InstanceId, InstanceSpec, Status

ZONE = "jarvis.internal."
SERVICES = ("api", "db", "web-2")
TAGS = ("OAuth", "GPU", "eu", "blue")
QUERIED_TAGS = (*TAGS, "red")  # "red": a tag no instance ever has
LABEL_IDS = ("a", "edge", "b-1", "z9")


@dataclass
class Member:
    svc: str
    iid: InstanceId
    host: str
    status: Status
    busy: bool
    metadata: dict[str, Any] = field(default_factory=dict)


# -- fleets ------------------------------------------------------------------------

tag = st.sampled_from(TAGS).flatmap(lambda t: st.sampled_from([t, t.lower(), t.upper()]))
metadata = st.fixed_dictionaries(
    {},
    optional={
        "tags": st.lists(tag, max_size=3),
        "capabilities": st.lists(tag, max_size=3) | st.dictionaries(tag, st.booleans(), max_size=3),
    },
)
member = st.builds(
    Member,
    svc=st.sampled_from(SERVICES),
    iid=st.integers(0, 12) | st.sampled_from(LABEL_IDS),
    host=st.ip_addresses(v=4, network="10.0.0.0/29").map(str),
    status=st.sampled_from(Status),
    busy=st.booleans(),
    metadata=metadata,
)
fleets = st.lists(member, max_size=12, unique_by=lambda m: (m.svc, str(m.iid)))


async def replace_fleet(changes: Changes, fleet: list[Member]) -> None:
    for svc in changes.view.service_types():
        for inst in list(changes.view.instances(svc)):
            await changes.deregister(svc, inst.instance_id)
    for m in fleet:
        await changes.register(InstanceSpec(m.svc, m.iid, m.host, 8080, metadata=m.metadata))
        if m.status is not Status.ACTIVE or m.busy:
            await changes.set_status(m.svc, m.iid, status=m.status, busy=m.busy)


# -- the two faces --------------------------------------------------------------------


@dataclass
class Faces:
    changes: Changes
    http: httpx.AsyncClient
    dns: list[DnsServer]  # the fast path and the dnslib path


@pytest.fixture
async def faces() -> AsyncIterator[Faces]:
    changes = new_changes(FakeClock())  # never advanced: nothing expires
    await changes.load()
    runner, url = await start_api(changes)
    servers = [
        DnsServer(Discovery(changes.view), changes, config(dns_fast_path=fast))
        for fast in (True, False)
    ]
    try:
        for server in servers:
            await server.start()
        async with httpx.AsyncClient(base_url=url, timeout=10) as http:
            yield Faces(changes, http, servers)
    finally:
        for server in servers:
            await server.stop()
        await runner.cleanup()


def path(server: DnsServer) -> str:
    return "fast" if server.config.dns_fast_path else "dnslib"


async def ask(server: DnsServer, name: str, rdtype: str) -> dns.message.Message:
    host, port = server.addresses[0]
    query = dns.message.make_query(name + ZONE, rdtype, use_edns=0, payload=4096)
    reply = await dns.asyncquery.udp(query, host, port=port, timeout=3.0)
    assert not reply.flags & dns.flags.TC, (path(server), name)
    return reply


def rcode_for(found: list[Any]) -> int:
    return dns.rcode.NOERROR if found else dns.rcode.NXDOMAIN


async def srv_ids(server: DnsServer, name: str, expected: list[str]) -> list[str]:
    """Instance ids of the SRV targets (``<id>.<svc>.<zone>``) in answer order; the rcode
    must be NXDOMAIN exactly when `expected` is empty."""
    reply = await ask(server, name, "SRV")
    rcode = dns.rcode.to_text(reply.rcode())
    assert reply.rcode() == rcode_for(expected), (path(server), name, rcode)
    return [rd.target.labels[0].decode() for rrset in reply.answer for rd in rrset]


async def listed(faces: Faces, svc: str, requirements: Any = None) -> list[dict[str, Any]]:
    params = {"status": "active"}
    if requirements is not None:
        params["requirements"] = json.dumps(requirements)
    response = await faces.http.get(f"/v1/services/{svc}", params=params)
    assert response.status_code == 200, response.text
    instances: list[dict[str, Any]] = response.json()["instances"]
    return instances


def ids(instances: list[dict[str, Any]]) -> list[str]:
    return [str(i["instance_id"]) for i in instances]


async def discovered(faces: Faces, svc: str, requirements: Any) -> str | None:
    body = {"service_type": svc, "requirements": requirements}
    response = await faces.http.post("/v1/discover", json=body)
    if response.status_code == 404:
        return None
    assert response.status_code == 200, response.text
    return str(response.json()["instance_id"])


# -- the properties -------------------------------------------------------------------


async def check_tag(faces: Faces, svc: str, tag: str) -> None:
    by_capability = ids(await listed(faces, svc, {"capabilities": [tag]}))
    by_tags = ids(await listed(faces, svc, {"tags": [tag]}))
    assert by_capability == by_tags, (svc, tag)
    for server in faces.dns:
        dns_ids = await srv_ids(server, f"_{tag}._sub._{svc}._tcp.", by_capability)
        assert dns_ids == by_capability, (path(server), svc, tag)
    picked = await discovered(faces, svc, {"capabilities": [tag]})
    if by_capability:
        assert picked in by_capability, (svc, tag, picked)
    else:
        assert picked is None, (svc, tag, picked)


async def check_service(faces: Faces, svc: str) -> None:
    live = await listed(faces, svc)
    hosts = {i["host"] for i in [i for i in live if not i["busy"]] or live}  # idle first
    for server in faces.dns:
        assert await srv_ids(server, f"_{svc}._tcp.", ids(live)) == ids(live), path(server)
        reply = await ask(server, f"{svc}.", "A")
        assert reply.rcode() == rcode_for(live), (path(server), svc)
        answered = {rd.address for rrset in reply.answer for rd in rrset}
        assert answered == hosts, (path(server), svc)


@settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(fleet=fleets)
async def test_dns_and_http_agree_on_generated_fleets(faces: Faces, fleet: list[Member]) -> None:
    await replace_fleet(faces.changes, fleet)
    for svc in SERVICES:
        await check_service(faces, svc)
        for tag in QUERIED_TAGS:
            await check_tag(faces, svc, tag)


async def test_capability_object_is_found_by_dns_and_discover(faces: Faces) -> None:
    """The issue's case: {"capabilities": {"OAuth": true}} answers _oauth._sub and
    requirements {"capabilities": ["oauth"]} alike."""
    spec = InstanceSpec("svc", 1, "10.0.0.1", 8443, metadata={"capabilities": {"OAuth": True}})
    await faces.changes.register(spec)
    for server in faces.dns:
        assert await srv_ids(server, "_oauth._sub._svc._tcp.", ["1"]) == ["1"], path(server)
    assert await discovered(faces, "svc", {"capabilities": ["oauth"]}) == "1"
