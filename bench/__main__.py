"""``python -m bench [--quick] [--only STAGE]``: run the benchmarks, rewrite docs/BENCHMARKS.md.

Each stage runs in a scratch database of its own on one server (``LQS_BENCH_DATABASE_URL``
or an embedded PostgreSQL under ``.lqs/bench``), and every figure is set against a baseline
measured in the same run, repeats interleaved. ``--quick`` uses small sizes (under two
minutes in all); the figures then say little beyond "it runs".
"""

from __future__ import annotations

import argparse
import datetime as dt
import sys
import time
from dataclasses import dataclass, replace

from bench import (
    dispatch,
    e2e,
    erasure,
    http_intake,
    intake,
    latency,
    memory,
    processor,
    retention,
    scale,
    tenant_api,
    webhooks,
    write_triggers,
)
from bench.common import ROOT, Row, Section, machine_line, scratch_database, server_url
from bench.page import hand_written

STAGES = (
    "intake", "processor", "dispatch", "e2e", "latency", "scale", "memory", "tenant", "triggers",
    "erasure", "retention", "webhooks",
)  # fmt: skip


@dataclass(frozen=True)
class Sizes:
    intake: int
    http_requests: int
    processor: int
    processor_peers: int
    """Leads per run of the peers doing the same work one job per lead (tens of times
    slower than LQS: fewer leads keep the stage's time in bounds)."""
    batch_sizes: tuple[int, ...]
    processes: tuple[int, ...]
    dispatch: int
    dispatch_latency: int
    e2e: int
    latency_seconds: float
    scale_rows: int
    memory: int
    tenant_leads: tuple[int, int]
    """The tenant API's large and small client."""
    tenant_requests: int
    triggers: write_triggers.Sizes
    """Rows per run of each write path with and without the statistics triggers."""
    retention: int
    """Archived communications one retention run goes through."""
    retention_live: int
    """Leads per round of processing and sending beside it."""
    erasure_people: int = 10_000
    erasure_total: int = 1_000_000
    """People erased in one call, and the communications of the database they are in."""
    erasure_window: float = 10.0
    """Seconds of dispatch measured before the erasure."""
    webhooks: int = 5_000
    """Resend delivery events per run, one per request."""
    sendgrid_events: int = 20_000
    """SendGrid delivery events per run, 1,000 per request (at least 2,000: a p99 needs
    two requests)."""


FULL = Sizes(
    intake=50_000,
    http_requests=20_000,
    processor=20_000,
    processor_peers=5_000,
    batch_sizes=(10, 100, 1000),
    processes=(1, 2),
    dispatch=5_000,
    # With injected latency, 50 round trips of every slot at 100 ms at the ceiling.
    dispatch_latency=1_600,
    e2e=10_000,
    latency_seconds=60.0,
    scale_rows=10_000_000,
    memory=1_000_000,
    tenant_leads=(1_000_000, 10_000),
    tenant_requests=200,
    triggers=write_triggers.Sizes(
        intake=20_000, processing=4_000, dispatch=6_000, webhooks=600, repeats=7
    ),
    # 10,000,000 (the size) is a run of its own, about 75 minutes here:
    # `python -m bench --only retention --retention-size 10000000`.
    retention=2_000_000,
    retention_live=2_000,
)
QUICK = Sizes(
    intake=2_000,
    http_requests=300,
    processor=600,
    processor_peers=200,
    batch_sizes=(10, 100),
    processes=(1,),
    dispatch=500,
    dispatch_latency=64,
    e2e=300,
    latency_seconds=4.0,
    scale_rows=50_000,
    memory=10_000,
    tenant_leads=(20_000, 1_000),
    tenant_requests=20,
    # One run of each trigger state per path (after a warm-up): a check that it runs.
    triggers=write_triggers.Sizes(
        intake=1_000, processing=300, dispatch=300, webhooks=100, repeats=1
    ),
    retention=40_000,
    retention_live=200,
    erasure_people=300,
    erasure_total=50_000,
    erasure_window=2.0,
    webhooks=200,
    sendgrid_events=2_000,
)


def _stage(name: str, sizes: Sizes, repeats: int, url: str, *, write: bool) -> Section:
    if name == "intake":
        rows = intake.run(url, sizes.intake, repeats)
        http = http_intake.run(url, requests=sizes.http_requests, concurrency=32, repeats=repeats)
        return Section("Intake", rows + http.rows, http.markdown)
    if name == "processor":
        return processor.run(
            url,
            sizes.processor,
            repeats,
            sizes.batch_sizes,
            processes=sizes.processes,
            peer_leads=sizes.processor_peers,
            plot=processor.PLOT if write else None,
        )
    if name == "dispatch":
        rows = dispatch.run(
            url, sizes.dispatch, sizes.dispatch_latency, repeats,
            unbatched=sizes is FULL,
        )  # fmt: skip
        return Section("Dispatcher", rows)
    if name == "e2e":
        return e2e.run(url, n=sizes.e2e, repeats=repeats)
    if name == "latency":
        return latency.run(url, rate=200.0, duration=sizes.latency_seconds)
    if name == "scale":
        return scale.run(url, big=sizes.scale_rows, repeats=repeats)
    if name == "tenant":
        large, small = sizes.tenant_leads
        return tenant_api.run(url, large=large, small=small, requests=sizes.tenant_requests)
    if name == "triggers":
        return write_triggers.run(url, sizes.triggers)
    if name == "erasure":
        return erasure.run(
            url,
            n_people=sizes.erasure_people,
            total=sizes.erasure_total,
            window=sizes.erasure_window,
        )
    if name == "webhooks":
        return webhooks.run(
            url, events=sizes.webhooks, sendgrid_events=sizes.sendgrid_events, repeats=repeats
        )
    if name == "retention":
        return retention.run(url, sizes.retention, sizes.retention_live, 2 * repeats)
    rss_tenth, rss_end, rate = memory.run(url, sizes.memory)
    growth = rss_end / rss_tenth - 1 if rss_tenth else float("nan")
    verdict = "✅" if growth <= 0.10 else "❌"
    return Section(
        "Worker memory",
        markdown=[
            f"{sizes.memory:,} queued leads through `lqs worker --once --only process` "
            f"(batch 100): RSS {rss_tenth:.1f} MiB after {sizes.memory // 10:,} leads, "
            f"{rss_end:.1f} MiB at the end: **{growth:+.1%}** growth {verdict} "
            f"(goal ≤ +10%); {rate:,.0f} leads/s overall."
        ],
    )


def _report(command: str, machine: str, sections: list[tuple[Section, float]]) -> str:
    rows: list[Row] = [row for section, _ in sections for row in section.rows]
    lines = [
        "# Benchmarks",
        "",
        f"Command: `{command}`, {dt.datetime.now(dt.UTC):%Y-%m-%d %H:%M} UTC. Machine: {machine}.",
        "",
        "Every figure is the median of its repeats (min–max in brackets), run interleaved with",
        "its baseline in the same run and database; the ratio is figure / baseline.",
        "",
        "| stage | LQS | baseline | ratio | goal |",
        "| --- | --- | --- | --- | --- |",
        *(row.markdown() for row in rows),
        "",
    ]
    for section, seconds in sections:
        lines += [f"## {section.title}", "", f"_(this stage took {seconds:.0f} s)_", ""]
        lines += [*section.markdown, ""] if section.markdown else []
    lines += HOW_TO_READ
    return "\n".join(lines) + "\n"


HOW_TO_READ = [
    "## How to read these numbers",
    "",
    "- *plain COPY* is the fastest way PostgreSQL can take the same rows: no validation,",
    "  no deduplication, no HTTP. Intake's ratio says how much of that LQS keeps while",
    "  validating, normalising and deduplicating every lead. *bare Starlette+psycopg* is",
    "  the same HTTP stack inserting the row with no validation, dedupe or auth;",
    "  *bare Starlette, same validation and insert-or-merge* also validates with LQS's",
    "  own `parse_lead` and stores with `insert_or_merge_leads`'s statement (no FastAPI,",
    "  API key lookup, Idempotency-Key or NOTIFY).",
    "- *SQL loop* claims a batch with `FOR UPDATE SKIP LOCKED`, marks it processed and",
    "  inserts one outbox row per lead: the floor of what any processor must do. LQS also",
    "  scores each lead, renders a template and queues the communication for delivery.",
    "  *PgQueuer* (the peer) drains the same number of jobs that do nothing.",
    "- *no-op loop* claims due communications with the dispatcher's own lease SQL and",
    "  marks them sent without calling anyone: the ratio is what HTTP to the simulator (a",
    "  separate process), the consent and suppression checks and the attempts history",
    "  cost. *concurrency / latency* is not measured but worked out: with every answer",
    "  delayed, it is the most any dispatcher can send with that many requests in flight",
    "  (one email per request). Resend's batch endpoint carries up to 100 emails per",
    "  request, so the batched rows can pass that ceiling; they are context, not goals.",
    "  The *same-writes floor* also writes what the dispatcher must for a Resend batch",
    "  (the batch request, an attempt, the provider's id and answer per message).",
    "- *bare Starlette+psycopg, Resend* checks the same Svix signature and, in one",
    "  transaction, stores the event and marks the email delivered; LQS's receiver only",
    "  stores it, and the worker's applier applies it later (its own row, events applied",
    "  per second, against the SendGrid goal). The SendGrid webhook row has an absolute",
    "  goal (events/s), no baseline.",
    "- The SQL loop, PgQueuer's no-op jobs and the no-op dispatch loop do far less work",
    "  than LQS: their rows carry no goal and stay as context. The goals are set against",
    "  baselines doing the same work: the *same-writes* floors (the rows LQS writes, in",
    "  plain SQL) and the *same-work* peers (one PgQueuer job or Celery task per lead",
    "  calling LQS's own parsing, scoring and rendering and inserting the same rows).",
    "- The end-to-end baseline is the same pipeline in plain SQL (insert, claim, outbox,",
    "  ack) with no HTTP, no scoring and no provider.",
    "- The machine has 2 cores shared by PostgreSQL, the simulator, the API, the worker and",
    "  the load generator: a stage that runs several processes measures them competing.",
    "- Absolute figures move with the machine's load; the ratios are what to compare.",
]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="small sizes, under two minutes")
    parser.add_argument(
        "--repeats", type=int, default=None, help="interleaved repeats (3; with --quick, 2)"
    )
    parser.add_argument("--no-write", action="store_true", help="print only")
    parser.add_argument("--only", choices=STAGES, action="append", help="these stages only")
    parser.add_argument(
        "--retention-size",
        type=int,
        default=None,
        help="communications the retention stage builds (default 2,000,000; quick 40,000)",
    )
    args = parser.parse_args()
    sizes = QUICK if args.quick else FULL
    if args.retention_size is not None:
        if args.retention_size < 1_000:
            parser.error("--retention-size: at least 1,000 communications")
        sizes = replace(sizes, retention=args.retention_size)
    repeats = args.repeats or (2 if args.quick else 3)
    wanted = args.only or list(STAGES)
    started = time.monotonic()
    write = not args.no_write and not args.only
    sections: list[tuple[Section, float]] = []
    with server_url() as admin_url:
        machine = ""
        for name in wanted:
            print(f"== {name}", flush=True)
            began = time.monotonic()
            with scratch_database(admin_url) as url:
                machine = machine or machine_line(url)
                section = _stage(name, sizes, repeats, url, write=write)
            sections.append((section, time.monotonic() - began))
    command = "make bench-quick" if args.quick else "make bench"
    if args.only:
        command = f"python -m bench {' '.join(sys.argv[1:])}"
    text = _report(command, machine, sections)
    print(text)
    print(f"(all stages: {time.monotonic() - started:.0f} s)")
    if write:
        page = ROOT / "docs" / "BENCHMARKS.md"
        kept = hand_written(page.read_text(encoding="utf-8")) if page.exists() else ""
        page.write_text(text + ("\n" + kept if kept else ""), encoding="utf-8")


if __name__ == "__main__":
    sys.exit(main())
