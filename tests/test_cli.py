"""The client commands of `jarvis-dns` against a real server process."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import pytest
from conftest import default_sigint
from test_serve import Server


@pytest.fixture
def server(live_server: Server) -> Server:
    return live_server


def cli(server: Server, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "JARVIS_DNS_URL": server.url}
    return subprocess.run(
        [sys.executable, "-m", "jarvis_dns", *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=30,
    )


def test_register_ls_discover_deregister(server: Server) -> None:
    meta = json.dumps({"version": "1.0", "capabilities": ["oauth"]})
    done = cli(server, "register", "auth", "1", "5001", "--host", "127.0.0.1", "--metadata", meta)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["instance_id"] == 1
    cli(server, "register", "pay", "web-2", "7000", "--host", "::1")
    listing = cli(server, "ls").stdout.splitlines()
    assert listing[0].split() == ["SERVICE", "ID", "ADDRESS", "STATUS", "BUSY", "AGE"]
    assert listing[1].split()[:5] == ["auth", "1", "127.0.0.1:5001", "active", "idle"]
    assert listing[2].split()[:5] == ["pay", "web-2", "[::1]:7000", "active", "idle"]
    assert listing[1].split()[5].endswith("s")  # the heartbeat's age, in seconds
    # Aligned: every column starts where its header does.
    for header in ("ID", "ADDRESS", "STATUS", "BUSY", "AGE"):
        at = listing[0].index(header)
        assert all(line[at - 2 : at] == "  " and line[at] != " " for line in listing), header
    assert [i["instance_id"] for i in json.loads(cli(server, "ls", "--json").stdout)] == [
        1,
        "web-2",
    ]
    assert "127.0.0.1:5001" in cli(server, "ls", "auth").stdout
    assert "pay" not in cli(server, "ls", "auth").stdout
    assert cli(server, "ls", "nobody").stdout.strip() == "no instances of nobody"
    found = cli(server, "discover", "auth", "--requirements", '{"capabilities": ["oauth"]}')
    assert json.loads(found.stdout)["port"] == 5001
    missing = cli(server, "discover", "auth", "--requirements", '{"version": "2"}')
    assert missing.returncode == 1 and "404" in missing.stderr
    assert cli(server, "deregister", "auth", "1").returncode == 0
    events = cli(server, "events").stdout
    assert "registered" in events and "deregistered" in events


def test_bad_input_is_one_line(server: Server) -> None:
    done = cli(server, "register", "bad_name", "1", "80")
    assert done.returncode == 1
    assert done.stderr.strip().count("\n") == 0 and "service_type" in done.stderr
    down = subprocess.run(
        [sys.executable, "-m", "jarvis_dns", "ls", "--url", "http://127.0.0.1:1"],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert down.returncode == 1 and down.stderr.count("\n") == 1
    assert "cannot reach the registry at http://127.0.0.1:1 (connection refused" in down.stderr
    assert "Is `jarvis-dns serve` running there?" in down.stderr


def test_status_reports_health_counts_index_and_dns(server: Server) -> None:
    cli(server, "register", "auth", "1", "5001", "--host", "127.0.0.1")
    cli(server, "register", "auth", "2", "5002", "--host", "127.0.0.1")
    asked = json.loads(cli(server, "status", "--json").stdout)["health"]["dns"]["queries_udp"]
    subprocess.run(["dig", "+short", "-p", str(server.dns), "@127.0.0.1", "auth.jarvis.internal"],
                   capture_output=True, timeout=10)  # fmt: skip
    done = cli(server, "status")
    assert done.returncode == 0, done.stderr
    report = dict(line.split(None, 1) for line in done.stdout.splitlines())
    assert report["status"].startswith("ok (zone jarvis.internal.")
    assert report["index"] == "2"
    assert report["instances"].startswith("2 in 1 services: 2 active, 0 busy, 0 dead")
    assert report["self-preservation"] == "off (threshold 50%)"
    assert f"queries_udp {asked + 1}," in report["dns"]
    assert report["node"].endswith("(single node)") and "backend=sqlite" in report["store"]
    raw = json.loads(cli(server, "status", "--json").stdout)
    assert raw["health"]["index"] == 2 and raw["services"]["auth"]["active"] == 2


def test_events_follow_prints_live(server: Server) -> None:
    env = {**os.environ, "JARVIS_DNS_URL": server.url, "PYTHONUNBUFFERED": "1"}
    follow = subprocess.Popen(
        [sys.executable, "-m", "jarvis_dns", "events", "--follow"],
        stdout=subprocess.PIPE,
        text=True,
        env=env,
        preexec_fn=default_sigint,
    )
    try:
        time.sleep(0.5)
        cli(server, "register", "auth", "7", "5007", "--host", "127.0.0.1")
        assert follow.stdout is not None
        line = follow.stdout.readline()
        assert "auth/7 registered" in line
    finally:
        follow.send_signal(signal.SIGINT)
        follow.wait(timeout=10)
        if follow.stdout:
            follow.stdout.close()


def test_ages_and_tables_read_at_a_glance() -> None:
    from jarvis_dns.cli_tables import age, table

    assert [age(s) for s in (-1, 0, 59.9, 60, 7199, 7200, 2 * 86400)] == [
        "0s", "0s", "59s", "1m", "119m", "2h", "2d",
    ]  # fmt: skip
    assert table(("A", "LONGER", "C"), [["xx", "y", "z"], ["", "", ""]]).split("\n") == [
        "A   LONGER  C",
        "xx  y       z",
        "",
    ]
