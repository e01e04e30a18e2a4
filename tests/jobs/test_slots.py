"""Slots: a bounded semaphore where units returning from a retry wait go first."""

from __future__ import annotations

import asyncio

import pytest

from cronkeeper.jobs._common import Slots, sleep_outside


async def test_a_returning_unit_goes_before_units_not_yet_started() -> None:
    slots = Slots(1)
    order: list[str] = []
    await slots.acquire()  # held by someone

    async def take(name: str, *, first: bool) -> None:
        await slots.acquire(first=first)
        order.append(name)
        slots.release()

    new = asyncio.create_task(take("new", first=False))
    await asyncio.sleep(0)
    back = asyncio.create_task(take("back from a wait", first=True))
    await asyncio.sleep(0)
    slots.release()
    await asyncio.gather(new, back)
    assert order == ["back from a wait", "new"]


async def test_never_more_holders_than_the_size() -> None:
    slots = Slots(3)
    holding = peak = 0

    async def unit() -> None:
        nonlocal holding, peak
        await slots.acquire()
        holding += 1
        peak = max(peak, holding)
        await asyncio.sleep(0.001)
        holding -= 1
        slots.release()

    await asyncio.gather(*(unit() for _ in range(50)))
    assert peak == 3


async def test_a_waiter_cancelled_after_the_handover_passes_the_slot_on() -> None:
    slots = Slots(1)
    await slots.acquire()
    cancelled = asyncio.create_task(slots.acquire())
    await asyncio.sleep(0)
    slots.release()  # hands the slot to the waiter …
    cancelled.cancel()  # … which is cancelled before it runs
    with pytest.raises(asyncio.CancelledError):
        await cancelled
    await asyncio.wait_for(slots.acquire(), 1)  # the slot was passed on, not lost


async def test_sleep_outside_gives_the_slot_back_during_the_wait() -> None:
    slots = Slots(1)
    await slots.acquire()
    seen: list[bool] = []

    async def fake_sleep(_: float) -> None:
        other = asyncio.create_task(slots.acquire())
        await asyncio.sleep(0)
        seen.append(other.done())  # the slot was free while we slept
        slots.release()
        await other

    await sleep_outside(slots, fake_sleep)(30)
    assert seen == [True]
