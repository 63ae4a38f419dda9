"""Erasure racing a send (issue 16): the provider never receives a message whose row was
erased first.

A worker sends through the simulator (with latency, so requests are in flight for a while)
while erasures of the same leads run concurrently, one lead each, in a random order. An
erasure skips a lead whose message a dispatcher holds the live lease of and comes back for
it, so each message is either sent first and then erased (``sent``), or cancelled by the
erasure first (``rejected``) and never sent. A message the simulator received whose row
says ``rejected`` would be one sent after its erasure.
"""

from __future__ import annotations

import asyncio
import random
from uuid import UUID

from lqs.db.erasure import erase
from lqs.db.pool import open_pool
from lqs.simulator import Faults, SimulatorConfig, SimulatorControl
from lqs.simulator.config import Latency, ResendConfig
from lqs.worker.dispatcher import DispatcherOptions
from lqs.worker.run import run_worker
from tests.configs import worker_config
from tests.e2e.test_sending import FAST, _accepted_per_communication, _client, _delivery, _leads
from tests.e2e.test_sending import _comms as _all_comms
from tests.e2e.test_sending import _rows as _query

LEADS = 120
ERASERS = 4


async def _race(url: str, client_id: str, leads: list[UUID], seed: int) -> None:
    rng = random.Random(seed)
    order = leads[:]
    rng.shuffle(order)
    options = DispatcherOptions(policy=FAST, batches=False, batch_size=10, concurrency=8)
    stop = asyncio.Event()
    pool = await open_pool(url, min_size=1, max_size=ERASERS + 1)
    worker = asyncio.create_task(
        run_worker(url, worker_config(dispatcher=options), stop=stop, process=False)
    )

    async def eraser(mine: list[UUID]) -> None:
        for lead_id in mine:
            await asyncio.sleep(rng.uniform(0, 0.03))
            _, tally = await erase(
                pool, UUID(client_id), "operator:race", "race test", lead_ids=[lead_id],
                wait_seconds=60,
            )  # fmt: skip
            assert tally.in_flight == []
            assert tally.counts["leads"] == 1

    try:
        await asyncio.gather(*(eraser(order[i::ERASERS]) for i in range(ERASERS)))
    finally:
        stop.set()
        await worker
        await pool.close()


def test_no_message_reaches_the_provider_after_its_row_was_erased(
    pipeline_db: str, simulator: str, control: SimulatorControl
) -> None:
    control.configure(SimulatorConfig(seed=5, resend=ResendConfig(faults=Faults(
        latency=Latency(distribution="uniform", min_seconds=0.005, max_seconds=0.08)))))  # fmt: skip
    client_id = _client(pipeline_db, _delivery(simulator))
    _leads(pipeline_db, client_id, LEADS)
    asyncio.run(run_worker(pipeline_db, worker_config(), once=True, dispatch=False))
    leads = [r["id"] for r in _query(
        pipeline_db, "SELECT id FROM public.leads WHERE client_id = %s", client_id)]  # fmt: skip
    assert len(_all_comms(pipeline_db, client_id)) >= LEADS

    asyncio.run(_race(pipeline_db, client_id, leads, seed=5))

    comms = {str(c["id"]): c for c in _all_comms(pipeline_db, client_id)}
    received = _accepted_per_communication(control, "resend")
    for comm_id in received:
        assert comms[comm_id]["status"] in ("sent", "delivered"), comms[comm_id]
    for comm in comms.values():
        assert comm["recipient"] == "erased"
        assert comm["content"] is None
        assert comm["compliance_notes"].endswith(": race test")
        assert (str(comm["id"]) in received) == (comm["status"] in ("sent", "delivered"))
    # Both sides of the race happened: some sent before their erasure, some cancelled.
    statuses = {c["status"] for c in comms.values()}
    assert {"sent", "rejected"} <= statuses, statuses
    assert _query(pipeline_db, "SELECT 1 FROM public.delivery_queue WHERE client_id = %s",
                  client_id) == []  # fmt: skip
