"""Response-rate limiting (RRL) as BIND does it (pure; the clock is injected).

Only UDP answers are limited: they are what a spoofed source turns into a flood at
someone else. Each client network (a /24 or /56, access.py) has one account per kind
of response, and identical responses share it:

* an answer, or NODATA: one account per question name (lower-cased) and type;
* NXDOMAIN: one account for all of them (BIND keys them by zone so that random names
  do not each get a fresh account; this server holds few zones);
* an error (REFUSED, FORMERR, SERVFAIL, NOTIMP, ...): one account for all of them.

An account earns ``rps`` credits a second, holding at most ``rps``; each response spends
one. A response with no credit left is limited: the first of every ``slip`` goes out
as an empty TC=1 reply (a real client asks again over TCP, which is never limited; a
spoofed victim gets a packet no bigger than the query), the others are dropped;
``slip`` 0 drops them all, 1 sends them all truncated. Debt is kept to ``window_s``
seconds of credit (BIND's ``window``), so answers resume at most that long after a
flood stops.
"""

from __future__ import annotations

import enum
from collections.abc import Callable
from dataclasses import dataclass

from jarvis_dns.dns.proto import HEADER, NOERROR, NXDOMAIN, question_end
from jarvis_dns.errors import ConfigError

WINDOW_S = 15.0  # BIND's default window
# Accounts kept. Each is ~200 bytes; past this, those back at full credit (the same as
# no account) are forgotten, and if that frees nothing, all are.
MAX_ACCOUNTS = 100_000


class Verdict(enum.Enum):
    SEND = "send"
    SLIP = "slip"  # send it truncated: header and question, TC=1
    DROP = "drop"


SEND, SLIP, DROP = Verdict.SEND, Verdict.SLIP, Verdict.DROP

Key = tuple[str | bytes, ...]


@dataclass(slots=True)
class _Account:
    balance: float
    at: float
    slips: int = 0  # limited responses since the last slip


def response_key(prefix: str, reply: bytes) -> Key:
    """The account a reply is charged to (see the module docstring)."""
    rcode = reply[3] & 0xF
    if rcode == NXDOMAIN:
        return (prefix, "nxdomain")
    if rcode != NOERROR:
        return (prefix, "error")
    try:
        end = question_end(reply)
    except IndexError:  # an upstream's odd question: charged with the errors
        return (prefix, "error")
    kind = "answer" if reply[6:8] != b"\x00\x00" else "nodata"
    return (prefix, kind, reply[HEADER:end].lower())  # name, type and class


class RateLimiter:
    def __init__(
        self,
        rps: int,
        slip: int,
        clock: Callable[[], float],
        *,
        window_s: float = WINDOW_S,
        max_accounts: int = MAX_ACCOUNTS,
    ) -> None:
        if rps < 0 or slip < 0:
            raise ConfigError("--rrl-rps and --rrl-slip must be 0 or more")
        self.rps, self.slip, self.clock = rps, slip, clock
        self.floor = -window_s * rps
        self.max_accounts = max_accounts
        self._accounts: dict[Key, _Account] = {}

    def __len__(self) -> int:
        return len(self._accounts)

    def verdict(self, prefix: str, reply: bytes) -> Verdict:
        """Whether to send a UDP reply to a client of network ``prefix``."""
        key = response_key(prefix, reply)
        now = self.clock()
        account = self._accounts.get(key)
        if account is None:
            if len(self._accounts) >= self.max_accounts:
                self._forget(now)
            account = self._accounts[key] = _Account(self.rps, now)
        else:
            account.balance = min(self.rps, account.balance + (now - account.at) * self.rps)
            account.at = now
        account.balance -= 1
        if account.balance >= 0:
            return SEND
        account.balance = max(account.balance, self.floor)
        return self._limited(account)

    def _limited(self, account: _Account) -> Verdict:
        if not self.slip:
            return DROP
        first = account.slips == 0
        account.slips = (account.slips + 1) % self.slip
        return SLIP if first else DROP

    def _forget(self, now: float) -> None:
        rps = self.rps
        full = [
            key
            for key, a in self._accounts.items()
            if a.balance + (now - a.at) * rps >= rps and not a.slips
        ]
        for key in full:
            del self._accounts[key]
        if len(self._accounts) >= self.max_accounts:
            self._accounts.clear()
