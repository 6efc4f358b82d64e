"""etcd's own CPU per request on this machine: one member on core 0, the requests the
cluster nodes send it through its JSON gateway, and a bare aiohttp handler's CPU per
request beside it for scale.

    .venv/bin/python scripts/bench/etcd_cost.py [--leases 2000] [--seconds 5] [--quick]

A cluster heartbeat costs the node what it costs the single node, plus what etcd spends
renewing the instance's lease (`LeaseKeepAlive`, the issue's design: a keepalive, not a
Raft write, per beat). This measures that second part with nothing else running (no
other members, no nodes, no watches): the floor under a cluster heartbeat that renews a
lease, whatever the nodes do. A range read (the cheapest
unary request) is beside it, to tell the gateway's cost from the lease's.
"""

from __future__ import annotations

import sys

# This folder holds http.py and dns.py: keep it behind the standard library.
sys.path.append(sys.path.pop(0))

import argparse
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

import httpx
from _common import (
    ETCD,
    LOAD_CPU,
    PYTHON,
    SERVER_CPU,
    cpu_use,
    free_port,
    header,
    lua,
    pinned,
    require,
    start,
    stop,
    wait_http,
    write_section,
    wrk,
)

from jarvis_dns.store.etcd import KEEPALIVE_CHUNK

# Chunked keepalives in flight at once: each node sends its flush's chunks together, and
# three nodes flush about once a second; 64 chunks of 1,000 would outlast wrk's timeout.
CHUNKED_CONNECTIONS = 3


@dataclass(frozen=True)
class Cost:
    name: str
    operations: int  # requests, or keepalives where a request carries several
    seconds: float
    cpu_s: float  # the server's user + system CPU over the run

    @property
    def us_each(self) -> float:
        return self.cpu_s / self.operations * 1e6


def etcd_member(root: Path) -> tuple[subprocess.Popen[bytes], str]:
    client, peer = free_port(), free_port()
    argv = [
        ETCD,
        f"--data-dir={root}",
        f"--listen-client-urls=http://127.0.0.1:{client}",
        f"--advertise-client-urls=http://127.0.0.1:{client}",
        f"--listen-peer-urls=http://127.0.0.1:{peer}",
        f"--initial-advertise-peer-urls=http://127.0.0.1:{peer}",
        f"--initial-cluster=default=http://127.0.0.1:{peer}",
        "--log-level=warn",
    ]
    quiet = subprocess.DEVNULL  # its warnings ("took too long") would fill an unread pipe
    proc = subprocess.Popen(pinned(SERVER_CPU, argv), stdout=quiet, stderr=quiet)
    return proc, f"http://127.0.0.1:{client}"


# Keepalives as the nodes send them: @CHUNK@ leases in one request, a JSON line each
# (etcd_api.lease_keepalive), the request bodies taken in turn.
LEASE_LUA = """
ids = {@IDS@}
bodies = {}
for first = 1, #ids, @CHUNK@ do
  local lines = {}
  for i = first, math.min(first + @CHUNK@ - 1, #ids) do
    lines[#lines + 1] = string.format('{"ID":"%s"}', ids[i])
  end
  bodies[#bodies + 1] = table.concat(lines, "\\n")
end
counter = 0
request = function()
  counter = counter + 1
  return wrk.format("POST", "/v3/lease/keepalive", {["Content-Type"]="application/json"},
    bodies[counter % #bodies + 1])
end
"""
# The rest: one fixed request each.
RANGE_LUA = """
wrk.method, wrk.body = "POST", '{"key":"amFydmlz"}'
wrk.headers["Content-Type"] = "application/json"
request = function() return wrk.format(nil, "/v3/kv/range") end
"""
GRANT_LUA = """
wrk.method, wrk.body = "POST", '{"TTL":3600}'
wrk.headers["Content-Type"] = "application/json"
request = function() return wrk.format(nil, "/v3/lease/grant") end
"""
BEAT_LUA = """
wrk.method, wrk.body = "PUT", '{"busy":false,"metrics":{"load":12}}'
wrk.headers["Content-Type"] = "application/json"
request = function() return wrk.format(nil, "/v1/services/a/instances/1/heartbeat") end
"""


def timed(
    pid: int, name: str, url: str, script: str, seconds: float, each: int = 1, connections: int = 64
) -> Cost:
    """One wrk run and the server's CPU over it; ``each``: operations per request."""
    before = cpu_use(pid)
    result = wrk(url, script, seconds, connections)
    if result.errors:
        raise RuntimeError(f"{name}: {result.errors} non-2xx answers")
    return Cost(name, result.requests * each, seconds, (cpu_use(pid) - before).total)


def granted(url: str, leases: int) -> list[str]:
    with httpx.Client(base_url=url, timeout=30) as client:
        answers = [client.post("/v3/lease/grant", json={"TTL": 3600}) for _ in range(leases)]
    return [str(answer.json()["ID"]) for answer in answers]


def run(leases: int, seconds: float) -> list[Cost]:
    with tempfile.TemporaryDirectory() as data:
        etcd, url = etcd_member(Path(data) / "etcd")
        bare_port = free_port()
        bare = start([PYTHON, "-P", str(Path(__file__).parent / "bare_http.py"), str(bare_port)])
        bare_url = f"http://127.0.0.1:{bare_port}"
        try:
            wait_http(url + "/health")
            wait_http(bare_url + "/v1/health")
            ids = ",".join(f'"{lease}"' for lease in granted(url, leases))
            single, chunked = (
                lua(LEASE_LUA, ids=ids, chunk=chunk) for chunk in (1, KEEPALIVE_CHUNK)
            )
            return [
                timed(etcd.pid, "lease keepalive, one a request", url, single, seconds),
                timed(
                    etcd.pid,
                    f"lease keepalive, {KEEPALIVE_CHUNK:,} a request (as the nodes send them)",
                    url,
                    chunked,
                    seconds,
                    each=min(KEEPALIVE_CHUNK, leases),
                    connections=CHUNKED_CONNECTIONS,
                ),
                timed(etcd.pid, "range read", url, RANGE_LUA, seconds),
                timed(etcd.pid, "lease grant (a Raft write)", url, GRANT_LUA, seconds),
                timed(bare.pid, "bare aiohttp handler: a heartbeat", bare_url, BEAT_LUA, seconds),
            ]
        finally:
            stop(etcd)
            stop(bare)


def report(costs: list[Cost], command: str, leases: int, seconds: float) -> str:
    lines = [
        header("etcd: CPU per request", command),
        f"One etcd member ({ETCD}) alone on core {SERVER_CPU}, wrk (1 thread, 64 "
        f"connections, {CHUNKED_CONNECTIONS} for the chunked keepalives, {seconds:g} s each) "
        f"on core {LOAD_CPU}; {leases} leases, renewed in turn, through the JSON gateway "
        "the cluster nodes use. The server's CPU from /proc "
        "over each run; the bare aiohttp handler (the HTTP benchmark's reference) "
        "answering heartbeats under the same wrk, for scale.",
        "",
        "| request | operations | per second | server CPU per operation |",
        "| --- | ---: | ---: | ---: |",
    ]
    for cost in costs:
        lines.append(
            f"| {cost.name} | {cost.operations:,} | {cost.operations / cost.seconds:,.0f} | "
            f"{cost.us_each:,.0f} us |"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--leases", type=int, default=2000)
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--quick", action="store_true", help="a few requests, writes nothing")
    args = parser.parse_args()
    require("etcd", "wrk")
    leases, seconds = (50, 1.0) if args.quick else (args.leases, args.seconds)
    command = "scripts/bench/etcd_cost.py" + (" --quick" if args.quick else "")
    text = report(run(leases, seconds), command, leases, seconds)
    print(text)
    if not args.quick:
        write_section("etcd", text)


if __name__ == "__main__":
    main()
