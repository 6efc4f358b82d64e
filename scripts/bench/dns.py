"""DNS benchmark: dnsperf against jarvis-dns and against dnsmasq (C) serving the same
records, in the same run; then jarvis-dns again with 100,000 instances.

    .venv/bin/python scripts/bench/dns.py [--seconds 10] [--quick]
"""

from __future__ import annotations

import sys

sys.path.append(sys.path.pop(0))  # this file is dns.py: keep dnspython's `dns` first

import argparse
import shutil
import subprocess
import tempfile
from pathlib import Path

from _common import (
    LOAD_CPU,
    PYTHON,
    SERVER_CPU,
    dnsperf,
    free_port,
    header,
    pinned,
    seed_sqlite,
    stop,
    write_section,
)

ZONE = "jarvis.internal"
SMALL = 4  # instances of `auth`: an SRV answer with glue that fits 512 bytes
MIXES = {
    "SRV": [f"_auth._tcp.{ZONE} SRV"],
    "A": [f"auth.{ZONE} A"],
    "TXT": [f"1._auth._tcp.{ZONE} TXT"],
    "NXDOMAIN": [f"nope.{ZONE} A"],
    "mix": [
        f"_auth._tcp.{ZONE} SRV",
        f"auth.{ZONE} A",
        f"1._auth._tcp.{ZONE} TXT",
        f"nope.{ZONE} A",
    ],
}


def instances(n: int, types: int) -> list[tuple[str, int, str, int, dict[str, object]]]:
    per = max(1, n // types)
    return [
        (
            f"svc-{i // per}" if types > 1 else "auth",
            i + 1,
            f"10.0.{(i >> 8) & 255}.{i & 255}",
            5001 + i % 60000,
            {"version": "1.0"},
        )
        for i in range(n)
    ]


def dnsmasq_args(port: int, fleet: list[tuple[str, int, str, int, dict[str, object]]]) -> list[str]:
    args = [
        "dnsmasq",
        "--keep-in-foreground",
        "--no-resolv",
        "--no-hosts",
        "--bind-interfaces",
        "--listen-address=127.0.0.1",
        f"--port={port}",
        f"--local=/{ZONE}/",
        "--cache-size=10000",
        "--user=root",
        "--pid-file=",
    ]
    for svc, iid, host, port_, meta in fleet:
        target = f"{iid}.{svc}.{ZONE}"
        args.append(f"--srv-host=_{svc}._tcp.{ZONE},{target},{port_},0,100")
        args.append(f"--host-record={target},{host}")
        args.append(f"--host-record={svc}.{ZONE},{host}")
        txt = ",".join(f"{k}={v}" for k, v in meta.items()) + ",busy=false,status=active"
        args.append(f"--txt-record={iid}._{svc}._tcp.{ZONE},{txt}")
    return args


def wait_dns(port: int) -> None:
    import time

    import dns.message
    import dns.query

    for _ in range(200):
        try:
            dns.query.udp(
                dns.message.make_query(f"auth.{ZONE}", "A"), "127.0.0.1", port=port, timeout=0.2
            )
            return
        except Exception:
            time.sleep(0.05)
    raise RuntimeError(f"no DNS on port {port}")


def jarvis(data: str, *extra: str) -> tuple[subprocess.Popen[bytes], int]:
    port = free_port()
    argv = [
        PYTHON,
        "-m",
        "jarvis_dns",
        "serve",
        "--http",
        f"127.0.0.1:{free_port()}",
        "--dns",
        f"127.0.0.1:{port}",
        "--data-dir",
        data,
        "--zones-dir",
        data,
        "--log-level",
        "warning",
        "--no-active-checks",
        *extra,
    ]
    proc = subprocess.Popen(
        pinned(SERVER_CPU, argv), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    wait_dns(port)
    return proc, port


def run(seconds: float, big: int) -> str:
    fleet = instances(SMALL, 1)
    rows = []
    with tempfile.TemporaryDirectory() as small, tempfile.TemporaryDirectory() as large:
        seed_sqlite(small, fleet)
        ours, port = jarvis(small)
        ref_port = free_port()
        ref = subprocess.Popen(
            pinned(SERVER_CPU, dnsmasq_args(ref_port, fleet)),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            wait_dns(ref_port)
            for name, queries in MIXES.items():
                rows.append(
                    (name, dnsperf(port, queries, seconds), dnsperf(ref_port, queries, seconds))
                )
        finally:
            stop(ours)
            stop(ref)
        # The same A queries through dnslib alone: what the fast path saves.
        slow, slow_port = jarvis(small, "--no-fast-path")
        try:
            dnslib_a = dnsperf(slow_port, MIXES["A"], seconds)
        finally:
            stop(slow)
        big_fleet = instances(big, big // 100)
        seed_sqlite(large, big_fleet)
        ours, port = jarvis(large)
        try:
            types = big // 100
            queries = [
                q
                for k in range(0, types, max(1, types // 50))
                for q in (
                    f"_svc-{k}._tcp.{ZONE} SRV",
                    f"svc-{k}.{ZONE} A",
                    f"{k * 100 + 1}._svc-{k}._tcp.{ZONE} TXT",
                )
            ]
            at_size = dnsperf(port, queries, seconds)
        finally:
            stop(ours)
    small_mix = rows[-1][1]
    lines = [
        "| query | jarvis-dns q/s | lost | dnsmasq q/s | lost | ratio |",
        "| --- | ---: | ---: | ---: | ---: | ---: |",
    ]
    for name, mine, theirs in rows:
        lines.append(
            f"| {name} | {mine.qps:,.0f} | {mine.lost} | {theirs.qps:,.0f} | {theirs.lost} | "
            f"{mine.qps / theirs.qps:.2f} |"
        )
    lines.append("")
    lines.append(
        f"The A queries with `--no-fast-path` (every query parsed and packed by dnslib): "
        f"{dnslib_a.qps:,.0f} q/s, {dnslib_a.lost} lost."
    )
    lines.append("")
    lines.append(
        f"With {big:,} instances across {big // 100:,} service types (SRV/A/TXT over 50 types, "
        f"100-instance answers truncated to fit 512 bytes): {at_size.qps:,.0f} q/s, "
        f"{at_size.lost} lost — {at_size.qps / small_mix.qps:.2f} x the small mix."
    )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seconds", type=int, default=10)
    parser.add_argument("--instances", type=int, default=100_000)
    parser.add_argument("--quick", action="store_true", help="1 s runs, 2,000 instances")
    args = parser.parse_args()
    for tool in ("dnsperf", "dnsmasq"):
        if not shutil.which(tool) and not Path(f"/usr/sbin/{tool}").exists():
            sys.exit(f"{tool} is missing: apt-get install {tool}")
    seconds, big = (1, 2000) if args.quick else (args.seconds, args.instances)
    table = run(seconds, big)
    command = "scripts/bench/dns.py" + (" --quick" if args.quick else "")
    text = header("DNS: jarvis-dns against dnsmasq", command) + (
        f"\ndnsperf ({seconds} s each, 8 clients, 200 outstanding) pinned to core {LOAD_CPU}; "
        f"each server pinned to core {SERVER_CPU}. dnsmasq serves the same {SMALL} `auth` "
        "instances as `--srv-host`, `--host-record` and `--txt-record`, with "
        f"`--local=/{ZONE}/` for NXDOMAIN. jarvis-dns asks for a 4 MiB UDP receive buffer "
        "(capped by net.core.rmem_max); dnsmasq keeps the kernel default (208 KiB), which "
        "holds only ~200 queued datagrams, so its few lost queries are bursts it dropped."
        f"\n\n{table}"
    )
    print(text)
    if not args.quick:
        write_section("dns", text)


if __name__ == "__main__":
    main()
