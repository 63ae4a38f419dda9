"""The pause batched maintenance (retention, erasure) takes after each batch."""

from __future__ import annotations

import asyncio
import time

import pytest

from lqs.db.pacing import Pacer, stoppable


async def test_it_waits_the_ratio_times_the_batch_and_tells_after_each() -> None:
    told: list[int] = []
    pacer = Pacer(2.0, lambda: told.append(1))
    await asyncio.sleep(0.05)  # the batch
    began = time.monotonic()

    await pacer.batch_done()

    assert time.monotonic() - began >= 0.09  # 2 x 0.05 s, a lower bound
    assert told == [1]


async def test_a_ratio_of_zero_does_not_wait() -> None:
    pacer = Pacer(0.0)
    await asyncio.sleep(0.05)
    began = time.monotonic()

    await pacer.batch_done()

    assert time.monotonic() - began < 0.05


async def test_stop_ends_the_wait_and_the_run() -> None:
    stop = asyncio.Event()
    pacer = Pacer(1000.0, stop=stop)
    await asyncio.sleep(0.01)  # a 10 s wait ahead
    asyncio.get_running_loop().call_later(0.05, stop.set)

    after = []
    with stoppable():
        await asyncio.wait_for(pacer.batch_done(), 5)
        after.append(1)

    assert after == []  # the block ended at the stop


async def test_a_stop_set_before_the_batch_ends_raises_at_once() -> None:
    stop = asyncio.Event()
    stop.set()
    with stoppable():
        await Pacer(0.0, stop=stop).batch_done()
        pytest.fail("the run went on after a stop")
