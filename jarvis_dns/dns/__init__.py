"""The DNS face: an authoritative server for the registry zone and zones/*.zone.

    proto.py      wire facts: sizes, flag bits, type codes, TCP framing
    names.py      qname <-> naming-table row (pure)
    records.py    registry view -> RRsets; answer shapes (pure, dnslib objects)
    zones.py      BIND master-format zone files
    authority.py  which zone answers; registry and static data combined (pure)
    query.py      classify: a standard query, or one for the dnslib path (pure)
    packer.py     a message writer compressing names as dnslib does (pure)
    encode.py     the miss path: registry answers encoded by hand from the view (pure)
    cache.py      encoded answers by question, dropped per service (pure)
    responder.py  one message in, one out: cache, hand encoder, dnslib (no I/O)
    compose.py    ``build``: the responder from the settings
    upstream.py   forwarding outside our zones
    access.py     who a client is: --dns-allow, --rrl-exempt, --recursion-allow (pure)
    localnets.py  this host's own networks (the word "localnets")
    rrl.py        response-rate limiting as BIND does it (pure, clock injected)
    server.py     UDP, TCP and TLS sockets; only bytes move there
    lookup.py     `jarvis-dns lookup`, a small dig

``build(discovery, zones, config)`` makes the responder the sockets
(``jarvis_dns.dns.server.DnsServer``) answer through.
"""

from jarvis_dns.dns.compose import build

__all__ = ["build"]
