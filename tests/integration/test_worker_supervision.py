"""The worker's supervisor, backoff and heartbeat, in process.

The end-to-end behaviour (terminated backends, refused connections, SIGTERM) is in
tests/e2e/test_worker_healing.py; here each piece is checked on its own.
"""

from __future__ import annotations

import asyncio
import random
from typing import Any

import psycopg
import pytest
from psycopg.rows import dict_row

from lqs.worker import run as run_module
from lqs.worker.run import Backoff, Progress, run_worker, supervise
from tests.configs import worker_config


def test_backoff_doubles_with_jitter_in_the_upper_half_and_is_capped() -> None:
    backoff = Backoff(base=0.5, cap=30.0, rng=random.Random(1))
    delays = [backoff.next_delay() for _ in range(12)]
    ceilings = [min(30.0, 0.5 * 2**n) for n in range(12)]
    for delay, ceiling in zip(delays, ceilings, strict=True):
        assert ceiling / 2 <= delay <= ceiling
    assert max(delays) <= 30.0
    backoff.failures = 10_000  # no overflow after a very long outage
    assert 15.0 <= backoff.next_delay() <= 30.0
    backoff.reset()
    assert backoff.next_delay() <= 0.5


async def test_supervise_runs_the_loop_again_after_transient_and_other_errors() -> None:
    stop = asyncio.Event()
    runs: list[str] = []

    async def body() -> None:
        runs.append("run")
        if len(runs) == 1:
            raise psycopg.OperationalError("server closed the connection unexpectedly")
        if len(runs) == 2:
            raise RuntimeError("a defect")
        stop.set()

    failures = await supervise("test", body, stop, backoff=Backoff(base=0.01, cap=0.02))
    assert (failures, len(runs)) == (2, 3)


async def test_supervise_returns_at_once_when_stopped_during_a_backoff() -> None:
    stop = asyncio.Event()

    async def body() -> None:
        asyncio.get_running_loop().call_later(0.05, stop.set)
        raise psycopg.OperationalError("gone")

    failures = await asyncio.wait_for(
        supervise("test", body, stop, backoff=Backoff(base=60, cap=60)), timeout=5
    )
    assert failures == 1


def test_progress_names_the_loops_that_stopped_turning() -> None:
    progress = Progress()
    progress.touch("processor")
    progress.touch("dispatcher")
    assert progress.stalled(60) == []
    assert progress.stalled(-1) == ["dispatcher", "processor"]


async def test_a_stuck_loop_stops_the_heartbeat(
    migrated_db: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    async def stuck(self: Any, stop: Any = None, *, progress: Any = None) -> int:
        await asyncio.Event().wait()  # e.g. a C extension that never returns
        return 0

    monkeypatch.setattr(run_module.LeadProcessor, "drain", stuck)
    with psycopg.connect(migrated_db, autocommit=True) as conn:
        conn.execute("DELETE FROM public.worker_heartbeats")
    worker = asyncio.create_task(
        run_worker(
            migrated_db,
            worker_config(),
            dispatch=False,
            heartbeat_interval=0.05,
            stall_after=0.5,
        )
    )
    try:
        await asyncio.sleep(1.5)  # beats at first, then the processor loop counts as stuck
        first = _beat(migrated_db)
        await asyncio.sleep(1.0)
        assert _beat(migrated_db) == first  # no beat since the loop stalled
    finally:
        worker.cancel()
        with pytest.raises(asyncio.CancelledError):
            await worker


def _beat(url: str) -> Any:
    with psycopg.connect(url, row_factory=dict_row) as conn:
        [row] = conn.execute("SELECT beat_at FROM public.worker_heartbeats").fetchall()
    return row["beat_at"]
