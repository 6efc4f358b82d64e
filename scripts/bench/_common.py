"""Shared by the benchmarks: machine facts, processes pinned to cores, BENCHMARKS.md sections."""

from __future__ import annotations

import os
import platform
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar

ROOT = Path(__file__).resolve().parents[2]
BENCHMARKS = ROOT / "BENCHMARKS.md"
PYTHON = sys.executable
# Two cores here: the server gets core 0, the load generator core 1, so they never
# compete for one CPU and the ratio against the reference is fair to both.
SERVER_CPU = "0"
LOAD_CPU = "1"
ETCD = shutil.which("etcd") or "/usr/bin/etcd"
# The Debian package of each tool a benchmark runs, for the line that says it is missing.
PACKAGES = {
    "etcd": "etcd-server",
    "wrk": "wrk",
    "dnsperf": "dnsperf",
    "dnsmasq": "dnsmasq",
    "named": "bind9",
    "dig": "dnsutils",
}


def lua(template: str, **values: object) -> str:
    """A wrk script from its template: each @NAME@ replaced by the value of name."""
    for name, value in values.items():
        template = template.replace(f"@{name.upper()}@", str(value))
    return template


def require(*tools: str) -> None:
    """Exit with the apt-get line for the first tool this machine lacks."""
    for tool in tools:
        if not shutil.which(tool) and not Path(f"/usr/sbin/{tool}").exists():
            sys.exit(f"{tool} is missing: apt-get install {PACKAGES[tool]}")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def pinned(cpu: str, argv: list[str]) -> list[str]:
    if shutil.which("taskset") and (os.cpu_count() or 1) > 1:
        return ["taskset", "-c", cpu, *argv]
    return argv


def machine() -> str:
    cpu = "unknown CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    return (
        f"{os.cpu_count()} cores ({cpu}), {mem:.0f} GiB RAM, {platform.system()} "
        f"{platform.release()}, Python {platform.python_version()}"
    )


def wait_http(url: str, timeout: float = 20.0) -> None:
    import httpx

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            httpx.get(url, timeout=0.5)
            return
        except httpx.HTTPError:
            time.sleep(0.05)
    raise RuntimeError(f"{url} did not answer")


def start(argv: list[str], cpu: str = SERVER_CPU, **kw: object) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        pinned(cpu, argv), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, **kw
    )  # type: ignore[call-overload, no-any-return]


def stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def jarvis(http_port: int, dns_port: int, *extra: str) -> subprocess.Popen[bytes]:
    argv = [PYTHON, "-m", "jarvis_dns", "serve", "--http", f"127.0.0.1:{http_port}"]
    argv += ["--dns", f"127.0.0.1:{dns_port}", "--log-level", "warning", *extra]
    return start(argv)


def write_section(name: str, body: str) -> None:
    """Replace the block between <!-- bench:NAME --> markers (append it when absent)."""
    start_mark, end_mark = f"<!-- bench:{name} -->", f"<!-- /bench:{name} -->"
    text = BENCHMARKS.read_text() if BENCHMARKS.exists() else "# Benchmarks\n"
    block = f"{start_mark}\n{body.strip()}\n{end_mark}"
    pattern = re.compile(re.escape(start_mark) + ".*?" + re.escape(end_mark), re.S)
    text = (
        pattern.sub(lambda _: block, text)
        if pattern.search(text)
        else f"{text.rstrip()}\n\n{block}\n"
    )
    BENCHMARKS.write_text(text)


def header(title: str, command: str) -> str:
    stamp = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    return f"## {title}\n\n`{command}` — {stamp}, {machine()}.\n"


def seed_sqlite(
    data_dir: str, instances: list[tuple[str, int, str, int, dict[str, object]]]
) -> None:
    """Write a registry.db holding these (service, id, host, port, metadata) instances in
    one batch: benchmark set-up, not what is measured."""
    import asyncio

    from jarvis_dns.models import Batch, Instance, Status
    from jarvis_dns.store.sqlite import SqliteStore

    now = time.time()
    puts = [
        Instance(
            service_type=svc,
            instance_id=iid,
            host=host,
            port=port,
            metadata=meta,
            weight=100,
            busy=False,
            status=Status.ACTIVE,
            ttl_s=3600.0,
            check=None,
            deregister_after_s=None,
            registered_at=now,
            last_heartbeat=now,
            status_since=now,
        )
        for svc, iid, host, port, meta in instances
    ]

    async def seed() -> None:
        store = SqliteStore(Path(data_dir) / "registry.db")
        await store.load()
        await store.commit(Batch(puts=puts))
        await store.close()

    asyncio.run(seed())


@dataclass
class Latency:
    p50_ms: float
    p99_ms: float
    max_ms: float
    answered: int
    sent: int


class DnsProbe:
    """Asks one DNS name at a steady rate from a thread and times each answer: how long
    the server's event loop makes a query wait while something else loads it."""

    def __init__(self, port: int, name: str = "jarvis.internal", rate: int = 200) -> None:
        import threading

        self._port, self._name, self._interval = port, name, 1.0 / rate
        self._stop = threading.Event()
        self._times: list[float] = []
        self._sent = 0
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> DnsProbe:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def result(self) -> Latency:
        return DnsProbe.merged([self])

    @staticmethod
    def merged(probes: list[DnsProbe]) -> Latency:
        """The answers of several probes (a flood measured in slices) as one."""
        answered = [t for probe in probes for t in probe._times]
        times = sorted(answered) or [float("nan")]
        pick = lambda q: times[min(len(times) - 1, int(q * len(times)))] * 1000  # noqa: E731
        sent = sum(probe._sent for probe in probes)
        return Latency(pick(0.5), pick(0.99), times[-1] * 1000, len(answered), sent)

    def _query(self, qid: int) -> bytes:
        labels = b"".join(bytes([len(p)]) + p.encode() for p in self._name.split("."))
        header = qid.to_bytes(2, "big") + b"\x01\x00\x00\x01\x00\x00\x00\x00\x00\x00"
        return header + labels + b"\x00\x00\x06\x00\x01"  # SOA, IN

    def _run(self) -> None:
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        sock.settimeout(1.0)
        next_at = time.perf_counter()
        while not self._stop.is_set():
            qid = self._sent % 65536
            self._sent += 1
            began = time.perf_counter()
            sock.sendto(self._query(qid), ("127.0.0.1", self._port))
            try:
                while int.from_bytes(sock.recv(4096)[:2], "big") != qid:
                    pass  # a late answer to an earlier query
                self._times.append(time.perf_counter() - began)
            except TimeoutError:
                pass
            next_at += self._interval
            time.sleep(max(0.0, next_at - time.perf_counter()))
        sock.close()


@dataclass
class Perf:
    qps: float
    lost: int
    sent: int


def dnsperf(port: int, queries: list[str], seconds: float) -> Perf:
    with tempfile.NamedTemporaryFile("w", suffix=".txt", delete=False) as f:
        f.write("\n".join(queries * 50) + "\n")
    argv = [
        "dnsperf",
        "-s",
        "127.0.0.1",
        "-p",
        str(port),
        "-d",
        f.name,
        "-l",
        str(seconds),
        "-c",
        "8",
        "-q",
        "200",
        "-t",
        "2",
    ]
    out = subprocess.run(pinned(LOAD_CPU, argv), capture_output=True, text=True).stdout
    Path(f.name).unlink()
    qps = re.search(r"Queries per second:\s+([\d.]+)", out)
    lost = re.search(r"Queries lost:\s+(\d+)", out)
    sent = re.search(r"Queries sent:\s+(\d+)", out)
    if not (qps and lost and sent):
        raise RuntimeError(f"dnsperf said:\n{out}")
    return Perf(float(qps.group(1)), int(lost.group(1)), int(sent.group(1)))


@dataclass
class WrkResult:
    rps: float
    p99_ms: float
    errors: int  # non-2xx answers
    requests: int = 0
    percentiles: dict[float, float] = field(default_factory=dict)  # percentile -> ms


# Appended to every wrk script: the latency at these percentiles, for the pictures.
PERCENTILES = (50, 75, 90, 95, 99, 99.9)
_PERCENTILES_LUA = """
done = function(summary, latency, requests)
  for _, p in ipairs({PERCENTILES}) do
    io.write(string.format("PCTL %g %d\\n", p, latency:percentile(p)))
  end
end
""".replace("PERCENTILES", ", ".join(f"{p:g}" for p in PERCENTILES))


@dataclass(frozen=True)
class CpuUse:
    """CPU seconds (user + system) a process used, its main thread and the others."""

    main: float
    others: float

    def __sub__(self, earlier: CpuUse) -> CpuUse:
        return CpuUse(self.main - earlier.main, self.others - earlier.others)

    @property
    def total(self) -> float:
        return self.main + self.others


def cpu_use(pid: int) -> CpuUse:
    """From /proc: unlike requests per second, other load on the machine barely moves
    the CPU a request costs, so this is the steadier figure on a shared machine."""
    tick = os.sysconf("SC_CLK_TCK")
    main = others = 0.0
    for tid in os.listdir(f"/proc/{pid}/task"):
        try:
            fields = Path(f"/proc/{pid}/task/{tid}/stat").read_text().rsplit(")", 1)[1].split()
        except FileNotFoundError:  # the thread ended meanwhile
            continue
        used = (int(fields[11]) + int(fields[12])) / tick
        if int(tid) == pid:
            main += used
        else:
            others += used
    return CpuUse(main, others)


def wrk(url: str, lua: str, seconds: float, connections: int = 64) -> WrkResult:
    """One wrk run (1 thread, pinned to the load core) with a Lua request script."""
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as f:
        f.write(lua + _PERCENTILES_LUA)
    argv = ["wrk", "-t1", f"-c{connections}", f"-d{max(1, int(seconds))}s", "--latency"]
    argv += ["-s", f.name, url]
    out = subprocess.run(pinned(LOAD_CPU, argv), capture_output=True, text=True).stdout
    Path(f.name).unlink()
    rps = re.search(r"Requests/sec:\s+([\d.]+)", out)
    p99 = re.search(r"99%\s+([\d.]+)(us|ms|s)", out)
    if not (rps and p99):
        raise RuntimeError(f"wrk said:\n{out}")
    scale = {"us": 0.001, "ms": 1.0, "s": 1000.0}[p99.group(2)]
    errors = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    count = re.search(r"(\d+) requests in", out)
    return WrkResult(
        float(rps.group(1)),
        float(p99.group(1)) * scale,
        int(errors.group(1)) if errors else 0,
        int(count.group(1)) if count else 0,
        {float(p): int(us) / 1000 for p, us in re.findall(r"^PCTL (\S+) (\d+)$", out, re.M)},
    )


T = TypeVar("T")


def median(runs: list[T], key: Callable[[T], float]) -> T:
    """The middle run by ``key`` (of an odd number of runs taken in turn)."""
    return sorted(runs, key=key)[len(runs) // 2]
