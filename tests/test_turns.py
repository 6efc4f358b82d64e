"""turns.py: long work handed over in turns of the event loop, so what waits (a DNS
query, another connection) is served between them. A marker scheduled on the loop
shows where one turn ends and the loop's next begins."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

from jarvis_dns.turns import Rota, in_turns


async def test_in_turns_yields_slices_with_a_turn_between() -> None:
    order: list[Any] = []
    asyncio.get_running_loop().call_soon(order.append, "loop")
    async for chunk in in_turns(list(range(5)), 2):
        order.append(list(chunk))
    assert order == [[0, 1], "loop", [2, 3], [4]]


class Clock:
    """Seconds that move only when told: each piece of work below takes its time."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now

    def work(self, order: list[Any], name: object, seconds: float) -> Callable[[], None]:
        def run() -> None:
            order.append(name)
            self.now += seconds

        return run


async def test_a_rota_runs_work_for_its_budget_a_turn_in_arrival_order() -> None:
    loop = asyncio.get_running_loop()
    clock, order = Clock(), []
    rota = Rota(budget_s=0.001, clock=clock)
    for n in range(10):
        rota.add(clock.work(order, n, 0.0003))  # a turn ends after the fourth
    assert order == []  # nothing runs inside add: the caller's turn goes on
    for turn in range(3):
        loop.call_soon(order.append, f"after turn {turn}")
        await asyncio.sleep(0)
    assert order == [0, 1, 2, 3, "after turn 0", 4, 5, 6, 7, "after turn 1", 8, 9, "after turn 2"]


async def test_one_long_piece_of_work_still_runs_and_ends_the_turn() -> None:
    loop = asyncio.get_running_loop()
    clock, order = Clock(), []
    rota = Rota(budget_s=0.001, clock=clock)
    rota.add(clock.work(order, "long", 0.005))
    rota.add(clock.work(order, "next", 0.0001))
    loop.call_soon(order.append, "after turn 0")
    await asyncio.sleep(0)
    await asyncio.sleep(0)
    assert order == ["long", "after turn 0", "next"]


async def test_work_added_during_a_turn_waits_for_a_later_turn() -> None:
    order: list[Any] = []
    rota = Rota(budget_s=1.0)
    rota.add(lambda: rota.add(lambda: order.append("added")))
    rota.add(lambda: order.append("first"))
    await asyncio.sleep(0)
    assert order == ["first"]
    await asyncio.sleep(0)
    assert order == ["first", "added"]


async def test_one_that_raises_stops_none_of_the_rest() -> None:
    loop = asyncio.get_running_loop()
    raised: list[Any] = []
    loop.set_exception_handler(lambda _, context: raised.append(context["exception"]))
    clock, order = Clock(), []
    rota = Rota(budget_s=0.001, clock=clock)

    def fail() -> None:
        raise ValueError("bad")

    rota.add(fail)
    for n in range(3):
        rota.add(clock.work(order, n, 0.0006))
    for _ in range(3):
        await asyncio.sleep(0)
    assert order == [0, 1, 2]
    assert [type(e) for e in raised] == [ValueError]
    loop.set_exception_handler(None)
