"""The README's curl examples run, in order, against a real server and succeed."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest
from test_serve import Server

README = Path(__file__).resolve().parents[1] / "README.md"


def curl_commands() -> list[str]:
    section = README.read_text().split("## Register, heartbeat, discover, deregister (curl)")[1]
    block = section.split("```bash", 1)[1].split("```", 1)[0]
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


@pytest.fixture
def server(live_server: Server) -> Server:
    return live_server


@pytest.mark.skipif(shutil.which("curl") is None, reason="curl is not installed")
def test_curl_examples(server: Server) -> None:
    commands = curl_commands()
    assert len(commands) == 8
    for command in commands:
        command = command.replace("localhost:9000", f"127.0.0.1:{server.http}")
        command = command.replace("index=7", "index=0")  # answer at once
        done = subprocess.run(
            command + " -w '\\n%{http_code}' --fail-with-body",
            shell=True,
            capture_output=True,
            text=True,
            timeout=20,
        )
        status = done.stdout.rsplit("\n", 1)[-1]
        assert done.returncode == 0 and status.startswith("2"), (command, done.stdout)
