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

Beyond queries (off until ``--tsig-key`` / ``--transfer-allow`` / ``--notify``):

    operations.py UPDATE, zone transfers and TSIG-signed messages, handed over by the
                  responder; the only part that writes (through changes.py)
    tsig.py       TSIG keys, checking requests and signing replies (dnspython)
    permits.py    who may update which services, who may transfer (pure)
    update.py     an RFC 2136 UPDATE -> registry commands, prerequisites (pure)
    content.py    the zones as whole record lists, as transfers carry them (pure)
    journal.py    what each change did to the zone, for IXFR (pure)
    xfr.py        AXFR and IXFR replies as message streams (pure)
    serial.py     RFC 1982 serial arithmetic (pure)
    notify.py     when to NOTIFY which secondary (pure, injected clock)
    notifier.py   sends the NOTIFYs and hears the answers

``build(discovery, zones, config)`` makes the responder the sockets
(``jarvis_dns.dns.server.DnsServer``) answer through.
"""

from jarvis_dns.dns.compose import build

__all__ = ["build"]
