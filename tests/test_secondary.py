"""BIND 9 and Knot DNS as secondaries of jarvis-dns, configured with docs/dns.md's
snippets: they follow registrations, busy flips and deregistrations within 2 s (NOTIFY,
then IXFR), and after 10,000 changes BIND holds exactly the zone jarvis-dns holds."""

from __future__ import annotations

import asyncio
import base64
import random
import re
import shlex
import shutil
import subprocess
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import aiohttp
import dns.asyncquery
import dns.message
import dns.rcode
import dns.tsigkeyring
import dns.versioned
import dns.xfr
import dns.zone
import httpx
import pytest
from conftest import eventually, free_ports
from dns_helpers import records
from test_serve import Server

DOC = Path(__file__).resolve().parents[1] / "docs" / "dns.md"
ZONE = "jarvis.internal."
SECRET = base64.b64encode(b"bind and jarvis share this key!!").decode()
XFR = dns.tsigkeyring.from_text({"xfr.": SECRET})
NAMED = shutil.which("named") or "/usr/sbin/named"
KNOTD = shutil.which("knotd") or "/usr/sbin/knotd"
FOLLOW_S = 2.0  # the bound: a change shows in a secondary's answers within this


def section() -> str:
    return DOC.read_text().split("## Run BIND or Knot as a secondary")[1].split("\n## ")[0]


def fenced(text: str) -> list[tuple[str, str]]:
    """The fenced code blocks of a Markdown text: (language, body)."""
    blocks, language, body = [], None, list[str]()
    for line in text.splitlines():
        if line.startswith("```"):
            if language is None:
                language, body = line[3:].strip(), []
            else:
                blocks.append((language, "\n".join(body) + "\n"))
                language = None
        elif language is not None:
            body.append(line)
    return blocks


def readme_serve_args(bind_port: int) -> list[str]:
    block = next(body for language, body in fenced(section()) if language == "bash")
    line = re.sub(r"\\\n\s*", " ", block).split("jarvis-dns serve", 1)[1].splitlines()[0]
    line = line.replace("$XFR_SECRET", SECRET).replace("127.0.0.1:53", f"127.0.0.1:{bind_port}")
    return shlex.split(line)


def readme_snippet(marker: str, jarvis_port: int) -> str:
    """A docs/dns.md configuration, its secret written out, pointed at the test's port."""
    body = next(body for _, body in fenced(section()) if marker in body)
    body = body.replace("$XFR_SECRET", SECRET).replace("port 9053", f"port {jarvis_port}")
    return body.replace("127.0.0.1@9053", f"127.0.0.1@{jarvis_port}")


class Secondary:
    """A DNS server on a loopback port with a private configuration, stopped by its PID."""

    def __init__(self, directory: Path, port: int, argv: list[str]) -> None:
        self.port = port
        self.log = directory / "log"
        self._out = self.log.open("w")
        self.proc = subprocess.Popen(argv, stdout=self._out, stderr=subprocess.STDOUT)

    async def ask(self, name: str, rdtype: str) -> dns.message.Message:
        query = dns.message.make_query(name, rdtype)
        return await dns.asyncquery.udp(query, "127.0.0.1", port=self.port, timeout=2)

    async def serial(self) -> int | None:
        try:
            reply = await self.ask(ZONE, "SOA")
        except (OSError, dns.exception.Timeout):
            return None
        return reply.answer[0][0].serial if reply.answer else None

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)
        self._out.close()


class Bind(Secondary):
    binary = NAMED

    def __init__(self, directory: Path, port: int, jarvis_port: int) -> None:
        conf = directory / "named.conf"
        conf.write_text(
            f"""options {{
    directory "{directory}";
    pid-file "{directory}/named.pid";
    session-keyfile "{directory}/session.key";
    listen-on port {port} {{ 127.0.0.1; }};
    listen-on-v6 {{ none; }};
    recursion no;
    dnssec-validation no;
    notify no;
    allow-transfer {{ 127.0.0.1; }};  // the test compares BIND's copy by AXFR
}};
controls {{ }};
{readme_snippet("type secondary;", jarvis_port)}
"""
        )
        super().__init__(directory, port, [NAMED, "-g", "-4", "-n", "1", "-c", str(conf)])


class Knot(Secondary):
    binary = KNOTD

    def __init__(self, directory: Path, port: int, jarvis_port: int) -> None:
        conf = directory / "knot.conf"
        conf.write_text(
            f"""server:
    listen: 127.0.0.1@{port}
    rundir: {directory}
database:
    storage: {directory}
template:
  - id: default
    storage: {directory}
log:
  - target: stderr
    any: info
{readme_snippet("master: jarvis", jarvis_port)}
"""
        )
        super().__init__(directory, port, [KNOTD, "-c", str(conf)])


SECONDARIES: dict[str, type[Bind] | type[Knot]] = {"bind": Bind, "knot": Knot}


@pytest.fixture(params=["bind"])
def pair(tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[tuple[Server, Secondary]]:
    """jarvis-dns started as docs/dns.md says, and a secondary (``request.param``)."""
    kind = SECONDARIES[request.param]
    if not Path(kind.binary).exists():
        pytest.skip(f"needs {kind.binary} (scripts/test installs bind9 and knot)")
    (port,) = free_ports(1)
    jarvis = Server(tmp_path, "--store", "memory://", *readme_serve_args(port))
    secondary: Secondary | None = None
    try:
        # The primary first: a secondary whose first refresh is refused (BIND 9.18)
        # keeps the zone's refresh "in progress", queues the NOTIFY that follows and
        # retries only minutes later.
        jarvis.wait_ready()
        directory = tmp_path / request.param
        directory.mkdir()
        secondary = kind(directory, port, jarvis.dns)
        yield jarvis, secondary
    finally:
        if secondary is not None:
            secondary.stop()
        jarvis.kill()


async def index_of(client: httpx.AsyncClient) -> int:
    return int((await client.get("/v1/health")).json()["index"])


async def caught_up(bind: Secondary, client: httpx.AsyncClient, timeout: float) -> float:
    """Seconds until BIND serves jarvis-dns's current serial."""
    started, index = time.monotonic(), await index_of(client)

    async def same() -> bool:
        return await bind.serial() == index

    await eventually(same, timeout)
    return time.monotonic() - started


async def srv(bind: Secondary, name: str) -> list[str]:
    reply = await bind.ask(name, "SRV")
    return sorted(rd.to_text() for rrset in reply.answer for rd in rrset)


async def within(seconds: float, check: Any) -> float:
    started = time.monotonic()
    await eventually(check, seconds)
    return time.monotonic() - started


@pytest.fixture
async def client(pair: tuple[Server, Secondary]) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=pair[0].url, timeout=10) as http:
        yield http


@pytest.mark.parametrize("pair", ["bind", "knot"], indirect=True)
async def test_a_secondary_follows_registration_busy_and_deregistration(
    pair: tuple[Server, Secondary], client: httpx.AsyncClient
) -> None:
    _, bind = pair
    await caught_up(bind, client, 15)  # the first transfer: NOTIFY at start, or refresh
    body = {"service_type": "auth", "instance_id": 1, "host": "10.0.0.11", "port": 8443}
    assert (await client.post("/v1/instances", json=body)).status_code == 201
    target = f"1.auth.{ZONE}"

    async def registered() -> bool:
        return await srv(bind, f"_auth._tcp.{ZONE}") == [f"0 100 8443 {target}"]

    await within(FOLLOW_S, registered)

    path = "/v1/services/auth/instances/1/status"
    assert (await client.put(path, json={"busy": True})).status_code == 200

    async def busy() -> bool:
        return await srv(bind, f"_auth._tcp.{ZONE}") == [f"10 1 8443 {target}"]

    await within(FOLLOW_S, busy)

    assert (await client.delete("/v1/services/auth/instances/1")).status_code == 200

    async def gone() -> bool:
        return (await bind.ask(f"_auth._tcp.{ZONE}", "SRV")).rcode() == dns.rcode.NXDOMAIN

    await within(FOLLOW_S, gone)
    health = (await client.get("/v1/health")).json()["dns"]
    assert health["ixfr"] >= 3  # each change came as a difference, not the whole zone
    assert "notify" in bind.log.read_text().lower()


SERVICES = [f"svc-{i}" for i in range(10)]
CHANGES = 10_000


@pytest.mark.slow
async def test_after_10000_changes_bind_holds_what_jarvis_holds(
    pair: tuple[Server, Secondary], client: httpx.AsyncClient
) -> None:
    jarvis, bind = pair
    await caught_up(bind, client, 15)
    lanes = _changes(random.Random(14), CHANGES)
    started = time.monotonic()
    await _send_all(jarvis.url, lanes)
    took = time.monotonic() - started
    assert await index_of(client) == CHANGES  # each request one change
    await caught_up(bind, client, 30)
    theirs, ours = dns.versioned.Zone(ZONE), dns.versioned.Zone(ZONE)
    query, _ = dns.xfr.make_query(theirs, serial=None)
    await dns.asyncquery.inbound_xfr("127.0.0.1", theirs, query, port=bind.port, timeout=30)
    query, _ = dns.xfr.make_query(ours, serial=None, keyring=XFR, keyname="xfr.")
    await dns.asyncquery.inbound_xfr("127.0.0.1", ours, query, port=jarvis.dns, timeout=30)
    assert theirs.get_soa().serial == ours.get_soa().serial == CHANGES
    assert records(theirs) == records(ours)
    assert len(records(ours)) > 1000
    stats = (await client.get("/v1/health")).json()["dns"]
    assert stats["ixfr"] > 0 and stats["ixfr_full"] == 0  # it followed by differences
    assert took < 120, f"{CHANGES} changes took {took:.0f} s"


Request = tuple[str, str, dict[str, Any] | None]


def _changes(rng: random.Random, count: int) -> list[list[Request]]:
    """``count`` requests that each change something (a model of the fleet says what
    is there), grouped per instance: a lane runs in order, lanes run side by side."""
    # 300 instances, and one service past BIND's default of 100 records an RRset
    fleet = [(svc, i) for svc in SERVICES for i in range(30)] + [("big", i) for i in range(150)]
    state: dict[tuple[str, int], dict[str, Any]] = {}
    lanes: dict[tuple[str, int], list[Request]] = {key: [] for key in fleet}
    for n in range(count):
        key = fleet[n] if n < len(fleet) else rng.choice(fleet)
        svc, i = key
        now = state.get(key)
        path = f"/v1/services/{svc}/instances/{i}"
        roll = rng.random()
        if now is None or roll < 0.3:
            body = _registration(svc, i, rng, now)
            state[key] = {"busy": body["busy"], "status": "active", "port": body["port"]}
            lanes[key].append(("POST", "/v1/instances", body))
        elif roll < 0.7:
            now["busy"] = not now["busy"]
            lanes[key].append(("PUT", path + "/status", {"busy": now["busy"]}))
        elif roll < 0.85:
            now["status"] = "maintenance" if now["status"] == "active" else "active"
            lanes[key].append(("PUT", path + "/status", {"status": now["status"]}))
        else:
            del state[key]
            lanes[key].append(("DELETE", path, None))
    return [lane for lane in lanes.values() if lane]


def _registration(
    svc: str, i: int, rng: random.Random, now: dict[str, Any] | None
) -> dict[str, Any]:
    ports = [p for p in range(8000, 8050) if now is None or p != now["port"]]
    return {
        "service_type": svc,
        "instance_id": i,
        "host": f"10.{rng.randrange(2)}.{i}.{rng.randrange(3)}",  # shared addresses too
        "port": rng.choice(ports),  # never the same: every registration changes it
        "metadata": {"tags": rng.choice([[], ["gpu"], ["gpu", "eu"]]), "v": rng.randrange(9)},
        "busy": rng.random() < 0.3,
        "ttl_s": 3600,  # no expiry meanwhile: the changes are the test's alone
    }


async def _send_all(url: str, lanes: list[list[Request]]) -> None:
    """Every lane in order, 32 lanes at once (aiohttp: httpx's async client is several
    times slower at this)."""
    queue: asyncio.Queue[list[Request]] = asyncio.Queue()
    for lane in lanes:
        queue.put_nowait(lane)

    async def worker(session: aiohttp.ClientSession) -> None:
        while not queue.empty():
            for method, path, body in queue.get_nowait():
                async with session.request(method, path, json=body) as reply:
                    assert reply.status in (200, 201), await reply.text()

    async with aiohttp.ClientSession(url) as session:
        await asyncio.gather(*(worker(session) for _ in range(32)))
