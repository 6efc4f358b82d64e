"""The Prometheus text format of a ``Metrics``, made by prometheus-client at scrape time.

A custom collector turns each family into prometheus-client's metric families when a
scrape asks; nothing of prometheus-client runs between scrapes, so the parts count with
plain ints and no lock (prometheus-client's own Counter takes a lock per increment).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector

from jarvis_dns.metrics.catalogue import Kind, Spec
from jarvis_dns.metrics.families import Histogram, Metrics, Sample

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
Allowed = Callable[[str], bool]  # may this reader see figures of this service?


class _Collector(Collector):
    def __init__(self, metrics: Metrics, allowed: Allowed) -> None:
        self._metrics = metrics
        self._allowed = allowed

    def collect(self) -> Iterator[Metric]:
        for family in self._metrics.families():
            if isinstance(family, Histogram):
                yield self._histogram(family)
            else:
                yield self._plain(family.spec, family.samples())

    def _shown(self, spec: Spec, labels: tuple[str, ...]) -> bool:
        if "service" not in spec.labels:
            return True
        return self._allowed(labels[spec.labels.index("service")])

    def _plain(self, spec: Spec, samples: list[Sample]) -> Metric:
        labels = list(spec.labels)
        family: CounterMetricFamily | GaugeMetricFamily
        if spec.kind is Kind.COUNTER:
            family = CounterMetricFamily(spec.name, spec.help, labels=labels)
        else:
            family = GaugeMetricFamily(spec.name, spec.help, labels=labels)
        for values, value in sorted(samples):
            if self._shown(spec, values):
                family.add_metric(list(values), value)
        return family

    def _histogram(self, histogram: Histogram) -> Metric:
        spec = histogram.spec
        family = HistogramMetricFamily(spec.name, spec.help, labels=list(spec.labels))
        for values, cell in sorted(histogram.cells.items()):
            family.add_metric(list(values), cell.cumulative(spec.buckets), cell.total)
        return family


def render(metrics: Metrics, allowed: Allowed = lambda _: True) -> bytes:
    """The text exposition of every family; series of services ``allowed`` refuses are
    left out (an ACL reader sees the figures of the services it may read)."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(_Collector(metrics, allowed))
    return generate_latest(registry)
