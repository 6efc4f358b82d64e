"""CPU time per DNS answer on the fast path, in process: the responder's ``answer`` as
the UDP socket calls it, over SRV, A, TXT and NXDOMAIN questions of four instances;
the best of seven rounds of process CPU time. Unlike q/s through dnsperf, other load on
a shared machine barely moves it, so it is the figure to compare two versions by.

    cd <a checkout> && .venv/bin/python <this file> [--cache on|off] [--rounds 20000]

It measures the jarvis_dns that the current folder imports.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time

# This folder holds dns.py: keep dnspython's `dns` first. And measure the jarvis_dns of
# the current folder, not of this script's checkout.
sys.path[0] = ""

import dns.message  # noqa: E402

from jarvis_dns.config import Config  # noqa: E402
from jarvis_dns.discovery import Discovery  # noqa: E402
from jarvis_dns.dns import build  # noqa: E402
from jarvis_dns.models import Instance, Status  # noqa: E402
from jarvis_dns.registry import View  # noqa: E402

QUESTIONS = [
    ("_auth._tcp.jarvis.internal.", "SRV"),
    ("auth.jarvis.internal.", "A"),
    ("1._auth._tcp.jarvis.internal.", "TXT"),
    ("nope.jarvis.internal.", "A"),
]


def fleet() -> View:
    view = View()
    for i in range(1, 5):
        view.put(
            Instance(
                service_type="auth",
                instance_id=i,
                host=f"10.0.0.{i}",
                port=5000 + i,
                metadata={"version": "1.0"},
                weight=100,
                busy=False,
                status=Status.ACTIVE,
                ttl_s=30.0,
                check=None,
                deregister_after_s=None,
                registered_at=0.0,
                last_heartbeat=0.0,
                status_since=0.0,
            )
        )
    view.index = 4
    return view


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cache", choices=["on", "off"], default="on")
    parser.add_argument("--rounds", type=int, default=20_000)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as zones:
        config = Config(zones_dir=zones)
        responder = build(Discovery(fleet()), None, config, cache=args.cache == "on")
    queries = [dns.message.make_query(n, t).to_wire() for n, t in QUESTIONS]
    answer = responder.answer
    for q in queries:
        assert isinstance(answer(q, True, later=True), bytes)
    best = float("inf")
    for _ in range(7):
        began = time.process_time()
        for _ in range(args.rounds):
            for q in queries:
                answer(q, True, later=True)
        best = min(best, (time.process_time() - began) / (args.rounds * len(queries)))
    print(f"{best * 1e9:.0f} ns of CPU per answer (answer cache {args.cache})")


if __name__ == "__main__":
    main()
