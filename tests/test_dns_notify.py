"""NOTIFY (RFC 1996): the schedule with a fake clock, then a real socket as the secondary."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator

import dns.message
import dns.opcode
import dns.rcode
import dns.rdatatype
import pytest
from conftest import FakeClock, eventually

from jarvis_dns.dns.notifier import Notifier, notify_message, parse_targets
from jarvis_dns.dns.notify import (
    FIRST_RETRY_S,
    MAX_RETRY_S,
    MIN_INTERVAL_S,
    NotifySchedule,
    retry_delay,
)
from jarvis_dns.errors import ConfigError

ZONE = "jarvis.internal."
A, B = ("127.0.0.1", 5301), ("127.0.0.1", 5302)


def test_a_change_is_sent_at_once_to_every_secondary(clock: FakeClock) -> None:
    schedule = NotifySchedule([A, B], clock)
    assert schedule.due() == [] and schedule.next_due() is None
    schedule.changed(ZONE)
    assert sorted(schedule.due()) == [(A, ZONE), (B, ZONE)]


def test_changes_within_a_second_are_coalesced(clock: FakeClock) -> None:
    schedule = NotifySchedule([A], clock)
    schedule.changed(ZONE)
    schedule.sent((A, ZONE), 1)
    schedule.answered((A, ZONE), 1)
    for _ in range(100):  # a burst of changes right after
        clock.advance(0.005)
        schedule.changed(ZONE)
        assert schedule.due() == []
    assert schedule.next_due() == pytest.approx(clock.now - 0.5 + MIN_INTERVAL_S)
    clock.advance(MIN_INTERVAL_S - 0.5)
    assert schedule.due() == [(A, ZONE)]  # one NOTIFY for the hundred changes
    schedule.sent((A, ZONE), 2)
    assert schedule.due() == []


def test_a_notify_is_retried_until_answered(clock: FakeClock) -> None:
    schedule = NotifySchedule([A], clock)
    schedule.changed(ZONE)
    gaps = []
    for attempt in range(1, 10):
        (slot,) = schedule.due()
        sent_at = clock.now
        schedule.sent(slot, attempt)
        assert schedule.due() == []
        due = schedule.next_due()
        assert due is not None
        gaps.append(due - sent_at)
        clock.now = due
    assert gaps == [2, 4, 8, 16, 32, 60, 60, 60, 60]
    assert gaps[0] == FIRST_RETRY_S and gaps[-1] == MAX_RETRY_S
    assert schedule.answered((A, ZONE), 9)
    assert schedule.next_due() is None and not schedule.waiting((A, ZONE))


def test_an_answer_to_a_replaced_notify_acknowledges_nothing(clock: FakeClock) -> None:
    schedule = NotifySchedule([A], clock)
    schedule.changed(ZONE)
    schedule.sent((A, ZONE), 1)
    clock.advance(MIN_INTERVAL_S)
    schedule.changed(ZONE)  # a newer serial, told a second later
    schedule.sent((A, ZONE), 2)
    assert not schedule.answered((A, ZONE), 1)
    assert schedule.waiting((A, ZONE))
    assert schedule.answered((A, ZONE), 2)
    assert not schedule.waiting((A, ZONE))


def test_a_new_change_while_waiting_goes_out_a_second_after_the_last(clock: FakeClock) -> None:
    schedule = NotifySchedule([A], clock)
    schedule.changed(ZONE)
    schedule.sent((A, ZONE), 1)
    clock.advance(0.2)
    schedule.changed(ZONE)
    assert schedule.next_due() == pytest.approx(clock.now - 0.2 + MIN_INTERVAL_S)


def test_secondaries_and_zones_are_scheduled_apart(clock: FakeClock) -> None:
    schedule = NotifySchedule([A, B], clock)
    schedule.changed(ZONE)
    schedule.sent((A, ZONE), 1)
    schedule.changed("example.internal.")
    other = "example.internal."
    assert sorted(schedule.due()) == sorted([(A, other), (B, ZONE), (B, other)])


def test_retry_delays_never_overflow() -> None:
    assert retry_delay(1) == FIRST_RETRY_S and retry_delay(10**6) == MAX_RETRY_S


def test_targets_must_be_addresses_with_ports() -> None:
    assert parse_targets(["127.0.0.1:5300", "[::1]:5301"]) == [("127.0.0.1", 5300), ("::1", 5301)]
    for bad in ["ns.example.net:53", "127.0.0.1:0", "1.2.3.4:99999"]:
        with pytest.raises(ConfigError):
            parse_targets([bad])


# -- over a real socket


class Secondary(asyncio.DatagramProtocol):
    """A secondary's UDP port: records NOTIFYs, answers them only when told to."""

    def __init__(self) -> None:
        self.received: list[dns.message.Message] = []
        self.answering = False
        self.transport: asyncio.DatagramTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        msg = dns.message.from_wire(data)
        self.received.append(msg)
        if self.answering and self.transport is not None:
            self.transport.sendto(dns.message.make_response(msg).to_wire(), addr)


@pytest.fixture
async def secondary() -> AsyncIterator[tuple[Secondary, int]]:
    loop = asyncio.get_running_loop()
    transport, protocol = await loop.create_datagram_endpoint(
        Secondary, local_addr=("127.0.0.1", 0), family=socket.AF_INET
    )
    yield protocol, transport.get_extra_info("sockname")[1]
    transport.close()


SOA = (
    (b"jarvis", b"internal"),
    6,
    5,
    b"\x02ns\x06jarvis\x08internal\x00\x0ahostmaster\x06jarvis\x08internal\x00"
    + (42).to_bytes(4, "big")
    + bytes(16),
)


def test_a_notify_message_carries_the_soa() -> None:
    msg = dns.message.from_wire(notify_message(7, SOA))
    assert msg.id == 7 and msg.opcode() == dns.opcode.NOTIFY and msg.flags & dns.flags.AA
    assert msg.question[0].rdtype == dns.rdatatype.SOA
    assert msg.answer[0][0].serial == 42


async def test_the_notifier_sends_and_stops_when_answered(
    secondary: tuple[Secondary, int], clock: FakeClock
) -> None:
    protocol, port = secondary
    notifier = Notifier([("127.0.0.1", port)], lambda zone: SOA, ZONE, "127.0.0.1", clock)
    await notifier.start()  # tells every secondary at start: it may have missed changes
    try:
        await eventually(lambda: len(protocol.received) == 1)
        slot = (("127.0.0.1", port), ZONE)
        assert notifier.schedule.waiting(slot)
        # No answer: sent again when the clock says so (the loop looks again after the
        # retry delay, here two real seconds, and finds the fake clock moved on).
        clock.advance(FIRST_RETRY_S)
        await eventually(lambda: len(protocol.received) == 2)
        assert protocol.received[1].answer[0][0].serial == 42
        assert protocol.received[1].id != protocol.received[0].id
        protocol.answering = True
        clock.advance(MIN_INTERVAL_S)
        notifier.changed([])  # a change: told at once (a second after the last)
        await eventually(lambda: not notifier.schedule.waiting(slot))
        assert protocol.received[-1].opcode() == dns.opcode.NOTIFY
    finally:
        await notifier.stop()
