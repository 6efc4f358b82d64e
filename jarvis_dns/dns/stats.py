"""Counters of the DNS face, shown under "dns" in GET /v1/health."""

from __future__ import annotations

COUNTERS = (
    "queries_udp",  # every datagram received, garbage included
    "queries_tcp",  # every length-prefixed message received over TCP
    "dropped",  # not a DNS query (unparsable, or a response): no answer sent
    "formerr",
    "notimp",
    "refused",
    "nxdomain",
    "nodata",
    "badvers",
    "truncated",  # UDP answers sent with TC=1
    "forwarded",
    "servfail",
    "backlog_dropped",  # UDP queries dropped because the server was behind
    "tcp_connections",  # DNS over TCP and over TLS
    "tls_connections",  # of those, over TLS (--dot)
    "tcp_rejected",  # connections closed at once: over --dns-tcp-max-* (TCP and TLS)
    "denied",  # queries from outside --dns-allow: REFUSED
    "recursion_refused",  # names to forward from outside --recursion-allow: REFUSED
    "rrl_limited",  # UDP answers over --rrl-rps: slipped + dropped
    "rrl_slipped",  # of those, sent empty with TC=1
    "rrl_dropped",  # of those, not sent
    "errors",  # bugs caught per packet; each is logged with its traceback
    "updates",  # DNS UPDATE messages (RFC 2136) checked
    "updates_refused",  # ... answered with another rcode than NOERROR
    "axfr",  # AXFR answered
    "ixfr",  # IXFR answered with what changed (or the SOA alone: up to date)
    "ixfr_full",  # IXFR answered with the whole zone: the journal did not reach back
    "transfers_refused",  # ... refused (--transfer-allow), not our zone, or AXFR over UDP
    "tsig_errors",  # signed messages answered BADKEY, BADSIG or BADTIME
)


class Stats:
    def __init__(self) -> None:
        # Public so the fast path can add to it without a method call per query.
        self.counts = dict.fromkeys(COUNTERS, 0)

    def bump(self, name: str, by: int = 1) -> None:
        self.counts[name] += by

    def __getitem__(self, name: str) -> int:
        return self.counts[name]

    def snapshot(self) -> dict[str, int]:
        return dict(self.counts)
