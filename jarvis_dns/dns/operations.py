"""What the DNS face does beyond answering queries: UPDATE, zone transfers, TSIG.

The responder hands a message over (``Special``) where it already leaves its fast
path: an UPDATE opcode, an AXFR or IXFR question, or a TSIG record. Here it is checked
(TSIG with dnspython, then who may: access.py) and carried out:

* UPDATE -> update.py's commands -> ``Changes.run``, the one writer HTTP uses too, so
  an instance registered by nsupdate is an instance like any other (TTL, heartbeats,
  busy, events). Every command is checked before the first runs.
* AXFR / IXFR -> xfr.py's messages, each signed in turn when the request was.
* anything else signed (a secondary's SOA query, say) -> the answer the responder
  gives the unsigned message, signed.

Replies to signed requests are signed; failures of TSIG itself get NOTAUTH with the
TSIG error (tsig.py). Nothing here touches sockets: the server passes the source
address in and writes what comes out.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import time
from collections.abc import AsyncIterator, Callable, Iterable, Iterator, Sequence

import dns.exception
import dns.flags
import dns.message
import dns.opcode
import dns.rcode
import dns.rdataclass
import dns.rdatatype

from jarvis_dns.changes import Changes
from jarvis_dns.config import Config
from jarvis_dns.dns import tsig
from jarvis_dns.dns.access import Network
from jarvis_dns.dns.content import Record, from_dnslib
from jarvis_dns.dns.permits import TransferPolicy, UpdatePolicy
from jarvis_dns.dns.proto import HEADER, QR
from jarvis_dns.dns.responder import Forward, Responder
from jarvis_dns.dns.update import Command, Refused, plan_update
from jarvis_dns.dns.xfr import Transfers, messages, reply_header
from jarvis_dns.errors import JarvisError, NotFound, StoreError
from jarvis_dns.http import limits
from jarvis_dns.registry import Register

log = logging.getLogger(__name__)
Clock = Callable[[], float]
_TRANSFER_TYPES = frozenset({dns.rdatatype.AXFR, dns.rdatatype.IXFR})


class Operations:
    def __init__(
        self,
        responder: Responder,
        changes: Changes,
        transfers: Transfers,
        config: Config,
        clock: Clock = time.time,
        localnets: Callable[[], Sequence[Network]] = list,
    ) -> None:
        """localnets: what the word ``localnets`` in --transfer-allow means (localnets.py)."""
        self.responder = responder
        self.changes = changes
        self.transfers = transfers
        self.config = config
        self.keyring = tsig.Keyring(config.tsig_keys)
        names = [tsig.key_text(n) for n in self.keyring.keys]
        self.updates = UpdatePolicy(config.update_allow, names)
        self.transfer_policy = TransferPolicy(config.transfer_allow, names, localnets)
        self.counted = responder.counts.operations  # metrics.dns.OPERATIONS
        self._clock = clock

    def now(self) -> int:
        return int(self._clock())

    async def handle(self, wire: bytes, source: str, udp: bool) -> AsyncIterator[bytes]:
        """The replies to one message: none (garbage), one, or a transfer's many."""
        try:
            request = dns.message.from_wire(wire, keyring=False)  # TSIG checked next
        except Exception:  # dnspython raises several kinds on garbage; all mean FORMERR
            formerr = _formerr(wire)
            self.counted.inc("formerr" if formerr else "dropped")
            if formerr:
                yield formerr
            return
        try:
            signer = tsig.verify(wire, request, self.keyring)
        except tsig.TsigFailure as failure:
            self.counted.inc("tsig_errors")
            log.info("TSIG %s from %s (key %s)", failure, source, request.keyname)
            yield tsig.failure_reply(wire, request, self.keyring, failure.error, self.now())
            return
        if request.opcode() == dns.opcode.UPDATE:
            yield self._signed(await self._update(request, signer, source), signer)
        elif request.opcode() == dns.opcode.QUERY and _transfer_question(request):
            async for message in self._transfer(request, signer, source, udp):
                yield message
        else:
            reply = await self._answer(request, udp)
            if reply is not None:
                yield self._signed(reply, signer)

    def _signed(self, wire: bytes, signer: tsig.Signer | None) -> bytes:
        return wire if signer is None else signer.sign(wire, self.now())[0]

    def _reply(self, request: dns.message.Message, rcode: int) -> bytes:
        reply = dns.message.make_response(request, our_payload=self.config.max_udp_size)
        reply.set_rcode(dns.rcode.Rcode(rcode))
        return reply.to_wire()

    # -- UPDATE

    async def _update(
        self, request: dns.message.Message, signer: tsig.Signer | None, source: str
    ) -> bytes:
        self.counted.inc("updates")
        rcode = await self._run_update(request, signer, source)
        if rcode != dns.rcode.NOERROR:
            self.counted.inc("updates_refused")
        return self._reply(request, rcode)

    async def _run_update(
        self, request: dns.message.Message, signer: tsig.Signer | None, source: str
    ) -> int:
        who = signer.name if signer is not None else None
        if who is None:
            log.info("UPDATE from %s refused: not signed (--tsig-key, --update-allow)", source)
            return dns.rcode.REFUSED
        view = self.changes.view
        try:
            commands = plan_update(
                request,
                self.config.zone,
                lambda svc: self.updates.allows(who, svc),
                self._lookup,
                view.find,
                who,
            )
            for command in commands:
                if isinstance(command, Register):
                    limits.admit_instance(view, self.config, command.spec)
        except Refused as refused:
            log.info("UPDATE from %s (key %s) refused: %s", source, who, refused)
            return refused.rcode
        except JarvisError as exc:  # --max-instances and the like
            log.info("UPDATE from %s (key %s) refused: %s", source, who, exc)
            return dns.rcode.REFUSED
        return await self._commit(commands, source, who)

    async def _commit(self, commands: Iterable[Command], source: str, who: str) -> int:
        for command in commands:
            try:
                await self.changes.run(command)
            except NotFound:
                pass  # deregistered meanwhile: what the update asked for
            except StoreError as exc:
                log.error("UPDATE from %s (key %s) failed: %s", source, who, exc)
                return dns.rcode.SERVFAIL
        return dns.rcode.NOERROR

    def _lookup(self, name: str) -> dict[int, set[bytes]] | None:
        """A name's RRsets as answers show them, for the prerequisites."""
        node = self.responder.authority.rrsets(name)
        if node is None:
            return None
        return {
            rtype: {from_dnslib(rr)[3] for rr in rrset.records} for rtype, rrset in node.items()
        }

    # -- AXFR and IXFR

    async def _transfer(
        self, request: dns.message.Message, signer: tsig.Signer | None, source: str, udp: bool
    ) -> AsyncIterator[bytes]:
        question = request.question[0]
        origin = self.transfers.origin_of(question.name.to_text().lower())
        who = signer.name if signer is not None else None
        rcode = dns.rcode.NOERROR
        if origin is None or question.rdclass != dns.rdataclass.IN:
            rcode = dns.rcode.NOTAUTH  # RFC 5936 2.2.1: not a zone of ours
        elif not self.transfer_policy.allows(source, who):
            log.info("%s of %s from %s (key %s) refused", question.rdtype.name, origin, source, who)
            rcode = dns.rcode.REFUSED
        elif question.rdtype == dns.rdatatype.AXFR and udp:
            rcode = dns.rcode.NOTIMP  # RFC 5936 4.2: AXFR is for TCP only
        if rcode != dns.rcode.NOERROR or origin is None:
            self.counted.inc("transfers_refused")
            yield self._signed(self._reply(request, rcode), signer)
            return
        found = self._records(request, origin, udp)
        if found is None:
            self.counted.inc("formerr")
            yield self._signed(self._reply(request, dns.rcode.FORMERR), signer)
            return
        counter, records = found
        self.counted.inc(counter)
        header = reply_header(request.id, bool(request.flags & dns.flags.RD))
        asked = question.name.to_wire() or b""
        asked += int(question.rdtype).to_bytes(2, "big") + int(question.rdclass).to_bytes(2, "big")
        ctx = None
        for message in messages(header, asked, records):
            if signer is not None:
                message, ctx = signer.sign(message, self.now(), ctx, multi=True)
            yield message
            await asyncio.sleep(0)  # a big zone interleaves with the queries meanwhile

    def _records(
        self, request: dns.message.Message, origin: str, udp: bool
    ) -> tuple[str, Iterator[Record]] | None:
        """The counter the transfer bumps and its records; None for an IXFR without
        the client's SOA."""
        if request.question[0].rdtype == dns.rdatatype.AXFR:
            soa, rest = self.transfers.axfr(origin)
            return "axfr", itertools.chain((soa,), rest, (soa,))
        serial = _ixfr_serial(request)
        if serial is None:
            return None
        if udp:  # RFC 1995 2: over UDP only the SOA; the client asks again over TCP
            return "ixfr", iter((self.transfers.up_to_date_soa(origin),))
        incremental, records = self.transfers.ixfr(origin, serial)
        return "ixfr" if incremental else "ixfr_full", records

    # -- anything else that came signed

    async def _answer(self, request: dns.message.Message, udp: bool) -> bytes | None:
        request.tsig = None  # the plain query, answered as any other
        request.keyring = None
        reply = self.responder.respond(request.to_wire(), udp)
        if isinstance(reply, Forward):
            upstream = self.responder.upstream
            assert upstream is not None
            return self.responder.forwarded(reply, await upstream.query(reply.wire))
        return reply if isinstance(reply, bytes) else None


def _transfer_question(request: dns.message.Message) -> bool:
    return len(request.question) == 1 and request.question[0].rdtype in _TRANSFER_TYPES


def _ixfr_serial(request: dns.message.Message) -> int | None:
    """RFC 1995 3: the client's SOA in the authority section holds its serial."""
    for rrset in request.authority:
        if rrset.rdtype == dns.rdatatype.SOA and len(rrset):
            return int(rrset[0].serial)
    return None


def _formerr(wire: bytes) -> bytes | None:
    """FORMERR for a query dnspython cannot parse, from its header alone; None for
    garbage too short for one, or a response (answering could start a loop)."""
    if len(wire) < HEADER or wire[2] & QR:
        return None
    flags = bytes((QR | (wire[2] & 0x78), dns.rcode.FORMERR))
    return wire[:2] + flags + bytes(8)
