"""The benchmarks' pictures: matplotlib PNGs under docs/bench/, linked from BENCHMARKS.md.

Drawn only by full runs (``--quick`` writes nothing), and matplotlib is imported only
then: a picture is made from the figures of the run that wrote the table beside it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

PICTURES = Path(__file__).resolve().parents[2] / "docs" / "bench"
SIZE = (6.4, 3.4)  # inches: readable beside the tables, on a phone too
DPI = 110


def _axes(title: str, xlabel: str, ylabel: str) -> tuple[Any, Any]:
    import matplotlib

    matplotlib.use("Agg")  # no display: files only
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=SIZE, dpi=DPI)
    ax.set_title(title, fontsize=11)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.grid(alpha=0.3)
    return fig, ax


def _save(fig: Any, ax: Any, name: str, alt: str) -> str:
    import matplotlib.pyplot as plt

    if ax.get_legend_handles_labels()[0]:
        ax.legend(fontsize=9)
    fig.tight_layout()
    PICTURES.mkdir(parents=True, exist_ok=True)
    fig.savefig(PICTURES / f"{name}.png")
    plt.close(fig)
    return f"![{alt}](docs/bench/{name}.png)"


def dns_against_churn(rates: Sequence[int], qps: Sequence[float], no_cache_qps: float) -> str:
    """DNS q/s while busy status flips at each rate, and the answer cache off."""
    fig, ax = _axes("DNS while busy status churns", "busy flips a second (HTTP)", "DNS q/s")
    ax.set_xscale("symlog", linthresh=100)
    ax.plot(list(rates), list(qps), marker="o", label="jarvis-dns, answer cache on")
    ax.axhline(no_cache_qps, linestyle="--", color="grey", label="answer cache off, no churn")
    ax.set_xticks(list(rates), [f"{r:,}" for r in rates])
    ax.set_ylim(bottom=0)
    return _save(fig, ax, "dns-churn", "DNS q/s against busy flips a second")


def latency_percentiles(runs: Mapping[str, Mapping[float, float]]) -> str:
    """Request latency at each percentile (wrk), one line a request kind."""
    fig, ax = _axes("HTTP latency distribution", "percentile", "latency (ms)")
    for name, by_percentile in runs.items():
        ps = sorted(by_percentile)
        # 1/(1-p): equal room for 50-90, 90-99 and 99-99.9.
        xs = [1 / (1 - p / 100) for p in ps]
        ax.plot(xs, [by_percentile[p] for p in ps], marker="o", label=name)
        ax.set_xscale("log")
        ax.set_xticks(xs, [f"{p:g}%" for p in ps])
    ax.set_yscale("log")
    return _save(fig, ax, "http-latency", "registration and heartbeat latency by percentile")


def propagation_cdf(took: Mapping[str, Sequence[float]]) -> str:
    """How soon another node's DNS shows a change: the share of rounds within x ms."""
    fig, ax = _axes("Cross-node propagation (etcd)", "ms from the write's 2xx", "share of rounds")
    for name, seconds in took.items():
        ms = sorted(t * 1000 for t in seconds)
        ax.step(ms, [(i + 1) / len(ms) for i in range(len(ms))], where="post", label=name)
    ax.set_ylim(0, 1.02)
    return _save(fig, ax, "cluster-propagation", "share of changes another node's DNS shows, by ms")
