"""The short fault harness (``make test``): the whole system survives what production does.

A few hundred leads over HTTP while workers are SIGKILLed, every session is terminated
every 2 s for a while, PostgreSQL restarts twice and a short statement_timeout cancels
statements; then every invariant of ``ChaosReport.violations`` must hold. Under three
minutes on a 2-core machine (about 80 s measured). ``make chaos`` runs the same harness
with the full numbers.
"""

from __future__ import annotations

from tests.chaos.harness import SHORT, run_chaos


async def test_the_whole_system_survives_the_short_fault_schedule() -> None:
    report = await run_chaos(SHORT)
    table = report.table()
    print(table)
    assert not report.violations(), table
