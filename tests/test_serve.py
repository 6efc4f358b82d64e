"""`jarvis-dns serve` as a real process: start, persist, SIGTERM, restart, bad settings."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import dns.exception
import dns.message
import dns.query
import httpx
import pytest
from conftest import free_ports


class Server:
    def __init__(self, data_dir: Path, *extra: str) -> None:
        self.http, self.dns = free_ports(2)
        self.url = f"http://127.0.0.1:{self.http}"
        args = ["--http", f"127.0.0.1:{self.http}", "--dns", f"127.0.0.1:{self.dns}"]
        args += ["--data-dir", str(data_dir), "--zones-dir", str(data_dir / "zones"), *extra]
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "jarvis_dns", "serve", *args],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )

    def wait_ready(self, timeout: float = 15) -> None:
        """Until HTTP and DNS answer and SIGTERM/SIGHUP are handled.

        serve() answers HTTP before its DNS sockets are bound and before it installs its
        signal handlers, so /v1/health alone may say 200 a moment too early (a SIGTERM
        then would kill the server outright)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError(f"server exited: {self.output()}")
            if self._http_ready() and self._dns_ready() and self._handles_signals():
                return
            time.sleep(0.05)
        raise AssertionError("server did not become ready")

    def _http_ready(self) -> bool:
        try:
            return httpx.get(self.url + "/v1/health", timeout=0.5).status_code == 200
        except httpx.HTTPError:
            return False

    def _dns_ready(self) -> bool:
        query = dns.message.make_query("jarvis.internal.", "SOA")
        try:
            dns.query.udp(query, "127.0.0.1", port=self.dns, timeout=0.5)
        except (OSError, dns.exception.Timeout):
            return False
        return True  # any reply: the socket is bound and served

    def _handles_signals(self) -> bool:
        try:
            status = Path(f"/proc/{self.proc.pid}/status").read_text()
        except OSError:
            return True  # no /proc here: nothing to look at
        caught = next(ln.split()[1] for ln in status.splitlines() if ln.startswith("SigCgt:"))
        return all(int(caught, 16) >> (sig - 1) & 1 for sig in (signal.SIGTERM, signal.SIGHUP))

    def terminate(self) -> int:
        self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(timeout=15)

    def output(self) -> str:
        out, _ = self.proc.communicate(timeout=15)
        return out

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=10)
        if self.proc.stdout is not None:
            self.proc.stdout.close()


@pytest.fixture
def servers(tmp_path: Path) -> Iterator[list[Server]]:
    started: list[Server] = []
    yield started
    for server in started:
        server.kill()


def test_restart_keeps_everything_and_the_index_grows(
    tmp_path: Path, servers: list[Server]
) -> None:
    first = Server(tmp_path)
    servers.append(first)
    first.wait_ready()
    for i in range(3):
        body = {
            "service_type": "auth",
            "instance_id": i,
            "host": "127.0.0.1",
            "port": 6000 + i,
            "metadata": {"n": i, "tags": ["x"]},
        }
        assert httpx.post(first.url + "/v1/instances", json=body).status_code == 201
    httpx.put(first.url + "/v1/services/auth/instances/1/heartbeat", json={"busy": True})
    index_before = int(httpx.get(first.url + "/v1/health").json()["index"])
    assert first.terminate() == 0
    assert "shutting down" in first.output()

    second = Server(tmp_path)
    servers.append(second)
    second.wait_ready()
    got = httpx.get(second.url + "/v1/services/auth").json()["instances"]
    assert [(i["instance_id"], i["metadata"]["n"], i["busy"]) for i in got] == [
        (0, 0, False),
        (1, 1, True),
        (2, 2, False),
    ]
    body = {"service_type": "auth", "instance_id": 9, "host": "127.0.0.1", "port": 6009}
    created = httpx.post(second.url + "/v1/instances", json=body).json()
    assert created["create_index"] > index_before
    events = httpx.get(second.url + "/v1/events").json()["events"]
    assert [e["kind"] for e in events][:4] == ["registered", "registered", "registered", "busy"]
    assert second.terminate() == 0


@pytest.mark.parametrize(
    ("flag", "kind", "what"),
    [
        ("--http", socket.SOCK_STREAM, "HTTP"),
        ("--dns", socket.SOCK_DGRAM, "DNS over UDP"),
        ("--dns", socket.SOCK_STREAM, "DNS over TCP"),
    ],
)
def test_taken_port_is_a_one_line_error(
    tmp_path: Path, servers: list[Server], flag: str, kind: socket.SocketKind, what: str
) -> None:
    """The port is taken first by a real socket; the error names the face, the address
    and port, and the OS's reason (uvloop used to lose it: "...: None")."""
    with socket.socket(socket.AF_INET, kind) as blocker:
        blocker.bind(("127.0.0.1", 0))
        if kind == socket.SOCK_STREAM:
            blocker.listen()
        port = blocker.getsockname()[1]
        server = Server(tmp_path, flag, f"127.0.0.1:{port}")
        servers.append(server)
        code = server.proc.wait(timeout=15)
        out = server.output()
    assert code == 2
    line = f"jarvis-dns: cannot listen for {what} on 127.0.0.1:{port}: Address already in use"
    assert line in out.splitlines(), out
    assert "Traceback" not in out


@pytest.mark.skipif(os.geteuid() == 0, reason="root can write anywhere")
def test_unwritable_data_dir_is_a_one_line_error(tmp_path: Path, servers: list[Server]) -> None:
    locked = tmp_path / "locked"
    locked.mkdir(mode=0o500)
    server = Server(locked / "data")
    servers.append(server)
    assert server.proc.wait(timeout=15) == 2
    assert "not writable" in server.output()


def test_file_in_place_of_data_dir_is_a_one_line_error(
    tmp_path: Path, servers: list[Server]
) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    server = Server(blocker)
    servers.append(server)
    assert server.proc.wait(timeout=15) == 2
    out = server.output()
    assert "not writable" in out and "Traceback" not in out


def test_help_and_readme_list_every_setting() -> None:
    from jarvis_dns.cli import _SERVE_SETTINGS

    out = subprocess.run(
        [sys.executable, "-m", "jarvis_dns", "serve", "--help"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    flags = ["--" + dest.replace("_", "-") for dest in _SERVE_SETTINGS]
    flags += ["--no-active-checks", "--no-fast-path", "--no-dns-cache", "--acl", "--insecure"]
    for flag in flags:
        assert flag in out, flag
        assert f"`{flag}" in readme, flag
    assert "JARVIS_DNS_" in out


def test_env_fallback(tmp_path: Path, servers: list[Server]) -> None:
    from jarvis_dns.cli import build_parser, config_from_args

    os.environ["JARVIS_DNS_DOMAIN"] = "corp.example"
    os.environ["JARVIS_DNS_DNS"] = "127.0.0.1:1053,[::1]:1053"
    try:
        config = config_from_args(build_parser().parse_args(["serve", "--dns-ttl", "9"]))
    finally:
        del os.environ["JARVIS_DNS_DOMAIN"], os.environ["JARVIS_DNS_DNS"]
    assert config.zone == "corp.example." and config.dns_ttl == 9
    assert config.dns == ["127.0.0.1:1053", "[::1]:1053"]
    flagged = config_from_args(build_parser().parse_args(["serve", "--domain", "x.test"]))
    assert flagged.zone == "x.test."


ZONE_V1 = """$ORIGIN corp.internal.
$TTL 60
@ IN SOA ns hostmaster 1 3600 600 86400 30
  IN NS ns
ns IN A 127.0.0.1
www IN A 192.0.2.1
"""


def _a(server: Server, name: str) -> list[str]:
    reply = dns.query.udp(
        dns.message.make_query(name, "A"), "127.0.0.1", port=server.dns, timeout=2
    )
    return [rr.to_text() for rrset in reply.answer for rr in rrset]


def test_sighup_reloads_zones_and_keeps_old_data_on_error(
    tmp_path: Path, servers: list[Server]
) -> None:
    zones = tmp_path / "zones"
    zones.mkdir()
    (zones / "corp.zone").write_text(ZONE_V1)
    server = Server(tmp_path)
    servers.append(server)
    server.wait_ready()
    assert _a(server, "www.corp.internal") == ["192.0.2.1"]
    (zones / "corp.zone").write_text(ZONE_V1.replace("192.0.2.1", "192.0.2.2"))
    server.proc.send_signal(signal.SIGHUP)
    deadline = time.monotonic() + 5
    while _a(server, "www.corp.internal") != ["192.0.2.2"] and time.monotonic() < deadline:
        time.sleep(0.05)
    assert _a(server, "www.corp.internal") == ["192.0.2.2"]
    (zones / "corp.zone").write_text(ZONE_V1 + "bad IN A not-an-address\n")
    r = httpx.post(server.url + "/v1/zones/reload")
    assert r.status_code == 422 and "corp.zone:7" in r.json()["error"]["message"]
    assert _a(server, "www.corp.internal") == ["192.0.2.2"]
    assert server.terminate() == 0


def test_broken_zone_at_start_is_a_one_line_error(tmp_path: Path, servers: list[Server]) -> None:
    zones = tmp_path / "zones"
    zones.mkdir()
    (zones / "corp.zone").write_text(ZONE_V1 + "www IN BOGUS 1\n")
    server = Server(tmp_path)
    servers.append(server)
    assert server.proc.wait(timeout=15) == 2
    out = server.output()
    assert "corp.zone:7" in out and "Traceback" not in out
