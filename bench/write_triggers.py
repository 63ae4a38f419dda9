"""What the statistics triggers (migration 0018) cost LQS's write paths.

Migration 0018 keeps the tenant statistics rollup exact with nine statement-level AFTER
triggers (transition tables) on ``leads``, ``communications`` and ``provider_events``,
which append the (client, hour) pairs a statement changed to ``stats_stale_hours``. Each
write path below runs with those triggers enabled and with them disabled
(``ALTER TABLE … DISABLE TRIGGER``, re-enabled straight after the run, whatever happens),
repeats interleaved, each run from the same prepared rows:

- *intake*: ``POST /v1/leads/batch`` (1,000 leads per request) to ``lqs serve`` in a
  process of its own, as bench/intake.py measures it;
- *delivery webhooks*: one signed Resend ``email.delivered`` event per request, one request
  at a time, to ``POST /webhooks/resend/{client}`` of another ``lqs serve``, each for a
  sent email, then the worker's applier (in this process) applying the stored events;
- *processing*: the lead processor draining queued leads in this process (batch 100, one
  batch in flight), as bench/processor.py measures it;
- *dispatch*: the dispatcher sending pending emails to ``lqs simulate`` (Resend batches,
  concurrency 32, claims of 100), as bench/dispatch.py measures it.

Nothing drains ``stats_stale_hours`` meanwhile (the worker's housekeeping does that): its
growth per run is what each path adds for the refresh to work through.

Two runs' wall times on a shared machine differ by more than the triggers cost, so the
server's own account is taken too: with ``track_functions = 'pl'`` on the scratch
database, ``pg_stat_user_functions`` sums the time spent inside the three trigger
functions (their statements planned and run, the log's inserts included; the capture of
the transition tables, done by the statement that fires them, not). It is wall time too,
so it grows with the machine's load, but it counts the triggers alone: as a share of the
runs with them, it is much steadier than the difference of two runs. Rows are prepared
with the triggers disabled, so that only the timed runs (and each path's warm-up run) call
them; each path's sessions end before the sum is read, so that every backend has reported
its counts.
"""

from __future__ import annotations

import asyncio
import json
import secrets
import statistics
import time
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import httpx
import psycopg
from psycopg import sql
from psycopg.types.json import Jsonb

from bench import dispatch, intake, processor, webhooks
from bench.common import Row, Section, Series, interleave, run_lqs
from lqs.simulator import SimulatorControl
from lqs.simulator.signing import svix_signature
from lqs.worker.dispatcher import DispatcherOptions

TRIGGERS: dict[str, tuple[str, ...]] = {
    table: tuple(f"trigger_{table}_stats_{event}" for event in ("insert", "update", "delete"))
    for table in ("leads", "communications", "provider_events")
}
"""Migration 0018's triggers, by table."""
ALL_TRIGGERS = [name for names in TRIGGERS.values() for name in names]
PROCESS_BATCH = 100
CHUNK = 1000
"""Leads per ``POST /v1/leads/batch`` (the endpoint's maximum)."""
FUNCTIONS = ("lqs_stats_leads_changed", "lqs_stats_communications_changed",
             "lqs_stats_events_changed")  # fmt: skip
"""The triggers' functions."""
WITH = "with triggers"
WITHOUT = "without triggers"


@dataclass(frozen=True)
class Sizes:
    """Rows per run of each path, and the interleaved repeats (the stage's own: the
    difference it measures needs more than the other stages' three)."""

    intake: int
    processing: int
    dispatch: int
    webhooks: int
    repeats: int


@dataclass
class _Path:
    """One write path's runs: seconds and the log's growth, by trigger state."""

    name: str
    rows: int
    unit: str
    what: str
    """What a row is (``leads``, ``emails``, ``events``), for the notes."""
    seconds: dict[bool, list[float]] = field(default_factory=lambda: {True: [], False: []})
    logged: dict[bool, list[int]] = field(default_factory=lambda: {True: [], False: []})
    runs_with: int = 0
    """Runs with the triggers, the warm-up included: what ``function_ms`` covers."""
    function_ms: float = 0.0
    """Milliseconds the server spent in the trigger functions over those runs…"""
    function_calls: int = 0
    """… and how many times they were called."""

    def record(self, enabled: bool, seconds: float, logged: int) -> float:
        self.seconds[enabled].append(seconds)
        self.logged[enabled].append(logged)
        self.runs_with += enabled
        return self.rows / seconds


# ---------------------------------------------------------------- the triggers


def _set_triggers(url: str, *, enabled: bool) -> None:
    """Enable or disable all nine triggers in one transaction, and check that they are.

    Enabling already enabled triggers still rewrites their catalog rows: both states pay
    the same cached-plan invalidation before a run.
    """
    action = sql.SQL("ENABLE" if enabled else "DISABLE")
    with psycopg.connect(url) as conn:
        conn.execute("SET lock_timeout = '30s'")
        for table, names in TRIGGERS.items():
            for name in names:
                conn.execute(
                    sql.SQL("ALTER TABLE public.{} {} TRIGGER {}").format(
                        sql.Identifier(table), action, sql.Identifier(name)
                    )
                )
        found = conn.execute(
            "SELECT t.tgname, t.tgenabled FROM pg_catalog.pg_trigger AS t"
            " JOIN pg_catalog.pg_class AS c ON c.oid = t.tgrelid"
            " JOIN pg_catalog.pg_namespace AS n ON n.oid = c.relnamespace"
            " WHERE n.nspname = 'public' AND t.tgname = ANY(%s)",
            (ALL_TRIGGERS,),
        ).fetchall()
    state = "O" if enabled else "D"
    assert sorted(found) == sorted((name, state) for name in ALL_TRIGGERS), found


@contextmanager
def _triggers(url: str, *, enabled: bool) -> Iterator[None]:
    """The triggers in the given state for the block, and enabled again after it."""
    try:
        _set_triggers(url, enabled=enabled)
        yield
    finally:
        _set_triggers(url, enabled=True)


def _clear_log(conn: psycopg.Connection[Any]) -> None:
    conn.execute("TRUNCATE public.stats_stale_hours")


def _log_rows(url: str) -> int:
    with psycopg.connect(url) as conn:
        row = conn.execute("SELECT count(*) FROM public.stats_stale_hours").fetchone()
    assert row is not None
    return int(row[0])


def _track_functions(url: str) -> None:
    """Have the scratch database's sessions count the time spent in PL/pgSQL functions."""
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(
            sql.SQL("ALTER DATABASE {} SET track_functions = 'pl'").format(
                sql.Identifier(conn.info.dbname)
            )
        )


def _function_stats(url: str) -> tuple[float, int]:
    """Milliseconds spent in the trigger functions so far, and their calls, as the
    backends reported them."""
    time.sleep(1.0)  # a backend that just closed reports its counts as it exits
    with psycopg.connect(url) as conn:
        row = conn.execute(
            "SELECT coalesce(sum(total_time), 0), coalesce(sum(calls), 0)"
            " FROM pg_catalog.pg_stat_user_functions"
            " WHERE schemaname = 'public' AND funcname = ANY(%s)",
            (list(FUNCTIONS),),
        ).fetchone()
    assert row is not None
    return float(row[0]), int(row[1])


def _prepared(url: str, prepare: Callable[[], object]) -> None:
    """Prepare a run with the triggers disabled (only the timed run calls them) and the
    log emptied."""
    with _triggers(url, enabled=False):
        prepare()
        with psycopg.connect(url) as conn:
            _clear_log(conn)


def _timed(url: str, path: _Path, enabled: bool, run: Callable[[], object]) -> float:
    """Run ``run`` (prepared, log empty) with the triggers so; record it; rows per second."""
    with _triggers(url, enabled=enabled):
        started = time.perf_counter()
        run()
        elapsed = time.perf_counter() - started
    logged = _log_rows(url)
    assert enabled or logged == 0, f"{path.name}: {logged} log rows with the triggers disabled"
    return path.record(enabled, elapsed, logged)


# ---------------------------------------------------------------- intake


@contextmanager
def _intake(url: str, key: str, path: _Path) -> Iterator[Callable[[bool], float]]:
    """Runs of the intake path against an ``lqs serve`` of their own."""
    leads = intake.make_leads(path.rows, "t")

    def reset() -> None:
        with psycopg.connect(url) as conn:
            conn.execute(
                "TRUNCATE public.leads, public.lead_import_rows, public.idempotency_keys CASCADE"
            )

    def once(enabled: bool) -> float:
        _prepared(url, reset)

        def post() -> None:
            with httpx.Client(
                base_url=f"http://127.0.0.1:{server.port}",
                headers={"Authorization": f"Bearer {key}"},
                timeout=120,
            ) as http:
                for start in range(0, len(leads), CHUNK):
                    answer = http.post(
                        "/v1/leads/batch", json={"leads": leads[start : start + CHUNK]}
                    )
                    answer.raise_for_status()

        rate = _timed(url, path, enabled, post)
        with psycopg.connect(url) as conn:
            row = conn.execute("SELECT count(*) FROM public.leads").fetchone()
        assert row is not None
        assert row[0] == path.rows, row
        return rate

    server = intake.ApiServer(url)
    try:
        yield once
    finally:
        server.close()


# ---------------------------------------------------------------- delivery webhooks

_WEBHOOK_SECRET = "whsec_" + "YmVuY2gtd2ViaG9vay1zZWNyZXQtMzItYnl0ZXMhIQ=="

# One qualified lead and one email the provider accepted (``sent``, its message id known)
# per event, as the dispatcher leaves them.
_SENT_EMAILS = """
INSERT INTO public.communications (lead_id, client_id, type, recipient, subject, content,
                                   template_id, consent_status, status, provider,
                                   external_id, sent_at)
SELECT l.id, l.client_id, 'email', 'sales@bench.example', 'New qualified lead',
       '<p>' || l.first_name || '</p>', 'lead_qualified', 'granted', 'sent', 'resend',
       'bench-' || l.email, now()
FROM public.leads AS l
"""


def _webhook_client(url: str) -> str:
    delivery = {
        "email": {"primary": "resend"},
        "resend": {"api_key": "re_bench_fake", "from_address": "lqs@bench.example",
                   "webhook_secret": _WEBHOOK_SECRET},
    }  # fmt: skip
    settings = {"notification_email": "sales@bench.example", "delivery": delivery}
    with psycopg.connect(url) as conn:
        row = conn.execute(
            "INSERT INTO public.clients (name, slug, settings)"
            " VALUES ('Bench webhooks', 'bench-webhooks', %s) RETURNING id",
            (Jsonb(settings),),
        ).fetchone()
    assert row is not None
    return str(row[0])


def _signed_events(external_ids: list[str]) -> list[tuple[bytes, dict[str, str]]]:
    """One signed ``email.delivered`` per message, as Resend (Svix) sends them."""
    now = datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
    unix = int(time.time())
    events = []
    for external_id in external_ids:
        body = json.dumps(
            {
                "type": "email.delivered",
                "created_at": now,
                "data": {"created_at": now, "email_id": external_id,
                         "from": "lqs@bench.example", "to": ["sales@bench.example"],
                         "subject": "New qualified lead"},
            },
            separators=(",", ":"),
        ).encode()  # fmt: skip
        event_id = "msg_" + secrets.token_hex(13)
        headers = {
            "content-type": "application/json",
            "svix-id": event_id,
            "svix-timestamp": str(unix),
            "svix-signature": svix_signature(_WEBHOOK_SECRET, event_id, unix, body),
        }
        events.append((body, headers))
    return events


@contextmanager
def _webhooks(url: str, path: _Path) -> Iterator[Callable[[bool], float]]:
    """Runs of the webhook path against an ``lqs serve`` of their own."""
    client = _webhook_client(url)

    def sent_emails() -> list[str]:
        with psycopg.connect(url) as conn:
            conn.execute("TRUNCATE public.leads, public.provider_events CASCADE")
            conn.execute(dispatch.QUEUE_LEADS, {"client": client, "n": path.rows})
            found = conn.execute(_SENT_EMAILS + " RETURNING external_id").fetchall()
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute("ANALYZE public.leads, public.communications, public.provider_events")
        return [row[0] for row in found]

    def once(enabled: bool) -> float:
        external_ids: list[str] = []
        _prepared(url, lambda: external_ids.extend(sent_emails()))
        # Signed before the clock starts (the signature's timestamp is good for 5 minutes).
        events = _signed_events(external_ids)

        def post() -> None:
            with httpx.Client(base_url=f"http://127.0.0.1:{server.port}", timeout=60) as http:
                for body, headers in events:
                    answer = http.post(f"/webhooks/resend/{client}", content=body, headers=headers)
                    answer.raise_for_status()
                    assert answer.json()["received"] == 1, answer.text
            # The receiver only stores the event; the worker's applier makes the change.
            applied, _ = webhooks.apply_pending(url)
            assert applied == len(events), (applied, len(events))

        rate = _timed(url, path, enabled, post)
        with psycopg.connect(url) as conn:
            row = conn.execute(
                "SELECT count(*) FROM public.communications WHERE status = 'delivered'"
            ).fetchone()
        assert row is not None
        assert row[0] == path.rows, row
        return rate

    server = intake.ApiServer(url)
    try:
        yield once
    finally:
        server.close()


# ---------------------------------------------------------------- processing


@contextmanager
def _processing(url: str, path: _Path) -> Iterator[Callable[[bool], float]]:
    """Runs of the processor (its pool opened and closed by each run)."""

    def once(enabled: bool) -> float:
        _prepared(url, lambda: processor._prepare(url, path.rows))
        return _timed(
            url, path, enabled, lambda: asyncio.run(processor._lqs(url, PROCESS_BATCH, path.rows))
        )

    yield once


# ---------------------------------------------------------------- dispatch


@contextmanager
def _dispatching(url: str, path: _Path) -> Iterator[Callable[[bool], float]]:
    """Runs of the dispatcher against an ``lqs simulate`` of their own, no latency."""
    options = DispatcherOptions(
        concurrency=dispatch.CONCURRENCY,
        batch_size=dispatch.BATCH_SIZE,
        timeout=dispatch.TIMEOUT,
        batches=True,
    )

    def once(enabled: bool) -> float:
        control.reset()
        _prepared(url, lambda: dispatch._prepare(url, path.rows, simulator))
        rate = _timed(
            url, path, enabled, lambda: asyncio.run(dispatch._lqs(url, path.rows, options))
        )
        dispatch._check_all_sent(url, path.rows)
        accepted = sum(control.idempotency_counts().values())
        assert accepted == path.rows, accepted
        return rate

    with dispatch._simulator() as simulator, SimulatorControl(simulator) as control:
        control.configure(dispatch._with_latency(0.0))
        yield once


# ---------------------------------------------------------------- the run


def _measure(
    url: str,
    path: _Path,
    repeats: int,
    runs: AbstractContextManager[Callable[[bool], float]],
) -> dict[bool, Series]:
    """One warm-up run with the triggers (imports, caches, the server's connections; its
    time not recorded), then ``repeats`` of each trigger state, interleaved; and the time
    the server spent in the trigger functions over the runs with them, read once the
    path's sessions have ended."""
    print(f"  {path.name}: a warm-up run, then {repeats} interleaved repeats", flush=True)
    ms_before, calls_before = _function_stats(url)
    with runs as once:
        once(True)
        path.seconds = {True: [], False: []}
        path.logged = {True: [], False: []}
        series = interleave(repeats, {WITH: lambda: once(True), WITHOUT: lambda: once(False)})
    ms_after, calls_after = _function_stats(url)
    path.function_ms, path.function_calls = ms_after - ms_before, calls_after - calls_before
    return {True: series[WITH], False: series[WITHOUT]}


def run(url: str, sizes: Sizes) -> Section:
    """Every write path with the statistics triggers and without, ``sizes.repeats`` times,
    interleaved; the triggers are enabled again at the end."""
    repeats = sizes.repeats
    paths = [
        _Path("intake: POST /v1/leads/batch", sizes.intake, "leads/s", "leads"),
        _Path("delivery webhooks: Resend email.delivered", sizes.webhooks, "events/s", "events"),
        _Path(f"processing (batch {PROCESS_BATCH}, 1 process)", sizes.processing, "leads/s",
              "leads"),
        _Path("dispatch (Resend batches)", sizes.dispatch, "comms/s", "emails"),
    ]  # fmt: skip
    intake_path, webhook_path, processing_path, dispatch_path = paths
    print(f"statistics triggers: {', '.join(f'{p.name} {p.rows:,}' for p in paths)}")
    _track_functions(url)
    run_lqs(url, "clients", "create", "Bench", "--slug", "bench")
    key = run_lqs(
        url, "keys", "create", "--client", "bench", "--rate-limit", "100000000"
    ).stdout.strip()
    results: dict[str, dict[bool, Series]] = {}
    try:
        for path, runs in (
            (intake_path, _intake(url, key, intake_path)),
            (webhook_path, _webhooks(url, webhook_path)),
            (processing_path, _processing(url, processing_path)),
            (dispatch_path, _dispatching(url, dispatch_path)),
        ):
            results[path.name] = _measure(url, path, repeats, runs)
    finally:
        _set_triggers(url, enabled=True)
    return _section(paths, results, repeats)


def _section(paths: list[_Path], results: dict[str, dict[bool, Series]], repeats: int) -> Section:
    rows = [
        Row(
            f"statistics triggers (0018): {path.name}",
            results[path.name][True],
            results[path.name][False],
            path.unit,
        )
        for path in paths
    ]
    lines = [
        "Each write path run with migration 0018's nine statistics triggers enabled and "
        f"disabled (`ALTER TABLE … DISABLE TRIGGER`), {repeats} interleaved repeats, each "
        "from the same prepared rows; seconds and rows/s are medians (min–max). *with / "
        "without* is the ratio of the median times (above 1: the triggers' cost). *In the "
        "triggers* is the server's own account (`pg_stat_user_functions`, "
        "`track_functions = 'pl'`) of the time spent in the trigger functions per 1,000 "
        "rows, over the runs with them (warm-up included), and that time as a share of the "
        "median run with them: the triggers alone (capturing the transition tables is not in "
        "it), much steadier from run to run than *with / without*. The log is the rows "
        "`stats_stale_hours` gained per 1,000 leads (emails, events), for the worker's "
        "refresh to drain (none without the triggers).",
        "",
        "| path | rows per run | seconds with triggers | seconds without | with / without "
        "| rows/s with | rows/s without | trigger calls per 1,000 | in the triggers per "
        "1,000 | share of the run | log rows per 1,000 |",
        "| --- | ---: | --- | --- | ---: | --- | --- | ---: | ---: | ---: | ---: |",
    ]
    for path in paths:
        on, off = results[path.name][True], results[path.name][False]
        seconds_on = statistics.median(path.seconds[True])
        seconds_off = statistics.median(path.seconds[False])
        logged = [count * 1000 / path.rows for count in path.logged[True]]
        spread = "" if min(logged) == max(logged) else f" ({min(logged):g}–{max(logged):g})"
        per_thousand = 1000 / (path.rows * path.runs_with)
        share = path.function_ms / path.runs_with / (seconds_on * 1000)
        lines.append(
            f"| {path.name} | {path.rows:,} {path.what} "
            f"| {seconds_on:.2f} s ({_range(path.seconds[True])}) "
            f"| {seconds_off:.2f} s ({_range(path.seconds[False])}) "
            f"| **{seconds_on / seconds_off:.3f}** "
            f"| {on.describe(path.unit)} | {off.describe(path.unit)} "
            f"| {path.function_calls * per_thousand:,.0f} "
            f"| {path.function_ms * per_thousand:,.1f} ms | {share:.1%} "
            f"| {statistics.median(logged):g}{spread} |"
        )
    lines += [
        "",
        "- *intake*: `lqs serve` in a process of its own, 1,000 leads per request, one request "
        "at a time. *delivery webhooks*: another `lqs serve`, one signed `email.delivered` "
        "per request, one at a time, each for a sent email (it stores the event, marks the "
        "email delivered and links the event: three statements, each firing a trigger). "
        "*processing*: `LeadProcessor` in the bench's process, one batch in flight. "
        "*dispatch*: the `Dispatcher` against `lqs simulate` (no injected latency).",
        "- Nothing drains `stats_stale_hours` during a run. A statement logs each distinct "
        "(client, hour) it touched once (every row of a run falls in one or two hours), so "
        "the log grows by statements, not by rows.",
    ]
    return Section("Statistics triggers (migration 0018): cost on the write paths", rows, lines)


def _range(values: list[float]) -> str:
    return f"{min(values):.2f}–{max(values):.2f}"
