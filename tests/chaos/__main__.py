"""``python -m tests.chaos`` (``make chaos``): the full fault harness, and its table.

Prints the table (Markdown, for docs/RELIABILITY.md), writes it to ``--report`` if given,
and exits 1 if any invariant was broken.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import signal
import sys
from pathlib import Path

from tests.chaos.harness import FULL, SHORT, ChaosConfig, run_chaos
from tests.chaos.report import ChaosReport


async def _run(config: ChaosConfig, keep_logs: Path | None) -> ChaosReport:
    # SIGTERM and SIGINT cancel the run, so that its teardown still stops every process
    # and removes every temporary directory.
    task = asyncio.current_task()
    assert task is not None
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, task.cancel)
    return await run_chaos(config, keep_logs=keep_logs)


def main(argv: list[str] | None = None) -> int:
    """Run the harness with the full numbers (or ``--short``); 1 if an invariant broke."""
    parser = argparse.ArgumentParser(prog="python -m tests.chaos", description=__doc__)
    parser.add_argument("--report", type=Path, help="also write the table to this file")
    parser.add_argument("--short", action="store_true", help="the short run of make test")
    parser.add_argument("--leads", type=int, help="leads to post (default: the run's)")
    parser.add_argument("--workers", type=int, help="worker processes (default 3)")
    parser.add_argument("--fault-seconds", type=float, help="length of the fault phase")
    parser.add_argument("--keep-logs", type=Path, help="copy every process's log here")
    args = parser.parse_args(argv)
    config = SHORT if args.short else FULL
    changes = {
        name: value
        for name, value in (
            ("leads", args.leads),
            ("workers", args.workers),
            ("fault_seconds", args.fault_seconds),
        )
        if value is not None
    }
    config = dataclasses.replace(config, **changes)
    try:
        report = asyncio.run(_run(config, args.keep_logs))
    except asyncio.CancelledError:
        print("chaos: interrupted; everything it started is stopped", file=sys.stderr)
        return 130
    table = report.table()
    print(table)
    if args.report is not None:
        args.report.parent.mkdir(parents=True, exist_ok=True)
        args.report.write_text(table + "\n")
    return 1 if report.violations() else 0


if __name__ == "__main__":
    sys.exit(main())
