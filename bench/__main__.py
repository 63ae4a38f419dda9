"""``python -m bench [--quick]``: run the benchmarks and rewrite docs/BENCHMARKS.md."""

from __future__ import annotations

import argparse
import datetime as dt
import sys

from bench import dispatch, intake, memory, processor
from bench.common import ROOT, machine_line, scratch_database, server_url


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="small sizes, under two minutes")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--no-write", action="store_true", help="print only")
    parser.add_argument(
        "--only",
        choices=("intake", "processor", "dispatch", "memory"),
        help="one stage, printed only",
    )
    args = parser.parse_args()
    n_intake = 10_000 if args.quick else 50_000
    n_processor = 5_000 if args.quick else 20_000
    # With injected latency, 50 (quick: 5) round trips of every slot at 100 ms at the ceiling.
    n_dispatch = 1_000 if args.quick else 5_000
    n_dispatch_latency = 160 if args.quick else 1_600
    n_memory = 50_000 if args.quick else 1_000_000

    with server_url() as admin_url:
        if args.only:
            with scratch_database(admin_url) as url:
                if args.only == "intake":
                    found = intake.run(url, n_intake, args.repeats)
                elif args.only == "processor":
                    found = processor.run(url, n_processor, args.repeats, (10, 100, 1000))
                elif args.only == "dispatch":
                    found = dispatch.run(
                        url, n_dispatch, n_dispatch_latency, args.repeats, unbatched=not args.quick
                    )
                else:
                    print(memory.run(url, n_memory))
                    return
            print("\n".join(row.markdown() for row in found))
            return
        with scratch_database(admin_url) as url:
            machine = machine_line(url)
            rows = intake.run(url, n_intake, args.repeats)
        with scratch_database(admin_url) as url:
            rows += processor.run(url, n_processor, args.repeats, batch_sizes=(10, 100, 1000))
        with scratch_database(admin_url) as url:
            rows += dispatch.run(
                url, n_dispatch, n_dispatch_latency, args.repeats, unbatched=not args.quick
            )
        with scratch_database(admin_url) as url:
            rss_tenth, rss_end, rate = memory.run(url, n_memory)

    growth = rss_end / rss_tenth - 1 if rss_tenth else float("nan")
    command = "make bench-quick" if args.quick else "make bench"
    lines = [
        "# Benchmarks",
        "",
        f"Command: `{command}` (`python -m bench{' --quick' if args.quick else ''}`), "
        f"{dt.datetime.now(dt.UTC):%Y-%m-%d %H:%M} UTC. Machine: {machine}.",
        "",
        "Every figure is the median of its repeats (min–max in brackets), run interleaved with",
        "its baseline in the same process and database; the ratio is figure / baseline.",
        "",
        "| stage | LQS | baseline | ratio | goal |",
        "| --- | --- | --- | --- | --- |",
        *(row.markdown() for row in rows),
        "",
        f"Worker memory ({n_memory:,} queued leads, `lqs worker --once --only process`, "
        f"batch 100): "
        f"RSS {rss_tenth:.1f} MiB after {n_memory // 10:,} leads, {rss_end:.1f} MiB at the end: "
        f"**{growth:+.1%}** growth (goal ≤ +10%); {rate:,.0f} leads/s overall.",
        "",
        "## How to read these numbers",
        "",
        "- *plain COPY* is the fastest way PostgreSQL can take the same rows: no validation,",
        "  no deduplication, no HTTP. Intake's ratio says how much of that LQS keeps while",
        "  validating, normalising and deduplicating every lead.",
        "- *SQL loop* claims a batch with `FOR UPDATE SKIP LOCKED`, marks it processed and",
        "  inserts one outbox row per lead: the floor of what any processor must do. LQS also",
        "  scores each lead, renders a template and queues the communication for delivery.",
        "- *no-op loop* claims due communications with the dispatcher's own lease SQL and",
        "  marks them sent without calling anyone: the ratio is what HTTP to the simulator (a",
        "  separate process), the consent and suppression checks and the attempts history",
        "  cost. *concurrency / latency* is not measured but worked out: with every answer",
        "  delayed, it is the most any dispatcher can send with that many requests in flight",
        "  (one email per request). Resend's batch endpoint carries up to 100 emails per",
        "  request, so the batched rows can pass that ceiling; they are context, not goals.",
        "- Absolute figures move with the machine's load; the ratios are what to compare.",
    ]
    text = "\n".join(lines) + "\n"
    print(text)
    if not args.no_write:
        (ROOT / "docs" / "BENCHMARKS.md").write_text(text, encoding="utf-8")


if __name__ == "__main__":
    sys.exit(main())
