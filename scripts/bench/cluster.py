"""Cluster benchmark: three etcd members and three jarvis-dns nodes on this machine.

    .venv/bin/python scripts/bench/cluster.py [--seconds 10] [--node-ttl 10] [--quick]

Measures, in one run:
* cross-node propagation: a registration (or a busy flip) sent to one node, timed until
  another node's DNS answers it (p50/p99 from the write's 2xx; goal p99 <= 100 ms);
* heartbeats/s (steady metrics, and metrics changing with every beat) and
  registrations/s across the three nodes (one wrk per node, run together) beside the
  single SQLite node under the same three wrks (goal for heartbeats: >= 0.8 x the
  single node); and heartbeats over a fleet large enough that every beat costs etcd a
  lease keepalive, as in a real fleet beating every 10 s (each instance beaten through
  one node only, about once a second at most);
* the time from a node's kill -9 until its share of the active checks runs elsewhere.

The servers (etcd members, nodes, the single node) share core 0; wrk, the probes and
this script run on core 1. --quick: short runs, a node TTL of 2 s, writes nothing.
"""

from __future__ import annotations

import sys

# This folder holds http.py and dns.py: keep it behind the standard library so `http`
# and `dns` mean the real packages.
sys.path.append(sys.path.pop(0))

import argparse
import asyncio
import contextlib
import dataclasses
import functools
import os
import re
import signal
import socket
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import IO

import _plot
import dns.message
import dns.rdatatype
import httpx
from _common import (
    ETCD,
    LOAD_CPU,
    PYTHON,
    SERVER_CPU,
    CpuUse,
    WrkResult,
    cpu_use,
    free_port,
    header,
    lua,
    median,
    pinned,
    require,
    stop,
    wait_http,
    write_section,
)

from jarvis_dns.cluster import owner

ZONE = "jarvis.internal"
NAMES = ("A", "B", "C")
TYPES = 100  # heartbeats spread over 100 service types, like a real fleet
SEEDED = 2000  # instances the heartbeat runs beat
# The fleet run's instances: more than the nodes beat in a second, so each lease gets
# about one keepalive per liveness flush (1 s), and every beat costs one.
FLEET = 24_000
QUICK_FLEET = 600
CONNECTIONS = 21  # per wrk: three wrks, 63 connections in all
CHECKED = 30  # instances with an active check, for the kill measurement
POLL_S = 0.0002  # between DNS polls: a fine grain without flooding the node
ROUNDS = 3  # heartbeat runs of each, taken in turn; the median counts
QUIET = 0.05  # of a core: servers using less than this are done with a run's work
QUIET_STEP_S = 0.25

REGISTER_LUA = """
counter = 0
request = function()
  counter = counter + 1
  local id = counter * 3 + @K@
  local body = string.format('{"service_type":"reg-%d","instance_id":%d,'
    .. '"host":"127.0.0.1","port":%d,"ttl_s":3600,'
    .. '"metadata":{"version":"1.0","tags":["a","b"]}}',
    id % @TYPES@, id, 1024 + id % 60000)
  return wrk.format("POST", "/v1/instances", {["Content-Type"]="application/json"}, body)
end
"""

HEARTBEAT_LUA = """
counter = @K@ * 1000
request = function()
  counter = counter + 1
  local id = counter % @N@ + 1
  local path = string.format("/v1/services/hb-%d/instances/%d/heartbeat", id % @TYPES@, id)
  return wrk.format("PUT", path, {["Content-Type"]="application/json"}, @BODY@)
end
"""
# The beat's body: the same metrics every time (after the first flush a beat is only a
# lease keepalive), or a load that changes with every beat (every flush then writes the
# beaten instances' live keys to etcd, and every node's watch reads them back).
STEADY_BODY = """'{"busy":false,"metrics":{"load":12}}'"""
CHANGING_BODY = """string.format('{"busy":false,"metrics":{"load":%d}}', counter % 97)"""
HEARTBEATS = {"heartbeat": STEADY_BODY, "heartbeat, metrics changing": CHANGING_BODY}
FLEET_ROW = "heartbeat, every beat a keepalive"

# Node K beats the fleet's ids K+1, K+4, K+7, ...: each instance talks to one node.
FLEET_LUA = """
counter = 0
request = function()
  counter = counter + 1
  local id = (counter % @THIRD@) * 3 + @K@ + 1
  local path = string.format("/v1/services/fleet-%d/instances/%d/heartbeat", id % @TYPES@, id)
  return wrk.format("PUT", path, {["Content-Type"]="application/json"}, @BODY@)
end
"""


# -- processes ---------------------------------------------------------------------------


class Etcd:
    """Three members on loopback, default Raft timings, data in a temporary folder."""

    def __init__(self, root: Path) -> None:
        ports = [free_port() for _ in range(6)]
        self.clients, self.peers = ports[:3], ports[3:]
        self.root = root
        self.procs: list[subprocess.Popen[bytes]] = []

    @property
    def url(self) -> str:
        return "etcd://" + ",".join(f"127.0.0.1:{p}" for p in self.clients)

    def start(self) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        cluster = ",".join(f"m{i}=http://127.0.0.1:{p}" for i, p in enumerate(self.peers))
        for i, (client, peer) in enumerate(zip(self.clients, self.peers, strict=True)):
            argv = [
                ETCD,
                f"--name=m{i}",
                f"--data-dir={self.root / f'm{i}'}",
                f"--listen-client-urls=http://127.0.0.1:{client}",
                f"--advertise-client-urls=http://127.0.0.1:{client}",
                f"--listen-peer-urls=http://127.0.0.1:{peer}",
                f"--initial-advertise-peer-urls=http://127.0.0.1:{peer}",
                f"--initial-cluster={cluster}",
                "--initial-cluster-state=new",
                "--log-level=warn",
            ]
            with open(self.root / f"m{i}.log", "ab") as log:
                self.procs.append(serve(argv, log))
        for client in self.clients:
            deadline = time.monotonic() + 30
            while not _etcd_healthy(client):
                if time.monotonic() > deadline:
                    raise RuntimeError(f"etcd on {client} is not healthy")
                time.sleep(0.05)

    def stop(self) -> None:
        for proc in self.procs:
            stop(proc)


def serve(argv: list[str], log: IO[bytes]) -> subprocess.Popen[bytes]:
    """A server on the server core, its output in a log file (never a pipe left unread)."""
    return subprocess.Popen(
        pinned(SERVER_CPU, argv), stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL
    )


def jarvis(http: int, dns_port: int, folder: Path, *extra: str) -> subprocess.Popen[bytes]:
    folder.mkdir(parents=True, exist_ok=True)
    argv = [PYTHON, "-m", "jarvis_dns", "serve", "--http", f"127.0.0.1:{http}"]
    argv += ["--dns", f"127.0.0.1:{dns_port}", "--log-level", "warning"]
    argv += ["--data-dir", str(folder), "--zones-dir", str(folder), *extra]
    with open(folder / "serve.log", "ab") as log:
        return serve(argv, log)


def _etcd_healthy(port: int) -> bool:
    try:
        return b'"true"' in httpx.get(f"http://127.0.0.1:{port}/health", timeout=1).content
    except httpx.HTTPError:
        return False


@dataclass
class Node:
    name: str
    http: int
    dns: int
    proc: subprocess.Popen[bytes]

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.http}"


def start_nodes(etcd: Etcd, data: Path, node_ttl: float) -> list[Node]:
    nodes = []
    for name in NAMES:
        http, dns_port = free_port(), free_port()
        argv = ["--store", etcd.url, "--node", name, "--node-ttl", f"{node_ttl:g}"]
        nodes.append(Node(name, http, dns_port, jarvis(http, dns_port, data / name, *argv)))
    deadline = time.monotonic() + 30
    for node in nodes:
        while True:
            with contextlib.suppress(httpx.HTTPError, ValueError, KeyError):
                cluster = httpx.get(node.url + "/v1/health", timeout=1).json()["cluster"]
                if len(cluster["members"]) == 3 and cluster["leader"]:
                    break
            if node.proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"node {node.name} did not start")
            time.sleep(0.05)
    return nodes


# -- load -----------------------------------------------------------------------------------


def wrk_together(urls: list[str], scripts: list[str], seconds: float) -> WrkResult:
    """One wrk per URL (1 thread each, on the load core), all at once; rates summed."""
    files, procs = [], []
    for url, script in zip(urls, scripts, strict=True):
        with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as f:
            f.write(script)
        files.append(f.name)
        argv = ["wrk", "-t1", f"-c{CONNECTIONS}", f"-d{max(1, int(seconds))}s", "--latency"]
        argv += ["-s", f.name, url]
        procs.append(subprocess.Popen(pinned(LOAD_CPU, argv), stdout=subprocess.PIPE, text=True))
    rps = p99 = 0.0
    errors = requests = 0
    for proc, name in zip(procs, files, strict=True):
        out, _ = proc.communicate()
        Path(name).unlink()
        rate = re.search(r"Requests/sec:\s+([\d.]+)", out)
        tail = re.search(r"99%\s+([\d.]+)(us|ms|s)", out)
        if not (rate and tail):
            raise RuntimeError(f"wrk said:\n{out}")
        rps += float(rate.group(1))
        scale = {"us": 0.001, "ms": 1.0, "s": 1000.0}[tail.group(2)]
        p99 = max(p99, float(tail.group(1)) * scale)
        non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
        errors += int(non2xx.group(1)) if non2xx else 0
        count = re.search(r"(\d+) requests in", out)
        requests += int(count.group(1)) if count else 0
    return WrkResult(rps, p99, errors, requests)


def seed(urls: list[str], count: int, prefix: str = "hb") -> None:
    """Register <prefix>-*/1..count for the heartbeat runs (set-up, not measured)."""

    async def run() -> None:
        limits = httpx.Limits(max_connections=64)
        async with httpx.AsyncClient(timeout=30, limits=limits) as client:
            gate = asyncio.Semaphore(64)

            async def one(i: int) -> None:
                body = {
                    "service_type": f"{prefix}-{i % TYPES}",
                    "instance_id": i,
                    "host": "127.0.0.1",
                    "port": 1024 + i,
                    "ttl_s": 3600,
                }
                async with gate:
                    for _ in range(3):  # a saturated machine may time a request out
                        url = urls[i % len(urls)] + "/v1/instances"
                        answer = await client.post(url, json=body)
                        if answer.status_code in (200, 201):
                            return
                        print(f"seed: {answer.status_code} {answer.text}", file=sys.stderr)
                    answer.raise_for_status()

            await asyncio.gather(*(one(i) for i in range(1, count + 1)))

    asyncio.run(run())


def registrations(urls: list[str], seconds: float) -> WrkResult:
    """Registrations/s with three wrks spread over urls."""
    targets = [urls[k % len(urls)] for k in range(3)]
    return wrk_together(targets, [lua(REGISTER_LUA, k=k, types=TYPES) for k in range(3)], seconds)


def heartbeats(urls: list[str], seconds: float, body: str = STEADY_BODY) -> WrkResult:
    """Heartbeats/s with three wrks spread over urls (the seeded instances)."""
    targets = [urls[k % len(urls)] for k in range(3)]
    scripts = [lua(HEARTBEAT_LUA, k=k, n=SEEDED, types=TYPES, body=body) for k in range(3)]
    return wrk_together(targets, scripts, seconds)


def fleet_heartbeats(urls: list[str], seconds: float, fleet: int) -> WrkResult:
    """Heartbeats/s over the fleet, node K's wrk beating its own third of it."""
    targets = [urls[k % len(urls)] for k in range(3)]
    scripts = [
        lua(FLEET_LUA, k=k, third=fleet // 3, types=TYPES, body=STEADY_BODY) for k in range(3)
    ]
    return wrk_together(targets, scripts, seconds)


def busy_after(pids: list[int], limit_s: float = 60.0) -> float:
    """Seconds until the processes, together, use under QUIET of a core: work a run
    handed them that they still owe when wrk stops (etcd renewing the leases of the last
    beats, a node's last liveness flush)."""
    began = time.monotonic()
    last = _cpu(pids).total
    while time.monotonic() - began < limit_s:
        time.sleep(QUIET_STEP_S)
        now = _cpu(pids).total
        if now - last < QUIET * QUIET_STEP_S:
            return time.monotonic() - began - QUIET_STEP_S
        last = now
    return limit_s


def _cpu(pids: list[int]) -> CpuUse:
    uses = [cpu_use(pid) for pid in pids]
    return CpuUse(sum(u.main for u in uses), sum(u.others for u in uses))


@dataclass(frozen=True)
class Run:
    """One heartbeat run: wrk's result (its rate the sustained one) and the CPU each
    group of servers spent on it, owed work included."""

    result: WrkResult
    cpu: dict[str, CpuUse]

    def us_per_request(self, group: str, main_only: bool = False) -> float:
        use = self.cpu[group]
        spent = use.main if main_only else use.total
        return spent / max(1, self.result.requests) * 1e6


def sustained(
    beat: Callable[[list[str]], WrkResult],
    urls: list[str],
    groups: dict[str, list[int]],
    seconds: float,
) -> Run:
    """beat(urls)'s rate over its own time plus the time the servers stayed busy after
    it: what they sustain, not what they answer while deferring the rest."""
    before = {name: _cpu(pids) for name, pids in groups.items()}
    result = beat(urls)
    owed = busy_after([pid for pids in groups.values() for pid in pids])
    cpu = {name: _cpu(pids) - before[name] for name, pids in groups.items()}
    return Run(dataclasses.replace(result, rps=result.rps * seconds / (seconds + owed)), cpu)


def settled(etcd: Etcd, quiet_s: float = 1.0, limit_s: float = 15.0) -> None:
    """Until etcd's revision holds still for quiet_s: the last run's liveness writes
    are done, and the next run (the single node's, say) does not pay for them."""
    url = f"http://127.0.0.1:{etcd.clients[0]}/v3/kv/range"
    body = {"key": "AA=="}  # any key: the answer's header carries the revision
    deadline = time.monotonic() + limit_s
    last, since = -1, time.monotonic()
    while time.monotonic() < deadline:
        revision = int(httpx.post(url, json=body, timeout=5).json()["header"]["revision"])
        if revision != last:
            last, since = revision, time.monotonic()
        elif time.monotonic() - since >= quiet_s:
            return
        time.sleep(0.1)


# -- propagation ----------------------------------------------------------------------------


class Dns:
    """Raw UDP queries to one node's DNS, from this process."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.settimeout(0.5)

    def ask(self, name: str, rdtype: str) -> dns.message.Message | None:
        query = dns.message.make_query(name, rdtype)
        self.sock.sendto(query.to_wire(), ("127.0.0.1", self.port))
        try:
            while True:
                reply = dns.message.from_wire(self.sock.recv(4096))
                if reply.id == query.id:
                    return reply
        except TimeoutError:
            return None

    def close(self) -> None:
        self.sock.close()


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def propagation(nodes: list[Node], rounds: int) -> dict[str, list[float]]:
    """Seconds from a write's 2xx on node i to node i+1's DNS showing it."""
    took: dict[str, list[float]] = {"register": [], "busy flip": []}
    resolvers = [Dns(n.dns) for n in nodes]
    with httpx.Client(timeout=10) as client:
        for i in range(rounds):
            writer, reader = nodes[i % 3], resolvers[(i + 1) % 3]
            body = {"service_type": "lat", "instance_id": i, "host": "127.0.0.1", "port": 9000}
            client.post(writer.url + "/v1/instances", json={**body, "ttl_s": 3600})
            acked = time.perf_counter()
            name = f"{i}.lat.{ZONE}."
            while not ((reply := reader.ask(name, "A")) and reply.answer):
                time.sleep(POLL_S)
            took["register"].append(time.perf_counter() - acked)

            busy = i % 2 == 0
            path = "/v1/services/lat/instances/0/status"
            client.put(writer.url + path, json={"busy": busy})
            acked = time.perf_counter()
            while _priority(reader, "0._lat._tcp." + ZONE + ".") != (10 if busy else 0):
                time.sleep(POLL_S)
            took["busy flip"].append(time.perf_counter() - acked)
    for resolver in resolvers:
        resolver.close()
    return took


def _priority(resolver: Dns, name: str) -> int | None:
    reply = resolver.ask(name, "SRV")
    if reply is None:
        return None
    for rrset in reply.answer:
        if rrset.rdtype == dns.rdatatype.SRV:
            for rr in rrset:
                return int(rr.priority)
    return None


# -- a node's death and its checks --------------------------------------------------------------


class Probed(ThreadingHTTPServer):
    """The checked instances' /check/<n>: 200, noting when each was probed."""

    daemon_threads = True

    def __init__(self) -> None:
        self.hits: dict[int, list[float]] = {}
        self.lock = threading.Lock()
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                n = int(self.path.rsplit("/", 1)[1])
                with server.lock:
                    server.hits.setdefault(n, []).append(time.monotonic())
                body = b'{"status":"ok"}'
                self.send_response(200)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: object) -> None:
                pass

        super().__init__(("127.0.0.1", 0), Handler)

    def first_after(self, n: int, since: float) -> float | None:
        with self.lock:
            later = [t for t in self.hits.get(n, []) if t > since]
        return min(later) if later else None


@dataclass
class Takeover:
    node_ttl: float
    moved: int
    first_s: float
    last_s: float


def takeover(nodes: list[Node], node_ttl: float) -> Takeover:
    """Kill -9 node A; seconds until each of its checks (1 s interval) ran on B or C."""
    server = Probed()
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    port = server.server_address[1]
    try:
        with httpx.Client(timeout=10) as client:
            for n in range(CHECKED):
                check = {"path": f"/check/{n}", "interval_s": 1}
                body = {"service_type": "checked", "instance_id": n, "host": "127.0.0.1"}
                body |= {"port": port, "ttl_s": 3600, "check": check}
                client.post(nodes[0].url + "/v1/instances", json=body).raise_for_status()
        mine = [n for n in range(CHECKED) if owner(("checked", str(n)), NAMES) == "A"]
        deadline = time.monotonic() + 30
        while not all(server.hits.get(n) for n in range(CHECKED)):
            if time.monotonic() > deadline:
                raise RuntimeError("the checks did not all run")
            time.sleep(0.05)
        a = nodes[0].proc
        os.kill(a.pid, signal.SIGKILL)
        a.wait()
        killed = time.monotonic()
        deadline = killed + node_ttl + 30
        while True:
            moved = [server.first_after(n, killed) for n in mine]
            if all(t is not None for t in moved):
                break
            if time.monotonic() > deadline:
                raise RuntimeError("A's checks did not move")
            time.sleep(0.01)
        delays = [t - killed for t in moved if t is not None]
        return Takeover(node_ttl, len(mine), min(delays), max(delays))
    finally:
        server.shutdown()
        server.server_close()


# -- the run -----------------------------------------------------------------------------------


@dataclass
class Results:
    took: dict[str, list[float]]
    cluster: dict[str, WrkResult]
    single: dict[str, WrkResult]
    kill: Takeover
    fleet: int  # instances of the every-beat-a-keepalive run
    cpu: dict[str, tuple[Run, Run]]  # heartbeat row -> the single node's, the cluster's


@contextlib.contextmanager
def load_core() -> Iterator[None]:
    """This process on the load core while it measures (the servers have core 0)."""
    if not hasattr(os, "sched_setaffinity") or (os.cpu_count() or 1) < 2:
        yield
        return
    before = os.sched_getaffinity(0)
    os.sched_setaffinity(0, {int(LOAD_CPU)})
    try:
        yield
    finally:
        os.sched_setaffinity(0, before)


def run(seconds: float, rounds: int, node_ttl: float, fleet: int) -> Results:
    with tempfile.TemporaryDirectory() as data, load_core():
        root = Path(data)
        http, dns_port = free_port(), free_port()
        single = jarvis(http, dns_port, root / "single")
        alone_url = f"http://127.0.0.1:{http}"
        etcd = Etcd(root / "etcd")
        nodes: list[Node] = []
        try:
            wait_http(f"{alone_url}/v1/health")
            cpu: dict[str, tuple[Run, Run]] = {}
            alone = {"register": registrations([alone_url], seconds)}
            seed([alone_url], SEEDED)
            seed([alone_url], fleet, "fleet")
            etcd.start()
            nodes = start_nodes(etcd, root / "nodes", node_ttl)
            urls = [n.url for n in nodes]
            took = propagation(nodes, rounds)
            together = {"register": registrations(urls, seconds)}
            seed(urls, SEEDED)
            seed(urls, fleet, "fleet")
            # Heartbeats, the single node's and the cluster's in turn (each idle while
            # the other runs), ROUNDS times: one run moves by 10-30% on this machine.
            # Each rate is a sustained one (see sustained()).
            alone_pids = {"single": [single.pid]}
            servers = {"nodes": [n.proc.pid for n in nodes], "etcd": [p.pid for p in etcd.procs]}
            runs: dict[str, Callable[[list[str]], WrkResult]] = {
                name: functools.partial(heartbeats, seconds=seconds, body=body)
                for name, body in HEARTBEATS.items()
            }
            runs[FLEET_ROW] = functools.partial(fleet_heartbeats, seconds=seconds, fleet=fleet)
            for name, beat in runs.items():
                singles, clusters = [], []
                for _ in range(ROUNDS):
                    singles.append(sustained(beat, [alone_url], alone_pids, seconds))
                    clusters.append(sustained(beat, urls, servers, seconds))
                    settled(etcd)
                single_run, cluster_run = median(singles, run_rps), median(clusters, run_rps)
                alone[name], together[name] = single_run.result, cluster_run.result
                cpu[name] = (single_run, cluster_run)
            kill = takeover(nodes, node_ttl)
        finally:
            for node in nodes:
                stop(node.proc)
            etcd.stop()
            stop(single)
    return Results(took, together, alone, kill, fleet, cpu)


def rps(result: WrkResult) -> float:
    return result.rps


def run_rps(run: Run) -> float:
    return run.result.rps


def report(results: Results, command: str, seconds: float, rounds: int) -> str:
    kill, fleet = results.kill, results.fleet
    per_instance = results.cluster[FLEET_ROW].rps / fleet
    lines = [
        header("Cluster: three etcd members, three nodes", command),
        f"One machine: etcd {_etcd_version()} (three members, default Raft timings) and "
        f"three nodes (A, B, C) share core {SERVER_CPU} with the single SQLite node they "
        f"are compared with; wrk, the DNS probes and this script run on core {LOAD_CPU}.",
        "",
        f"Propagation, {rounds} rounds: a write to node i, then node i+1's DNS asked until "
        "it answers (from the write's 2xx; a registration is looked up as "
        "`<id>.lat.jarvis.internal A`, a busy flip as the instance's SRV priority).",
        "",
        "| change | p50 | p99 | max | goal |",
        "| --- | ---: | ---: | ---: | --- |",
    ]
    for name, took in results.took.items():
        ms = [t * 1000 for t in took]
        lines.append(
            f"| {name} | {percentile(ms, 0.5):.1f} ms | {percentile(ms, 0.99):.1f} ms | "
            f"{max(ms):.1f} ms | p99 <= 100 ms |"
        )
    lines += [
        "",
        f"Throughput: three wrks at once (1 thread, {CONNECTIONS} connections each, "
        f"{seconds:g} s), one per node in the cluster, all three on the single node. "
        f"Heartbeats rotate over {SEEDED} instances in {TYPES} service types; they ran "
        f"{ROUNDS} times, the single node's and the cluster's in turn, and each figure "
        "is its median run, its rate taken over the run and the time the servers stayed "
        "busy after it (etcd renewing the last beats' leases, say), so it is a rate they "
        "sustain. A steady beat carries the same metrics each time; a "
        "changing one a load that differs with every beat. Those 2000 instances are "
        "beaten many times a second each, so a node's flush (once a second) keeps "
        "each lease alive with one keepalive for dozens of beats. In a real fleet an "
        "instance beats every 10 s through one node, and every beat costs etcd a "
        f"keepalive: the last row beats {fleet:,} instances, each through one node "
        f"only (steady metrics): {per_instance:.2f} beats per instance per second in "
        "the cluster, and a lease gets at most one keepalive a second, so below 1 every "
        "beat is a keepalive of its own.",
        "",
        "| operation | cluster req/s | p99 | single SQLite node req/s | p99 | ratio | non-2xx |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for name in (*HEARTBEATS, "register", FLEET_ROW):
        ours, ref = results.cluster[name], results.single[name]
        lines.append(
            f"| {name} | {ours.rps:,.0f} | {ours.p99_ms:.1f} ms | {ref.rps:,.0f} | "
            f"{ref.p99_ms:.1f} ms | {ours.rps / ref.rps:.2f} | {ours.errors + ref.errors} |"
        )
    lines += ["", *cpu_table(results.cpu)]
    lines += [
        "",
        f"Node death: `kill -9` of node A with --node-ttl {kill.node_ttl:g}; its "
        f"{kill.moved} of {CHECKED} active checks (1 s interval) ran on B or C "
        f"{kill.first_s:.2f} s (first) to {kill.last_s:.2f} s (last) after the kill "
        "(bound: one node TTL for etcd to drop A's lease, then up to one check interval "
        "of stagger).",
    ]
    return "\n".join(lines)


def cpu_table(cpu: dict[str, tuple[Run, Run]]) -> list[str]:
    """Where a heartbeat's CPU goes, and the ratio etcd's share alone allows."""
    lines = [
        "CPU per heartbeat in the median runs above (µs, user + system from /proc, over "
        "the run and the work the servers owed after it): the single node's, its event "
        "loop's part, and the cluster's three nodes and three etcd members, each group "
        "together. All the servers share one core, so a rate is about that core over the "
        "CPU per beat. A node answers a beat with at least the work of the single node's "
        "event loop, so the cluster's ratio can be no higher than single / (event loop + "
        "etcd), however cheap the nodes became: etcd's share alone sets that ceiling.",
        "",
        "| operation | single node | its event loop | cluster nodes | etcd members | CPU ratio "
        "| ceiling from etcd |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for name, (single, cluster) in cpu.items():
        alone, loop = single.us_per_request("single"), single.us_per_request("single", True)
        nodes, etcd = cluster.us_per_request("nodes"), cluster.us_per_request("etcd")
        lines.append(
            f"| {name} | {alone:,.0f} | {loop:,.0f} | {nodes:,.0f} | {etcd:,.0f} | "
            f"{alone / (nodes + etcd):.2f} | {alone / (loop + etcd):.2f} |"
        )
    return lines


def _etcd_version() -> str:
    out = subprocess.run([ETCD, "--version"], capture_output=True, text=True).stdout
    return out.split()[2] if len(out.split()) > 2 else "?"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--rounds", type=int, default=300)
    parser.add_argument("--node-ttl", type=float, default=10.0)
    parser.add_argument("--quick", action="store_true", help="short runs: keeps it working")
    args = parser.parse_args()
    require("etcd", "wrk")
    seconds = 1.0 if args.quick else args.seconds
    rounds = 20 if args.quick else args.rounds
    node_ttl = 2.0 if args.quick else args.node_ttl
    results = run(seconds, rounds, node_ttl, QUICK_FLEET if args.quick else FLEET)
    command = "scripts/bench/cluster.py" + (" --quick" if args.quick else "")
    text = report(results, command, seconds, rounds)
    if not args.quick:
        text += "\n\n" + _plot.propagation_cdf(results.took)
    print(text)
    if not args.quick:
        write_section("cluster", text)


if __name__ == "__main__":
    main()
