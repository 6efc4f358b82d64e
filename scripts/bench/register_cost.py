"""Machine instructions per registration, counted by valgrind: the real server in
process (SQLite store and its writer thread, the DNS cache, blocking queries and the
health monitor subscribed) answering new registrations through the fast lane's
``answer`` as a connection's turn calls it, 64 in flight, no sockets. The count is the
whole process's for 3,000 registrations less its count for 1,000, over 2,000: start-up
cancels out. A time moves with a shared machine's pace by a third from one minute to
the next; this count repeats to within 0.1%, so it is the figure to compare two
versions of the registration path by (it does not see cache misses: confirm a gain in
time with scripts/bench/http.py).

    cd <a checkout> && .venv/bin/python <this file>     (about a minute; needs valgrind)
    ... <this file> --quick     64 registrations, no valgrind: keeps the script working

It measures the jarvis_dns that the current folder imports.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

# Measure the jarvis_dns of the current folder, not of this script's checkout.
sys.path[0] = ""

IN_FLIGHT = 64  # as scripts/bench/http.py's wrk connections
FEW, MANY = 1_000, 3_000


def request(n: int) -> bytearray:
    """The n-th registration of scripts/bench/http.py's flood."""
    body = (
        f'{{"service_type":"bench-{n % 100}","instance_id":{n},"host":"127.0.0.1",'
        f'"port":{1024 + n % 60000},"metadata":{{"version":"1.0","tags":["a","b"]}}}}'
    ).encode()
    head = (
        "POST /v1/instances HTTP/1.1\r\nHost: 127.0.0.1:9000\r\n"
        f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
    )
    return bytearray(head.encode() + body)


async def register(count: int) -> None:
    """`count` new registrations through the lane of a started server; each a 201."""
    from jarvis_dns import app as app_module
    from jarvis_dns.app import App
    from jarvis_dns.config import Config
    from jarvis_dns.http.common import CONTEXT
    from jarvis_dns.http.lane import Head, Lane, frame

    with tempfile.TemporaryDirectory() as data:
        config = Config(
            http="127.0.0.1:0",
            dns=["127.0.0.1:0"],
            data_dir=data,
            zones_dir=str(Path(data) / "zones"),
            store=f"sqlite:///{data}/registry.db",
            active_checks=False,
        )
        app = App(config)
        app_module._pause_gc()  # as serve() does around the start
        await app.start()
        app_module._tune_gc()
        try:
            assert app._runner is not None  # started
            lane = Lane(app._runner.app[CONTEXT])  # the lane as App builds it
            for start in range(1, count + 1, IN_FLIGHT):
                replies = []
                for n in range(start, min(start + IN_FLIGHT, count + 1)):
                    head = frame(request(n), 1 << 20)
                    assert isinstance(head, Head)
                    replies.append(lane.answer(head, "127.0.0.1"))
                for reply in replies:
                    answer = reply if isinstance(reply, bytes) else await reply  # type: ignore[misc]
                    assert answer.startswith(b"HTTP/1.1 201"), answer[:120]
        finally:
            await app.stop()
            await app.close()


def drive(count: int) -> None:
    try:
        import uvloop
    except ImportError:  # the server runs on asyncio's own loop then too
        asyncio.run(register(count))
    else:
        uvloop.run(register(count))


def instructions(count: int) -> int:
    """What valgrind counts for a whole run of `count` registrations."""
    argv = ["valgrind", "--tool=cachegrind", "--cache-sim=no", "--cachegrind-out-file=/dev/null"]
    argv += [sys.executable, __file__, "--drive", str(count)]
    env = {**os.environ, "PYTHONHASHSEED": "0"}  # the same dict layouts every run
    done = subprocess.run(argv, capture_output=True, text=True, env=env, check=False)
    found = re.search(r"I\s+refs:\s+([\d,]+)", done.stderr)
    if done.returncode != 0 or found is None:
        raise SystemExit(f"the run under valgrind failed:\n{done.stderr[-2000:]}")
    return int(found.group(1).replace(",", ""))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--drive", type=int, help=argparse.SUPPRESS)  # the measured run
    parser.add_argument("--quick", action="store_true", help="64 registrations, no valgrind")
    args = parser.parse_args()
    if args.drive or args.quick:
        drive(args.drive or IN_FLIGHT)
        return
    if shutil.which("valgrind") is None:
        raise SystemExit("needs valgrind: apt-get install valgrind")
    per = (instructions(MANY) - instructions(FEW)) / (MANY - FEW)
    print(f"{per:,.0f} instructions per registration (valgrind, in process)")


if __name__ == "__main__":
    main()
