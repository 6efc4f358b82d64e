"""The cluster end to end: three real etcd members and three `jarvis-dns serve` processes
(nodes A, B and C) on loopback ports, driven over HTTP and DNS as users would.

Each test starts its own three nodes under a fresh key prefix (so no test sees another's
registry); the etcd members are shared by the module, except in the quorum test, which
kills and restarts members of its own. Processes are stopped (or killed -9) by PID.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import os
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import dns.asyncquery
import dns.exception
import dns.message
import dns.query
import dns.rdatatype
import httpx
import pytest
from aiohttp import web
from conftest import default_sigint, free_ports
from etcd_cluster import EtcdCluster, running

from jarvis_dns.cluster import owner

pytestmark = pytest.mark.etcd

REPO = Path(__file__).parent.parent
NAMES = ("A", "B", "C")
NODE_TTL = 2  # --node-ttl: a dead node's checks move within this (etcd's lease)
TTL = 3  # ttl_s of the instances whose expiry a test watches
ZONE = "jarvis.internal"
READY_S = 20.0
_prefixes = itertools.count(1)


# -- the processes ---------------------------------------------------------------------


class Node:
    """One `jarvis-dns serve --store etcd://... --node NAME`, its output in a log file."""

    def __init__(self, name: str, store: str, data_dir: Path, *extra: str) -> None:
        self.name = name
        self.http, self.dns = free_ports(2)
        self.url = f"http://127.0.0.1:{self.http}"
        data_dir.mkdir(parents=True, exist_ok=True)
        self.log_path = data_dir / f"node-{name}.log"
        args = ["--http", f"127.0.0.1:{self.http}", "--dns", f"127.0.0.1:{self.dns}"]
        args += ["--store", store, "--node", name, "--node-ttl", str(NODE_TTL)]
        args += ["--data-dir", str(data_dir), "--zones-dir", str(data_dir / "zones"), *extra]
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "jarvis_dns", "serve", *args],
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
            )

    def wait_ready(self, deadline: float) -> None:
        """HTTP answers, DNS answers, and the node sees all three members."""
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError(f"node {self.name} exited:\n{self.log_tail()}")
            with contextlib.suppress(httpx.HTTPError, OSError, dns.exception.DNSException):
                health = httpx.get(self.url + "/v1/health", timeout=0.5).json()
                members = health["cluster"]["members"]
                query = dns.message.make_query(ZONE + ".", "SOA")
                dns.query.udp(query, "127.0.0.1", port=self.dns, timeout=0.5)
                if sorted(members) == sorted(NAMES) and health["cluster"]["leader"]:
                    return
            time.sleep(0.05)
        raise AssertionError(f"node {self.name} not ready:\n{self.log_tail()}")

    @property
    def alive(self) -> bool:
        return self.proc.poll() is None

    def kill(self) -> None:
        """kill -9, by PID."""
        if self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGKILL)
        self.proc.wait(timeout=10)

    def stop(self) -> None:
        if self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.kill()

    def log_tail(self, lines: int = 80) -> str:
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])


@pytest.fixture(scope="module")
def etcd(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EtcdCluster]:
    with running(tmp_path_factory.mktemp("etcd"), size=3) as cluster:
        yield cluster


StartNodes = Callable[..., list[Node]]


@pytest.fixture
def start_nodes(tmp_path: Path) -> Iterator[StartNodes]:
    """start_nodes(etcd, *extra) -> [A, B, C], ready; all stopped by PID afterwards."""
    started: list[Node] = []

    def start(cluster: EtcdCluster, *extra: str) -> list[Node]:
        store = cluster.url(prefix=f"/cluster-test-{next(_prefixes)}")
        nodes = [Node(name, store, tmp_path / name, *extra) for name in NAMES]
        started.extend(nodes)
        deadline = time.monotonic() + READY_S
        for node in nodes:
            node.wait_ready(deadline)
        return nodes

    yield start
    for node in started:
        node.stop()


@pytest.fixture
async def http() -> AsyncIterator[httpx.AsyncClient]:
    limits = httpx.Limits(max_connections=200, max_keepalive_connections=200)
    async with httpx.AsyncClient(timeout=10, limits=limits) as client:
        yield client


# -- helpers --------------------------------------------------------------------------------


def instance(svc: str, iid: int, **kw: Any) -> dict[str, Any]:
    return {"service_type": svc, "instance_id": iid, "host": "127.0.0.1", "port": 7000 + iid, **kw}


async def register(http: httpx.AsyncClient, node: Node, body: dict[str, Any]) -> dict[str, Any]:
    answer = await http.post(node.url + "/v1/instances", json=body)
    assert answer.status_code in (200, 201), answer.text
    result: dict[str, Any] = answer.json()
    return result


async def beat(http: httpx.AsyncClient, node: Node, svc: str, iid: int, **body: Any) -> None:
    path = f"/v1/services/{svc}/instances/{iid}/heartbeat"
    answer = await http.put(node.url + path, json=body)
    assert answer.status_code == 200, answer.text


async def get(http: httpx.AsyncClient, node: Node, svc: str, iid: int) -> dict[str, Any] | None:
    answer = await http.get(f"{node.url}/v1/services/{svc}/instances/{iid}")
    if answer.status_code == 404:
        return None
    assert answer.status_code == 200, answer.text
    result: dict[str, Any] = answer.json()
    return result


async def events(http: httpx.AsyncClient, node: Node) -> list[dict[str, Any]]:
    body = (await http.get(node.url + "/v1/events")).json()
    found: list[dict[str, Any]] = body["events"]
    return found


async def health(http: httpx.AsyncClient, node: Node) -> dict[str, Any]:
    result: dict[str, Any] = (await http.get(node.url + "/v1/health")).json()
    return result


async def srv(node: Node, svc: str, timeout: float = 0.5) -> list[tuple[int, str]]:
    """(priority, target) of every SRV record node's DNS gives for _svc._tcp."""
    query = dns.message.make_query(f"_{svc}._tcp.{ZONE}.", "SRV")
    reply = await dns.asyncquery.udp(query, "127.0.0.1", port=node.dns, timeout=timeout)
    return sorted(
        (rr.priority, rr.target.to_text())
        for rrset in reply.answer
        if rrset.rdtype == dns.rdatatype.SRV
        for rr in rrset
    )


def target(svc: str, iid: int) -> str:
    return f"{iid}.{svc}.{ZONE}."


async def until(check: Callable[[], Awaitable[Any]], timeout: float, what: str) -> Any:
    """Poll an async check (every 2 ms: these tests time propagation) until it is truthy."""
    deadline = time.monotonic() + timeout
    while True:
        result = await check()
        if result:
            return result
        assert time.monotonic() < deadline, f"not within {timeout:g} s: {what}"
        await asyncio.sleep(0.002)


async def keep_beating(
    http: httpx.AsyncClient, node: Node, keys: list[tuple[str, int]], every: float = 1.0
) -> None:
    while True:
        for svc, iid in keys:
            await beat(http, node, svc, iid)
        await asyncio.sleep(every)


@contextlib.asynccontextmanager
async def background(work: Awaitable[None]) -> AsyncIterator[asyncio.Task[None]]:
    task = asyncio.ensure_future(work)
    try:
        yield task
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


def kinds_for(found: list[dict[str, Any]], svc: str, iid: int) -> list[str]:
    return [e["kind"] for e in found if e["service_type"] == svc and e["instance_id"] == iid]


# -- a change on one node, everywhere -------------------------------------------------------


async def test_a_change_on_one_node_reaches_every_node(
    etcd: EtcdCluster, start_nodes: StartNodes, http: httpx.AsyncClient
) -> None:
    a, b, c = start_nodes(etcd)

    # Registered on A: C's DNS answers it within 100 ms of A's 201.
    await register(http, a, instance("web", 1, ttl_s=TTL))
    acked = time.monotonic()
    await until(lambda: srv(c, "web"), 1.0, "C's DNS answers web/1")
    assert time.monotonic() - acked <= 0.1
    assert await srv(c, "web") == [(0, target("web", 1))]

    # Heartbeats sent only to B keep it alive past its ttl_s; a twin nobody beats expires.
    await register(http, a, instance("web", 2, ttl_s=TTL))
    async with background(keep_beating(http, b, [("web", 1)])):

        async def twin_dead() -> bool:
            found = [await get(http, n, "web", 2) for n in (a, b, c)]
            return all(f is not None and f["status"] == "dead" for f in found)

        await until(twin_dead, TTL + NODE_TTL + 3, "web/2 expired on every node")
        for node in (a, b, c):
            kept = await get(http, node, "web", 1)
            assert kept is not None and kept["status"] == "active", node.name
            assert "ttl expired" not in kinds_for(await events(http, node), "web", 1)

    # A busy flip on C shows in A's SRV priority (10) within 200 ms, and back to 0.
    await beat(http, c, "web", 1, busy=True)
    flipped = time.monotonic()
    await until(lambda: _priority_is(a, "web", 1, 10), 1.0, "A's SRV has web/1 at priority 10")
    assert time.monotonic() - flipped <= 0.2
    answer = await http.put(c.url + "/v1/services/web/instances/1/status", json={"busy": False})
    assert answer.status_code == 200, answer.text
    flipped = time.monotonic()
    await until(lambda: _priority_is(a, "web", 1, 0), 1.0, "A's SRV has web/1 at priority 0")
    assert time.monotonic() - flipped <= 0.2

    # Each node's /metrics has the cluster's figures: three members, one leader of them.
    figures = [await cluster_figures(http, node) for node in (a, b, c)]
    assert [f["jarvis_cluster_members"] for f in figures] == [3, 3, 3]
    assert sum(f["jarvis_cluster_leader"] for f in figures) == 1
    assert all(f["jarvis_store_view_age_seconds"] == 0 and f["jarvis_store_up"] for f in figures)


async def cluster_figures(http: httpx.AsyncClient, node: Node) -> dict[str, float]:
    from prometheus_client.parser import text_string_to_metric_families

    text = (await http.get(node.url + "/metrics")).text
    wanted = {"jarvis_cluster_members", "jarvis_cluster_leader"}
    wanted |= {"jarvis_store_view_age_seconds", "jarvis_store_up"}
    return {
        s.name: s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
        if s.name in wanted
    }


async def _priority_is(node: Node, svc: str, iid: int, priority: int) -> bool:
    return (priority, target(svc, iid)) in await srv(node, svc)


# -- kill -9 a node ---------------------------------------------------------------------------


class HealthEndpoint:
    """The instances' /check/<n> endpoints: always 500, recording when each was probed."""

    def __init__(self) -> None:
        self.hits: dict[int, list[float]] = {}
        self.port = 0
        self._runner: web.AppRunner | None = None

    async def start(self) -> None:
        async def check(request: web.Request) -> web.Response:
            n = int(request.match_info["n"])
            self.hits.setdefault(n, []).append(time.monotonic())
            return web.Response(status=500, text=f"sick {n}")

        app = web.Application()
        app.router.add_get("/check/{n}", check)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        self.port = int(self._runner.addresses[0][1])

    def probed_since(self, n: int, since: float) -> bool:
        return any(t > since for t in self.hits.get(n, []))

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()


@pytest.fixture
async def endpoint() -> AsyncIterator[HealthEndpoint]:
    served = HealthEndpoint()
    await served.start()
    yield served
    await served.stop()


async def test_kill_9_a_node_loses_nothing_and_its_work_moves(
    etcd: EtcdCluster,
    start_nodes: StartNodes,
    http: httpx.AsyncClient,
    endpoint: HealthEndpoint,
) -> None:
    a, b, c = start_nodes(etcd)
    checked = list(range(1, 13))
    for n in checked:  # long TTLs: only the checks matter for these
        check = {"path": f"/check/{n}", "interval_s": 1, "failures_before_dead": 100}
        body = instance("checked", n, port=endpoint.port, ttl_s=300, check=check)
        await register(http, a, body)
    mine = [n for n in checked if owner(("checked", str(n)), NAMES) == "A"]
    assert mine, "rendezvous gives A none of 12 instances: pick more"
    await until(
        lambda: _true(all(endpoint.hits.get(n) for n in checked)),
        10,
        "every checked instance probed once",
    )
    scheduled = [(await health(http, n))["monitor"]["checks_scheduled"] for n in (a, b, c)]
    assert scheduled[0] == len(mine) and sum(scheduled) == len(checked)  # each by one node

    # Instances whose client beats A, then B once A is gone; a twin nobody beats.
    kept = [("kept", n) for n in (1, 2, 3)]
    for svc, n in kept:
        await register(http, a, instance(svc, n, ttl_s=TTL))
    await register(http, a, instance("kept", 9, ttl_s=TTL))

    # A registration flood on A, killed -9 in the middle of it.
    acked: list[int] = []
    ids = itertools.count(1)

    async def flood() -> None:
        while True:
            n = next(ids)
            try:
                answer = await http.post(
                    a.url + "/v1/instances", json=instance("flood", n, ttl_s=300)
                )
            except httpx.HTTPError:
                return
            if answer.status_code == 201:
                acked.append(n)

    workers = [asyncio.ensure_future(flood()) for _ in range(16)]
    async with background(keep_beating(http, a, kept, every=0.5)):
        await until(lambda: _true(len(acked) >= 100), 20, "100 registrations on A")
    a.kill()
    killed = time.monotonic()
    await asyncio.wait_for(asyncio.gather(*workers), 10)
    async with background(keep_beating(http, b, kept)):
        # Nothing acknowledged is lost: every 201 from A is on B and C.
        for node in (b, c):

            async def has_all(node: Node = node) -> bool:
                got = (await http.get(node.url + "/v1/services/flood")).json()["instances"]
                return set(acked) <= {i["instance_id"] for i in got}

            await until(has_all, 5, f"every acknowledged registration on {node.name}")

        # A's checks are run by B or C within one node TTL (and one check interval).
        for n in mine:
            await until(
                lambda n=n: _true(endpoint.probed_since(n, killed)),
                NODE_TTL + 1 + 2,
                f"checked/{n} (A's) probed again",
            )
        took = max(min(t for t in endpoint.hits[n] if t > killed) for n in mine) - killed
        assert took <= NODE_TTL + 1 + 1, f"A's checks moved after {took:.2f} s"
        for node in (b, c):
            health_now = await health(http, node)
            assert health_now["cluster"]["members"] == ["B", "C"]
            assert health_now["cluster"]["leader"] in ("B", "C")

            # The probing node keeps the output at once; the other hears of it through
            # the next liveness flush (--liveness-flush, 1 s) and its watch.
            async def sick_shown(node: Node = node) -> bool:
                shown = await get(http, node, "checked", mine[0])
                return shown is not None and shown["check_output"].startswith("HTTP 500: sick")

            await until(sick_shown, 5, f"A's check output on {node.name}")
        scheduled = [(await health(http, n))["monitor"]["checks_scheduled"] for n in (b, c)]
        assert sum(scheduled) == len(checked)

        # The instances A kept alive stay alive on the beats B gets; the twin expires.
        async def twin_dead() -> bool:
            found = [await get(http, n, "kept", 9) for n in (b, c)]
            return all(f is not None and f["status"] == "dead" for f in found)

        await until(twin_dead, TTL + 2 * NODE_TTL + 3, "kept/9 expired on B and C")
        for node in (b, c):
            for svc, n in kept:
                shown = await get(http, node, svc, n)
                assert shown is not None and shown["status"] == "active", (node.name, n)
                assert "ttl expired" not in kinds_for(await events(http, node), svc, n)


async def _true(value: bool) -> bool:
    return value


# -- etcd loses a member, then quorum -------------------------------------------------------


async def test_etcd_quorum_lost_and_regained(
    tmp_path: Path, start_nodes: StartNodes, http: httpx.AsyncClient
) -> None:
    with running(tmp_path / "etcd-own", size=3) as own:
        a, b, c = start_nodes(own)
        await register(http, a, instance("q", 1, ttl_s=60))
        await until(lambda: srv(c, "q"), 2, "C answers q/1")

        # One member of three down (kill -9): writes, heartbeats and DNS go on.
        first, second, _third = own.members
        first.kill()
        await register(http, b, instance("q", 2, ttl_s=60))
        await beat(http, c, "q", 1)
        for node in (a, b, c):
            await until(lambda node=node: _has(node, "q", {1, 2}), 5, f"{node.name} answers q/2")

        # Two down: no quorum. Writes get a 503 with a JSON error; DNS answers from the view.
        second.kill()
        for node in (a, b, c):
            began = time.monotonic()
            answer = await http.post(node.url + "/v1/instances", json=instance("q", 3))
            assert time.monotonic() - began < 8, "a write without quorum must fail in bounded time"
            assert answer.status_code == 503, answer.text
            assert answer.json()["error"]["code"] == "store_unavailable"
            assert await srv(node, "q") == [(0, target("q", 1)), (0, target("q", 2))]
            listed = (await http.get(node.url + "/v1/services/q")).json()["instances"]
            assert {i["instance_id"] for i in listed} == {1, 2}

        async def degraded(node: Node) -> bool:
            now = await health(node=node, http=http)
            return bool(now["status"] == "degraded" and now["store"]["state"] == "unavailable")

        for node in (a, b, c):
            await until(lambda node=node: degraded(node), 10, f"{node.name} says degraded")

        # Both back: writes come back on every node, none restarted.
        first.start()
        second.start()
        own.wait_healthy([first, second])
        for i, node in enumerate((a, b, c)):
            body = instance("q", 10 + i, ttl_s=60)

            async def written(node: Node = node, body: dict[str, Any] = body) -> bool:
                answer = await http.post(node.url + "/v1/instances", json=body)
                return answer.status_code == 201

            await until(written, 30, f"a write on {node.name} after recovery")
        for node in (a, b, c):
            await until(
                lambda node=node: _has(node, "q", {1, 2, 10, 11, 12}), 5, f"{node.name} sees all"
            )

            async def ok(node: Node = node) -> bool:
                now = await health(http, node)
                return bool(now["status"] == "ok" and now["store"]["state"] == "ok")

            await until(ok, 10, f"{node.name} healthy again")
        assert all(node.alive for node in (a, b, c))
        for node in (a, b, c):
            node.stop()


async def _has(node: Node, svc: str, ids: set[int]) -> bool:
    try:
        found = await srv(node, svc)
    except dns.exception.Timeout:
        return False
    return {target(svc, i) for i in ids} <= {name for _, name in found}


# -- concurrent changes of one instance on three nodes ------------------------------------


async def test_concurrent_flips_on_three_nodes_end_alike_in_one_order(
    etcd: EtcdCluster, start_nodes: StartNodes, http: httpx.AsyncClient
) -> None:
    nodes = start_nodes(etcd)
    await register(http, nodes[0], instance("flip", 1, ttl_s=300))

    async def flip(i: int) -> tuple[int, bool]:
        busy = i % 2 == 0
        node = nodes[i % 3]
        path = "/v1/services/flip/instances/1/status"
        answer = await http.put(node.url + path, json={"busy": busy})
        assert answer.status_code == 200, answer.text
        shown = answer.json()
        assert shown["busy"] is busy
        return shown["modify_index"], busy

    acked = await asyncio.gather(*(flip(i) for i in range(100)))

    final = max(index for index, _ in acked)
    for node in nodes:
        await until(
            lambda node=node: _index_at_least(http, node, final), 5, f"{node.name} caught up"
        )
    states = [await get(http, node, "flip", 1) for node in nodes]
    assert all(s is not None for s in states)
    assert len({(s["busy"], s["modify_index"]) for s in states if s}) == 1
    logs = [[e for e in await events(http, node) if e["service_type"] == "flip"] for node in nodes]
    assert logs[0] == logs[1] == logs[2]  # one order, the same indexes, on every node

    flips = [e for e in logs[0] if e["kind"] in ("busy", "idle")]
    indexes = [e["index"] for e in flips]
    assert indexes == sorted(set(indexes))
    assert [e["kind"] for e in flips] == ["busy", "idle"] * (len(flips) // 2) + ["busy"] * (
        len(flips) % 2
    )  # every event is a change: they alternate, starting from idle
    assert states[0] is not None and states[0]["busy"] is (flips[-1]["kind"] == "busy")

    def busy_at(index: int) -> bool:
        before = [e for e in flips if e["index"] <= index]
        return bool(before) and before[-1]["kind"] == "busy"

    # Every acknowledged change holds at the index it was answered with: none was lost.
    for index, busy in acked:
        assert busy_at(index) is busy, (index, busy)


async def _index_at_least(http: httpx.AsyncClient, node: Node, index: int) -> bool:
    return bool((await health(http, node))["index"] >= index)


# -- TTL expiry, once for the cluster --------------------------------------------------------


async def test_a_ttl_expires_once_whichever_node_got_the_beats(
    etcd: EtcdCluster, start_nodes: StartNodes, http: httpx.AsyncClient
) -> None:
    nodes = start_nodes(etcd)
    for n, _ in enumerate(nodes):
        await register(http, nodes[0], instance("short", n, ttl_s=TTL))
    for _ in range(2):  # instance n beaten by node n only, then silence
        for n, node in enumerate(nodes):
            await beat(http, node, "short", n)
        await asyncio.sleep(1.0)

    async def all_dead() -> bool:
        for node in nodes:
            for n in range(len(nodes)):
                shown = await get(http, node, "short", n)
                if shown is None or shown["status"] != "dead":
                    return False
        return True

    await until(all_dead, TTL + NODE_TTL + 5, "every short/n dead on every node")
    # A write after the expiries, seen by every node: the logs hold everything before it.
    mark = await register(http, nodes[1], instance("mark", 1, ttl_s=300))
    for node in nodes:
        await until(
            lambda node=node: _index_at_least(http, node, mark["create_index"]), 5, node.name
        )
    logs = [await events(http, node) for node in nodes]
    assert logs[0] == logs[1] == logs[2]
    for n in range(len(nodes)):
        assert kinds_for(logs[0], "short", n).count("ttl expired") == 1, n


# -- the Python client with three URLs ----------------------------------------------------------

CLIENT_PROGRAM = """
import asyncio

from dns_client import DNSClient, ServiceConfig


async def main():
    client = DNSClient(heartbeat_interval=1.0)  # DNS_SERVER_URL: three node URLs
    config = ServiceConfig("kept-by-client", 1, port=7001, host="127.0.0.1", ttl_s=@TTL@)
    ok = await client.register_service(config)
    print("registered" if ok else "registration failed", flush=True)
    await asyncio.Event().wait()


asyncio.run(main())
"""


async def test_the_python_client_with_three_urls_survives_a_node_kill(
    etcd: EtcdCluster, start_nodes: StartNodes, http: httpx.AsyncClient, tmp_path: Path
) -> None:
    a, b, c = start_nodes(etcd)
    program = tmp_path / "client_program.py"
    program.write_text(CLIENT_PROGRAM.replace("@TTL@", str(TTL)))
    env = {
        **os.environ,
        "DNS_SERVER_URL": ",".join(n.url for n in (a, b, c)),
        "PYTHONPATH": str(REPO),
        "PYTHONUNBUFFERED": "1",
    }
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        str(program),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
        env=env,
        cwd=str(tmp_path),
        preexec_fn=default_sigint,
    )
    try:
        assert proc.stdout is not None
        line = await asyncio.wait_for(proc.stdout.readline(), 20)
        assert line.decode().strip() == "registered"
        await register(http, a, instance("twin", 1, ttl_s=TTL))  # nobody beats this one
        await until(lambda: _has(c, "kept-by-client", {1}), 2, "C answers the client's")

        a.kill()  # the client's first URL
        killed = time.time()

        async def twin_dead_and_beats_went_on() -> bool:
            twin = await get(http, b, "twin", 1)
            kept = await get(http, b, "kept-by-client", 1)
            assert kept is not None and kept["status"] == "active"
            done = twin is not None and twin["status"] == "dead"
            return done and kept["last_heartbeat"] > killed + TTL

        await until(twin_dead_and_beats_went_on, TTL + 2 * NODE_TTL + 5, "client beats B")
        for node in (b, c):
            kept = await get(http, node, "kept-by-client", 1)
            assert kept is not None and kept["status"] == "active", node.name
            assert "ttl expired" not in kinds_for(await events(http, node), "kept-by-client", 1)
            assert await _has(node, "kept-by-client", {1})
    finally:
        if proc.returncode is None:
            os.kill(proc.pid, signal.SIGKILL)
        await proc.wait()
