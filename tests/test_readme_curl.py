"""The docs' curl examples run, in order, against a real server and succeed; the README's
five-minute tour runs as written (curl, dig, the Python client) and prints what it shows."""

from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from test_serve import Server

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
HTTP_API = ROOT / "docs" / "http-api.md"
DIG = "/usr/bin/dig"


def bash_commands(block: str) -> list[str]:
    joined = re.sub(r"\\\n\s*", " ", block)  # fold continuation lines
    commands, current = [], ""
    for line in joined.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        current = f"{current} {line}".strip()
        if current.count("'") % 2 == 0:  # a JSON body may span lines inside quotes
            commands.append(current)
            current = ""
    return commands


def curl_commands() -> list[str]:
    section = HTTP_API.read_text().split("## Register, heartbeat, discover, deregister (curl)")[1]
    return bash_commands(section.split("```bash", 1)[1].split("```", 1)[0])


def tour() -> str:
    return README.read_text().split("## A five-minute tour")[1].split("\n## ")[0]


def run_curl(command: str, server: Server) -> str:
    command = command.replace("localhost:9000", f"127.0.0.1:{server.http}")
    done = subprocess.run(
        command + " -w '\\n%{http_code}' --fail-with-body",
        shell=True,
        capture_output=True,
        text=True,
        timeout=20,
    )
    body, status = done.stdout.rsplit("\n", 1)
    assert done.returncode == 0 and status.startswith("2"), (command, done.stdout)
    return body


@pytest.fixture
def server(live_server: Server) -> Server:
    return live_server


@pytest.mark.skipif(shutil.which("curl") is None, reason="curl is not installed")
def test_curl_examples(server: Server) -> None:
    commands = curl_commands()
    assert len(commands) == 8
    for command in commands:
        run_curl(command.replace("index=7", "index=0"), server)  # index=0: answer at once


@pytest.mark.skipif(shutil.which("curl") is None or not Path(DIG).exists(), reason="curl, dig")
def test_the_readme_tour_runs_as_written(server: Server) -> None:
    text = tour()
    blocks = re.findall(r"```(\w+)\n(.*?)```", text, re.S)
    kinds = [kind for kind, _ in blocks]
    assert kinds == ["bash", "console", "python"]
    for command in bash_commands(blocks[0][1]):
        run_curl(command, server)
    # dig: each `$ ` line prints the lines under it.
    shown: list[tuple[str, list[str]]] = []
    for line in blocks[1][1].splitlines():
        if line.startswith("$ "):
            shown.append((line[2:], []))
        else:
            shown[-1][1].append(line)
    for command, expected in shown:
        argv = [DIG, *shlex.split(command)[1:]]
        argv = [str(server.dns) if a == "9053" else a for a in argv]
        out = subprocess.run(argv, capture_output=True, text=True, timeout=10).stdout
        assert out.splitlines() == expected, command
    # The Python snippet, against this server, prints what its comment says.
    program = blocks[2][1].replace("http://127.0.0.1:9000", server.url)
    printed = re.search(r"# (.+)$", program, re.M)
    assert printed is not None
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    done = subprocess.run(
        [sys.executable, "-c", program], capture_output=True, text=True, env=env, timeout=30
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == printed.group(1)
