"""What the DNS face counts (pure).

Every message the responder takes ends in one *outcome*: the rcode of its answer and
whether that answer was empty (NODATA) or truncated (TC=1); or handed to the upstreams
(forwarded); or dropped (not a query: no answer). The hot path adds 1 to an int in a
list indexed by outcome, one list per transport; the answer caches count their hits
in a pair of lists of their own. Names and sums are made only when read: ``snapshot``
(the "dns" object of /v1/health) and the Prometheus families.

So ``queries_udp`` (every datagram the responder took) plus the ``backlog`` drops
(datagrams the server was too far behind to take) is every datagram received: a drop
of another kind (an answer the socket could not take, a forward over the limit) is
counted apart, never as a second query.
"""

from __future__ import annotations

from dataclasses import dataclass

from jarvis_dns.metrics.families import Metrics, Sample

RCODES = {0: "NOERROR", 1: "FORMERR", 2: "SERVFAIL", 3: "NXDOMAIN", 4: "NOTIMP",
          5: "REFUSED", 16: "BADVERS"}  # fmt: skip
OTHER = "OTHER"  # an rcode none of our paths answers with; counted rather than lost
# Not rcodes: handed to the upstreams; not a query (no answer); UPDATE, zone transfers
# and TSIG-signed messages, handed to operations.py (which counts what became of them).
FORWARDED, DROPPED, OPERATION = "forwarded", "dropped", "operation"
TRANSPORTS = ("tcp", "udp")  # indexed by the ``udp`` flag the hot path already has


@dataclass(frozen=True, slots=True)
class Outcome:
    rcode: str
    nodata: bool = False
    truncated: bool = False


OUTCOMES: tuple[Outcome, ...] = (
    Outcome(FORWARDED),
    Outcome(DROPPED),
    Outcome(OPERATION),
    *(
        Outcome(name, nodata, truncated)
        for name in (*RCODES.values(), OTHER)
        for nodata in ((False, True) if name == "NOERROR" else (False,))
        for truncated in (False, True)
    ),
)
_INDEX = {(o.rcode, o.nodata, o.truncated): i for i, o in enumerate(OUTCOMES)}
FORWARDED_AT = _INDEX[(FORWARDED, False, False)]
DROPPED_AT = _INDEX[(DROPPED, False, False)]
OPERATION_AT = _INDEX[(OPERATION, False, False)]
REFUSED_AT = _INDEX[("REFUSED", False, False)]
# Why a client was REFUSED for its address (access.py): not in --dns-allow; a name to
# forward, not in --recursion-allow.
DNS_ALLOW, RECURSION = "dns_allow", "recursion_allow"
# What response-rate limiting did with an answer over --rrl-rps (rrl.py).
SLIPPED, RRL_DROPPED = "slipped", "dropped"
# What operations.py made of the messages handed to it; "formerr" and "dropped" also
# count in the "dns" object's formerr and dropped, as answers of those kinds.
OPERATIONS = ("updates", "updates_refused", "axfr", "ixfr", "ixfr_full",
              "transfers_refused", "tsig_errors", "formerr", "dropped")  # fmt: skip


def outcome(rcode: int, answered: bool, truncated: bool) -> int:
    """The outcome index of an answer: its rcode, empty or not, truncated or not."""
    name = RCODES.get(rcode, OTHER)
    return _INDEX[(name, name == "NOERROR" and not answered, truncated)]


class DnsCounts:
    """The DNS figures of one server, reported into ``metrics``."""

    def __init__(self, metrics: Metrics) -> None:
        self.metrics = metrics
        n = len(OUTCOMES)
        # Messages taken and answered by hand or by dnslib, by transport ([udp]).
        self.taken = ([0] * n, [0] * n)
        # Queries the answer caches answered, by transport: each cache adds to its own.
        self.hits = ([0] * n, [0] * n)
        self.dropped = metrics.counter("jarvis_dns_dropped_total")
        self.dropped.start("backlog", "send_buffer", "forwards")
        self.forward_replies = metrics.counter("jarvis_dns_forward_replies_total")
        self.forward_replies.start("answered", "failed", "truncated")
        self.tcp_connections = metrics.counter("jarvis_dns_tcp_connections_total")
        self.tcp_rejected = metrics.counter("jarvis_dns_tcp_rejected_total")
        self.tls_connections = metrics.counter("jarvis_dns_tls_connections_total")
        self.refusals = metrics.counter("jarvis_dns_refusals_total")
        self.refusals.start(DNS_ALLOW, RECURSION)
        self.rrl = metrics.counter("jarvis_dns_rrl_total")
        self.rrl.start(SLIPPED, RRL_DROPPED)
        self.operations = metrics.counter("jarvis_dns_operations_total")
        self.operations.start(*OPERATIONS)
        self.errors = metrics.counter("jarvis_dns_errors_total")
        metrics.reading("jarvis_dns_queries_total", self._queries)
        metrics.reading("jarvis_dns_cache_hits_total", self._hits)
        metrics.reading("jarvis_dns_nodata_total", lambda: [((), self._sum(nodata=True))])
        metrics.reading("jarvis_dns_truncated_total", lambda: [((), self._truncated())])

    def count(self, udp: bool, at: int) -> None:
        """One message taken, off the cache (the cache counts its hits itself)."""
        self.taken[udp][at] += 1

    def _by_outcome(self, udp: bool) -> list[int]:
        return [a + b for a, b in zip(self.taken[udp], self.hits[udp], strict=True)]

    def _queries(self) -> list[Sample]:
        sums: dict[tuple[str, str], int] = {}
        for udp, transport in enumerate(TRANSPORTS):
            for at, n in enumerate(self._by_outcome(bool(udp))):
                if n:
                    key = (transport, OUTCOMES[at].rcode)
                    sums[key] = sums.get(key, 0) + n
        return [(key, float(n)) for key, n in sums.items()]

    def _hits(self) -> list[Sample]:
        return [((t,), float(sum(self.hits[udp]))) for udp, t in enumerate(TRANSPORTS)]

    def _sum(self, rcode: str | None = None, nodata: bool = False) -> int:
        total = 0
        for udp in (False, True):
            for at, n in enumerate(self._by_outcome(udp)):
                o = OUTCOMES[at]
                if (rcode is None or o.rcode == rcode) and (o.nodata or not nodata):
                    total += n
        return total

    def _truncated(self) -> int:
        total = int(self.forward_replies.get("truncated"))
        for udp in (False, True):
            total += sum(n for at, n in enumerate(self._by_outcome(udp)) if OUTCOMES[at].truncated)
        return total

    def queries(self, udp: bool) -> int:
        return sum(self._by_outcome(udp))

    def snapshot(self) -> dict[str, int]:
        """The "dns" object of /v1/health (its keys are older than /metrics)."""
        rcode = self._sum
        return {
            "queries_udp": self.queries(True),
            "queries_tcp": self.queries(False),
            "cache_hits": sum(map(sum, self.hits)),
            "dropped": rcode(DROPPED) + self._operation("dropped"),
            "formerr": rcode("FORMERR") + self._operation("formerr"),
            "notimp": rcode("NOTIMP"),
            "refused": rcode("REFUSED"),
            "nxdomain": rcode("NXDOMAIN"),
            "nodata": rcode(nodata=True),
            "badvers": rcode("BADVERS"),
            "truncated": self._truncated(),
            "forwarded": rcode(FORWARDED),
            # SERVFAIL answers sent: ours, and for forwards that got no reply in time.
            "servfail": rcode("SERVFAIL") + int(self.forward_replies.get("failed")),
            "backlog_dropped": int(self.dropped.get("backlog")),
            "send_dropped": int(self.dropped.get("send_buffer")),
            "forwards_dropped": int(self.dropped.get("forwards")),
            "tcp_connections": int(self.tcp_connections.get()),  # over TLS too
            "tls_connections": int(self.tls_connections.get()),
            "tcp_rejected": int(self.tcp_rejected.get()),
            "denied": int(self.refusals.get(DNS_ALLOW)),
            "recursion_refused": int(self.refusals.get(RECURSION)),
            "rrl_limited": int(self.rrl.get(SLIPPED) + self.rrl.get(RRL_DROPPED)),
            "rrl_slipped": int(self.rrl.get(SLIPPED)),
            "rrl_dropped": int(self.rrl.get(RRL_DROPPED)),
            "errors": int(self.errors.get()),
            **{kind: self._operation(kind) for kind in OPERATIONS[:-2]},
        }

    def _operation(self, kind: str) -> int:
        return int(self.operations.get(kind))
