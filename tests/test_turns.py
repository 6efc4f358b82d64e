"""turns.py: long work handed over in turns of the event loop, so what waits (a DNS
query, another connection) is served between them. A marker scheduled on the loop
shows where one turn ends and the loop's next begins."""

from __future__ import annotations

import asyncio
from typing import Any

from jarvis_dns.turns import Rota, in_turns


async def test_in_turns_yields_slices_with_a_turn_between() -> None:
    order: list[Any] = []
    asyncio.get_running_loop().call_soon(order.append, "loop")
    async for chunk in in_turns(list(range(5)), 2):
        order.append(list(chunk))
    assert order == [[0, 1], "loop", [2, 3], [4]]


async def test_a_rota_runs_a_few_per_turn_in_arrival_order() -> None:
    loop = asyncio.get_running_loop()
    order: list[Any] = []
    rota = Rota(per_turn=4)
    for n in range(10):
        rota.add(lambda n=n: order.append(n))
    assert order == []  # nothing runs inside add: the caller's turn goes on
    for turn in range(3):
        loop.call_soon(order.append, f"after turn {turn}")
        await asyncio.sleep(0)
    assert order == [0, 1, 2, 3, "after turn 0", 4, 5, 6, 7, "after turn 1", 8, 9, "after turn 2"]


async def test_work_added_during_a_turn_waits_for_a_later_turn() -> None:
    order: list[Any] = []
    rota = Rota(per_turn=4)
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
    order: list[int] = []
    rota = Rota(per_turn=2)

    def fail() -> None:
        raise ValueError("bad")

    rota.add(fail)
    for n in range(3):
        rota.add(lambda n=n: order.append(n))
    for _ in range(3):
        await asyncio.sleep(0)
    assert order == [0, 1, 2]
    assert [type(e) for e in raised] == [ValueError]
    loop.set_exception_handler(None)
