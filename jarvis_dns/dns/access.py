"""Who a DNS client is to this server (pure): answered at all (``--dns-allow``), rate
limited (``--rrl-rps`` unless ``--rrl-exempt``), allowed recursion through the upstreams
(``--recursion-allow``), and which network its rate-limit accounts belong to.

A client with nothing to check (by default: loopback) is ``PLAIN``; once seen, its
address is in ``Sources.plain``, and that set lookup is all the UDP hot path adds.
Anyone else is looked up in ``Sources`` (a dict hit after its first message).

Address lists hold networks (``10.0.0.0/8``), addresses, and four words: ``any``,
``none``, ``localhost`` (127.0.0.0/8 and ::1) and ``localnets`` (this host's own
networks, found by localnets.py).
"""

from __future__ import annotations

import ipaddress
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from jarvis_dns.config import Config
from jarvis_dns.errors import ConfigError

Network = ipaddress.IPv4Network | ipaddress.IPv6Network
Address = ipaddress.IPv4Address | ipaddress.IPv6Address

# BIND's RRL defaults: a client network is a /24 (IPv4) or a /56 (IPv6, a site).
IPV4_PREFIX = 24
IPV6_PREFIX = 56
# Addresses remembered; a spoofed flood of random sources starts the memo over.
MAX_SOURCES = 65_536

_WORDS: dict[str, tuple[str, ...]] = {
    "any": ("0.0.0.0/0", "::/0"),
    "none": (),
    "localhost": ("127.0.0.0/8", "::1/128"),
}


def parse_list(
    flag: str, specs: Sequence[str], localnets: Callable[[], Sequence[Network]]
) -> tuple[Network, ...]:
    """An address list's networks; a bad item is a ConfigError naming the flag."""
    networks: list[Network] = []
    for spec in (s.strip() for s in specs):
        word = spec.lower()
        if word == "localnets":
            networks += localnets()
        elif word in _WORDS:
            networks += (ipaddress.ip_network(n) for n in _WORDS[word])
        else:
            try:
                networks.append(ipaddress.ip_network(spec, strict=False))
            except ValueError:
                raise ConfigError(
                    f"{flag}: {spec!r} is not a network, an address, or one of "
                    "any, none, localhost, localnets"
                ) from None
    return tuple(networks)


def address_of(host: str) -> Address | None:
    """A socket's peer address; an IPv4-mapped IPv6 one as the IPv4 it is."""
    try:
        address = ipaddress.ip_address(host.split("%")[0])
    except ValueError:
        return None
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address


def within(address: Address, networks: tuple[Network, ...]) -> bool:
    return any(address.version == n.version and address in n for n in networks)


@dataclass(frozen=True, slots=True)
class Admission:
    """What to do for one client address."""

    allowed: bool  # answered; else REFUSED
    limited: bool  # its UDP answers go through the rate limiter
    recursion: bool  # may have names outside our zones forwarded (or nothing forwards)
    prefix: str = ""  # its rate-limit network, "192.0.2.0/24"


PLAIN = Admission(allowed=True, limited=False, recursion=True)


class Policy:
    def __init__(
        self,
        allow: tuple[Network, ...],
        exempt: tuple[Network, ...],
        recursion: tuple[Network, ...],
        *,
        limiting: bool,
        forwarding: bool,
    ) -> None:
        """limiting: RRL is on; forwarding: there are upstreams to recurse to."""
        self.allow, self.exempt, self.recursion = allow, exempt, recursion
        self.limiting, self.forwarding = limiting, forwarding

    @classmethod
    def from_config(
        cls, config: Config, forwarding: bool, localnets: Callable[[], Sequence[Network]]
    ) -> Policy:
        found: list[Sequence[Network]] = []

        def once() -> Sequence[Network]:  # localnets reads the system: at most once
            if not found:
                found.append(localnets())
            return found[0]

        return cls(
            parse_list("--dns-allow", config.dns_allow, once),
            parse_list("--rrl-exempt", config.rrl_exempt, once),
            parse_list("--recursion-allow", config.recursion_allow, once),
            limiting=config.rrl_rps > 0,
            forwarding=forwarding,
        )

    def admit(self, host: str) -> Admission:
        address = address_of(host)
        if address is None:  # not an IP peer: nothing to admit it by
            return Admission(allowed=False, limited=False, recursion=False)
        allowed = within(address, self.allow)
        limited = self.limiting and not within(address, self.exempt)
        recursion = not self.forwarding or within(address, self.recursion)
        if allowed and recursion and not limited:
            return PLAIN
        length = IPV4_PREFIX if address.version == 4 else IPV6_PREFIX
        prefix = str(ipaddress.ip_network((address, length), strict=False))
        return Admission(allowed, limited, recursion, prefix)


class Sources:
    """Client address -> Admission, worked out on first sight and remembered."""

    def __init__(self, policy: Policy) -> None:
        self.policy = policy
        # The addresses known to be PLAIN: the hot path's one check is membership here
        # (a set lookup is the cheapest test Python has for a fresh address string).
        self.plain: set[str] = set()
        self._known: dict[str, Admission] = {}

    def __getitem__(self, host: str) -> Admission:
        admission = self._known.get(host)
        if admission is None:
            if len(self._known) >= MAX_SOURCES:
                self._known.clear()
                self.plain.clear()
            admission = self._known[host] = self.policy.admit(host)
            if admission is PLAIN:
                self.plain.add(host)
        return admission
