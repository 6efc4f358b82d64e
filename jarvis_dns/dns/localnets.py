"""This host's own networks: what the ``localnets`` word of DNS address lists means
(the default ``--recursion-allow`` is ``localhost,localnets``, as BIND's is).

Exactly:

* on Linux, every IPv4 network a route reaches without a gateway (``/proc/net/route``:
  the networks of this host's interfaces; the default route is never one), and the
  network of every IPv6 address of an interface, with its prefix length
  (``/proc/net/if_inet6``);
* where ``/proc`` is not there, each address the host name resolves to
  (``getaddrinfo(gethostname())``), alone (/32, /128): the netmask is not known;
* always, each address the DNS server listens on (``--dns``, ``--dot``), alone, unless
  it is a wildcard.

Read once at start; a network added later needs a restart (or an explicit CIDR).
"""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Iterable
from pathlib import Path

from jarvis_dns.config import Config, split_hostport
from jarvis_dns.dns.access import Network, address_of

ROUTES = Path("/proc/net/route")
IPV6_ADDRESSES = Path("/proc/net/if_inet6")
_RTF_UP, _RTF_GATEWAY = 0x1, 0x2  # <linux/route.h>


def parse_routes(text: str) -> list[ipaddress.IPv4Network]:
    """/proc/net/route -> the networks reached without a gateway (hex, little-endian)."""
    networks = []
    for line in text.splitlines()[1:]:
        fields = line.split()
        if len(fields) < 8:
            continue
        destination, flags, mask = int(fields[1], 16), int(fields[3], 16), int(fields[7], 16)
        if flags & _RTF_GATEWAY or not flags & _RTF_UP or mask == 0:
            continue
        address = ipaddress.IPv4Address(destination.to_bytes(4, "little"))
        netmask = ipaddress.IPv4Address(mask.to_bytes(4, "little"))
        networks.append(ipaddress.IPv4Network(f"{address}/{netmask}", strict=False))
    return networks


def parse_ipv6_addresses(text: str) -> list[ipaddress.IPv6Network]:
    """/proc/net/if_inet6 -> each address's network (address, index, prefix length hex, ...)."""
    networks = []
    for line in text.splitlines():
        fields = line.split()
        if len(fields) < 4 or int(fields[2], 16) == 0:
            continue
        address = ipaddress.IPv6Address(bytes.fromhex(fields[0]))
        networks.append(ipaddress.IPv6Network((address, int(fields[2], 16)), strict=False))
    return networks


def listening_hosts(config: Config) -> list[str]:
    """The hosts the DNS server binds (``--dns``, ``--dot``)."""
    return [split_hostport(spec, 0)[0] for spec in (*config.dns, *config.dot)]


def own_networks(listening: Iterable[str]) -> list[Network]:
    """The networks of the module docstring; listening: the hosts the server binds."""
    networks: list[Network] = []
    try:
        networks += parse_routes(ROUTES.read_text())
        networks += parse_ipv6_addresses(IPV6_ADDRESSES.read_text())
    except OSError:  # not Linux: the host name's addresses stand for the host
        networks += _alone(_host_name_addresses())
    return networks + _alone(listening)


def _host_name_addresses() -> list[str]:
    try:
        infos = socket.getaddrinfo(socket.gethostname(), None, proto=socket.IPPROTO_UDP)
    except OSError:
        return []
    return [str(info[4][0]) for info in infos]


def _alone(hosts: Iterable[str]) -> list[Network]:
    alone: list[Network] = []
    for host in hosts:
        address = address_of(host.strip("[]"))
        if address is not None and not address.is_unspecified:
            alone.append(ipaddress.ip_network(address))
    return alone
