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
    listing = cli(server, "ls").stdout
    assert "auth" in listing and "active=1" in listing
    assert "127.0.0.1:5001" in cli(server, "ls", "auth").stdout
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
    assert down.returncode == 1 and "cannot reach" in down.stderr


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
