"""``build``: the DNS responder from the settings, composed in one place."""

from __future__ import annotations

from jarvis_dns.config import Config
from jarvis_dns.discovery import Discovery
from jarvis_dns.dns.authority import Authority
from jarvis_dns.dns.encode import HandEncoder
from jarvis_dns.dns.records import RegistryRecords
from jarvis_dns.dns.responder import Responder
from jarvis_dns.dns.upstream import Upstream, parse_upstreams
from jarvis_dns.dns.zones import ZoneSet
from jarvis_dns.metrics import Metrics
from jarvis_dns.metrics.dns import DnsCounts


def build(
    discovery: Discovery,
    zones: ZoneSet | None,
    config: Config,
    *,
    upstream: Upstream | None = None,
    cache: bool | None = None,
    udp_limit: int | None = None,
    metrics: Metrics | None = None,
) -> Responder:
    """The responder for the registry behind ``discovery`` and the zone files of
    ``zones`` (None: config.zones_dir), as the settings ask.

    upstream: replaces the ``--upstream`` servers (tests); cache, udp_limit: override
    the settings (cache off: every reply is encoded anew, the miss path alone);
    metrics: where the DNS figures are reported (a private one when None)."""
    records = RegistryRecords(discovery, config.zone, config.dns_ttl, config.dns_negative_ttl)
    servers = parse_upstreams(config.upstreams)
    if upstream is None and servers:
        upstream = Upstream(servers, config.upstream_timeout_s)
    if udp_limit is None:
        udp_limit = config.udp_answer_limit
    if cache is None:
        cache = config.dns_cache
    hand = None
    if config.dns_fast_path:
        hand = HandEncoder(
            discovery,
            config.zone,
            config.dns_ttl,
            config.dns_negative_ttl,
            lambda: records.ns_addresses,
            config.max_udp_size,
            forwarding=upstream is not None,
            udp_limit=udp_limit,
        )
    return Responder(
        Authority(records),
        hand,
        config.max_udp_size,
        zones=zones if zones is not None else ZoneSet(config.zones_dir, config.zone),
        upstream=upstream,
        cache=cache,
        udp_limit=udp_limit,
        counts=DnsCounts(metrics or Metrics()),
    )
