"""Who may change the registry over DNS UPDATE and who may transfer zones (pure).

Both are off until configured, and both name TSIG keys by the names ``--tsig-key``
gives them:

* ``--update-allow KEYNAME:SERVICE_PATTERN``: an UPDATE signed with KEYNAME may change
  instances of the services the pattern matches (fnmatch: ``web``, ``web-*``, ``*``).
  Unsigned updates, and keys without a rule, change nothing.
* ``--transfer-allow``: AXFR and IXFR are answered to sources in an address list (the
  words of access.py too: ``localhost``, ``localnets`` ...), or to requests signed with
  a key given as ``key:KEYNAME``.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Callable, Iterable, Sequence

from jarvis_dns.dns.access import Network, address_of, parse_list, within
from jarvis_dns.errors import ConfigError

KEY_PREFIX = "key:"


def key_name(text: str) -> str:
    """A key name as the rules compare them: lower case, no final dot."""
    return text.strip().rstrip(".").lower()


class UpdatePolicy:
    def __init__(self, rules: Iterable[str], keys: Iterable[str]) -> None:
        known = set(keys)
        self.patterns: dict[str, list[str]] = {}
        for rule in rules:
            name, sep, pattern = rule.partition(":")
            if not sep or not name or not pattern:
                raise ConfigError(f"--update-allow {rule!r}: want KEYNAME:SERVICE_PATTERN")
            if key_name(name) not in known:
                raise ConfigError(f"--update-allow {rule!r}: no --tsig-key is named {name}")
            self.patterns.setdefault(key_name(name), []).append(pattern.lower())

    def allows(self, key: str | None, service_type: str) -> bool:
        if key is None:
            return False
        return any(fnmatch.fnmatchcase(service_type, p) for p in self.patterns.get(key, ()))


class TransferPolicy:
    def __init__(
        self,
        rules: Iterable[str],
        keys: Iterable[str],
        localnets: Callable[[], Sequence[Network]] = list,
    ) -> None:
        known = set(keys)
        self.keys: set[str] = set()
        addresses: list[str] = []
        for rule in rules:
            if not rule.startswith(KEY_PREFIX):
                addresses.append(rule)
                continue
            name = key_name(rule[len(KEY_PREFIX) :])
            if name not in known:
                raise ConfigError(f"--transfer-allow {rule!r}: no --tsig-key is named that")
            self.keys.add(name)
        self.networks = parse_list("--transfer-allow", addresses, localnets)

    def __bool__(self) -> bool:
        return bool(self.networks or self.keys)

    def allows(self, source: str, key: str | None) -> bool:
        if key is not None and key in self.keys:
            return True
        address = address_of(source)
        return address is not None and within(address, self.networks)
