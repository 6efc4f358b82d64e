"""One home for the registry's own figures: every part reports into one ``Metrics``;
``GET /v1/health`` shows them as JSON and ``GET /metrics`` in the Prometheus text format.

    catalogue.py   every metric there is: name, kind, help, labels, buckets (one table)
    families.py    Counter, Histogram and Reading: plain ints and floats, no locks (pure)
    dns.py         the DNS face's counts: an int per (transport, outcome), named on reading
    exposition.py  the Prometheus text, made by prometheus-client at scrape time only

Nothing here takes a lock or calls prometheus-client on a hot path: a part adds to an
int it holds (one event loop, so no lock is needed), and a scrape reads them all.
"""

from jarvis_dns.metrics.families import Counter, Histogram, Metrics, Reading

__all__ = ["Counter", "Histogram", "Metrics", "Reading"]
