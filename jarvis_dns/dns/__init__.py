"""The DNS face: an authoritative server for the registry zone and zones/*.zone.

    names.py      qname <-> naming-table row (pure)
    records.py    registry view -> RRsets; answer shapes (pure)
    zones.py      BIND master-format zone files
    authority.py  which zone answers; registry and static data combined (pure)
    responder.py  one message in, one out: EDNS(0), limits, cache (no I/O)
    wire.py       the fast path: standard queries answered from encoded replies (pure)
    upstream.py   forwarding outside our zones
    server.py     UDP and TCP sockets
    lookup.py     `jarvis-dns lookup`, a small dig

Import ``jarvis_dns.dns.server.DnsServer`` directly; this package imports nothing so
that the pure modules stay free of asyncio.
"""
