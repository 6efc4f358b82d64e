"""Addresses active checks never reach (--check-deny): link-local and cloud metadata.

Asked twice: at registration for an address given as such (a 400), and by the checks
for whatever a host name resolves to at probe time (a name may change its answer)."""

from __future__ import annotations

import functools
import ipaddress
from collections.abc import Sequence

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


@functools.lru_cache(maxsize=8)
def _networks(deny: tuple[str, ...]) -> tuple[Network, ...]:
    return tuple(ipaddress.ip_network(n, strict=False) for n in deny)


def denied(host: str, deny: Sequence[str]) -> str | None:
    """The denied network an address falls in; None for an allowed address or a name."""
    try:
        address = ipaddress.ip_address(host.strip("[]").split("%")[0])
    except ValueError:
        return None
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    for net in _networks(tuple(deny)):
        if address.version == net.version and address in net:
            return str(net)
    return None
