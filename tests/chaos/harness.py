"""The fault harness: the whole system under what production does to it, then its audit.

:func:`run_chaos` starts a PostgreSQL of its own (``postgres.py``), migrates it with ``lqs
db migrate``, sets up the demo's two clients with the demo's own functions (Resend + Twilio,
SendGrid + Twilio, delivery settings pointing at the simulator, signed delivery webhooks
registered with it), and starts ``lqs simulate`` (latency and a few % 5xx per provider,
callbacks on), ``lqs serve`` and ``ChaosConfig.workers`` ``lqs worker`` processes.

Then, at once: leads are posted over HTTP (``intake.py``), an orchestrator watches the
processes (``fleet.py``), and a schedule injects faults over ``fault_seconds``:

- SIGKILL of a random worker every ``kill_every`` seconds (the orchestrator restarts it);
- ``pg_terminate_backend`` of every session but the harness's every ``terminate_every``
  seconds, from 10% to 35% of the fault phase;
- ``pg_ctl restart -m fast`` at 45% and 80%;
- ``ALTER DATABASE lqs SET statement_timeout`` (``statement_timeout_ms``) from 55% to 75%,
  with one termination round at its start so that every session picks it up (the restart
  at 80% drops it from the sessions opened meanwhile).

Afterwards it waits (at most ``settle_seconds``) for quiescence: no lead queued, no
communication pending or sent, the delivery queue empty and no delivery webhook still due;
and it keeps watching the workers until ``hang_after`` seconds have passed since the last
fault, so that one that hung at the end is caught. Then it reads the database and the
simulator (``checks.py``), stops every process with SIGTERM (SIGKILL after 15 s, counted),
stops PostgreSQL and removes its temporary directories, and returns a
:class:`~tests.chaos.report.ChaosReport`.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import random
import shutil
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import psycopg
from psycopg import AsyncConnection

from lqs.cli.demo import DemoClient, local_run_settings, setup_clients, wait_ready
from tests.chaos.checks import Communication, audit_callbacks, audit_messages
from tests.chaos.fleet import Fleet, Marker
from tests.chaos.intake import (
    UNDELIVERED_SMS_PREFIX,
    IntakeTally,
    make_leads,
    plan_requests,
    post_all,
)
from tests.chaos.postgres import DATABASE, OwnPostgres, free_port
from tests.chaos.report import ChaosReport

Echo = Callable[[str], None]


@dataclass(frozen=True)
class ChaosConfig:
    """The size of one run; :data:`SHORT` runs in ``make test``, :data:`FULL` in ``make chaos``.

    ``statement_timeout_ms`` is 10: the service's statements take 1-40 ms here (the slowest
    are the processor's COPYs), and 50 ms cancelled none in the short run. ``hang_after``
    is longer than a pool's default wait for a connection (30 s), so a worker that waits
    out one outage is not called hung.
    """

    name: str = "short"
    leads: int = 300
    workers: int = 3
    fault_seconds: float = 40.0
    kill_every: float = 10.0
    terminate_every: float = 2.0
    statement_timeout_ms: int = 10
    settle_seconds: float = 60.0
    hang_after: float = 30.0
    posting_clients: int = 3
    seed: int = 7


SHORT = ChaosConfig()
FULL = ChaosConfig(
    name="full", leads=3_000, fault_seconds=150.0, kill_every=12.0, settle_seconds=240.0
)


def simulator_settings(config: dict[str, Any], seed: int) -> dict[str, Any]:
    """The demo's simulator configuration with the harness's faults and callback retries.

    Every provider answers after 5-50 ms and refuses ~3% of requests with a 5xx; Resend
    also drops 1% of connections after accepting (its idempotency key must make the retry
    harmless). Delivery webhooks are retried 8 times over ~30 s, as providers retry theirs
    (for hours, in fact), so an API that is briefly without its database loses none.
    """
    latency = {"distribution": "uniform", "min_seconds": 0.005, "max_seconds": 0.05}
    config["seed"] = seed
    config["resend"]["faults"] = {
        "error_rates": {"500": 0.03},
        "latency": latency,
        "drop_after_accept_rate": 0.01,
    }
    config["sendgrid"]["faults"] = {"error_rates": {"500": 0.02, "503": 0.01}, "latency": latency}
    config["twilio"]["faults"] = {"error_rates": {"500": 0.03}, "latency": latency}
    callbacks = config["callbacks"]
    callbacks["max_attempts"] = 8
    callbacks["retry_backoff_seconds"] = 0.25
    callbacks["sms"]["rules"].append(
        {"recipient": f"{UNDELIVERED_SMS_PREFIX}*", "outcome": "undelivered"}
    )
    return config


def process_environment(api_base: str) -> dict[str, str]:
    """The environment of every ``lqs`` child (the demo's settings, unbuffered output)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("LQS_")}
    env.update(
        {
            "PYTHONUNBUFFERED": "1",  # log lines are progress: they must reach the file at once
            **local_run_settings(api_base),
            "LQS_CONNECT_TIMEOUT": "5",
        }
    )
    return env


class HarnessDb:
    """One harness session (immune to the injected statement_timeout) that reconnects."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.conn: AsyncConnection | None = None

    async def rows(self, query: str, params: Any = None) -> list[tuple[Any, ...]]:
        """Run ``query``; reconnect once if the session was lost (a restart, say).

        Raises:
            psycopg.Error: the server is unreachable or the query failed twice.
        """
        for attempt in (1, 2):
            try:
                if self.conn is None or self.conn.closed:
                    self.conn = await AsyncConnection.connect(
                        self.url, autocommit=True, connect_timeout=5
                    )
                cur = await self.conn.execute(query.encode(), params)
                return await cur.fetchall() if cur.description else []
            except psycopg.OperationalError:
                if self.conn is not None:
                    await self.conn.close()
                self.conn = None
                if attempt == 2:
                    raise
                await asyncio.sleep(0.2)
        raise AssertionError("unreachable")

    async def close(self) -> None:
        """Close the session."""
        if self.conn is not None:
            await self.conn.close()


TERMINATE_ALL = """
SELECT count(*) FILTER (WHERE pg_terminate_backend(pid))
FROM pg_stat_activity
WHERE backend_type = 'client backend' AND pid <> pg_backend_pid()
  AND application_name NOT LIKE 'chaos-harness%'
"""

ACTIVITY = """
SELECT application_name, count(*), max(query_start), max(backend_start)
FROM pg_stat_activity WHERE application_name LIKE 'chaos-worker-%' GROUP BY 1
"""

UNSETTLED = """
SELECT (SELECT count(*) FROM public.leads WHERE status = 'queued'),
       (SELECT count(*) FROM public.communications WHERE status IN ('pending', 'sent')),
       (SELECT count(*) FROM public.delivery_queue)
"""


class ChaosRun:
    """One run's moving parts; :func:`run_chaos` drives it and always tears it down."""

    def __init__(self, config: ChaosConfig, echo: Echo) -> None:
        self.config = config
        self.echo = echo
        self.report = ChaosReport(config.name, config.workers)
        self.logs = Path(tempfile.mkdtemp(prefix="lqs-chaos-"))
        self.pg = OwnPostgres()
        self.api_base = f"http://127.0.0.1:{free_port()}"
        self.sim_base = f"http://127.0.0.1:{free_port()}"
        self.fleet: Fleet | None = None
        self.db: HarnessDb | None = None
        self.faults_db: HarnessDb | None = None
        self.last_fault = time.monotonic()
        self.started = time.monotonic()

    # ------------------------------------------------------------------ set-up
    async def set_up(self) -> None:
        """PostgreSQL, migrations, the demo's clients, and every process, ready."""
        await asyncio.to_thread(self.pg.start)
        migrated = await asyncio.to_thread(
            subprocess.run,
            [sys.executable, "-m", "lqs", "db", "migrate"],
            env={
                **process_environment(self.api_base),
                "LQS_DATABASE_URL": self.pg.url("chaos-migrate"),
            },
            cwd=self.logs,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        if migrated.returncode != 0:
            raise RuntimeError(f"lqs db migrate failed: {migrated.stderr.strip()[-400:]}")
        self.db = HarnessDb(self.pg.harness_url())
        self.faults_db = HarnessDb(self.pg.harness_url())
        clients = [
            DemoClient("demo-acme", "Acme Realty (chaos)", "resend"),
            DemoClient("demo-globex", "Globex Solar (chaos)", "sendgrid"),
        ]
        async with await AsyncConnection.connect(self.pg.harness_url(), autocommit=True) as conn:
            demo_config = await setup_clients(conn, clients, self.api_base, self.sim_base)
        self.api_keys = [c.api_key for c in clients]
        sim_file = self.logs / "simulator.json"
        sim_file.write_text(json.dumps(simulator_settings(demo_config, self.config.seed)))
        self.fleet = fleet = Fleet(self.logs, process_environment(self.api_base), self.pg.url)
        sim_port, api_port = self.sim_base.rsplit(":", 1)[1], self.api_base.rsplit(":", 1)[1]
        fleet.start("simulator", 1, "simulate", "--port", sim_port, "--config", str(sim_file))
        fleet.start("api", 1, "serve", "--port", api_port)
        for slot in range(1, self.config.workers + 1):
            fleet.start("worker", slot, "worker")
        async with httpx.AsyncClient(timeout=5) as http:
            await wait_ready(http, f"{self.sim_base}/_sim/config", fleet.group, 60)
            await wait_ready(http, f"{self.api_base}/healthz", fleet.group, 60)
        self.echo(
            f"chaos: PostgreSQL {self.pg.bindir} on port {self.pg.port}, simulator "
            f"{self.sim_base}, API {self.api_base}, {self.config.workers} workers; "
            f"ready in {time.monotonic() - self.started:.1f} s"
        )

    # ------------------------------------------------------------------ the orchestrator
    async def watch(self, stop: asyncio.Event) -> None:
        """Every second: observe each worker's progress, then let the orchestrator act."""
        assert self.fleet is not None
        assert self.db is not None
        while not stop.is_set():
            try:
                markers = await self._markers()
            except psycopg.Error:
                markers = None  # the server is restarting: no evidence either way
            if markers is not None:
                self.fleet.observe(markers)
            self.fleet.supervise(self.config.hang_after)
            await asyncio.sleep(1.0)

    async def _markers(self) -> dict[str, Marker]:
        assert self.fleet is not None
        assert self.db is not None
        markers: dict[str, Marker] = {
            str(name): (count, query_start, backend_start)
            for name, count, query_start, backend_start in await self.db.rows(ACTIVITY)
        }
        beats = {
            int(pid): beat_at
            for pid, beat_at in await self.db.rows(
                "SELECT pid, beat_at FROM public.worker_heartbeats WHERE host = %s",
                (self.fleet.host,),
            )
        }
        for incarnation in self.fleet.current.values():
            beat = beats.get(incarnation.proc.pid)
            if beat is not None:
                seen = markers.get(incarnation.application_name, ())
                markers[incarnation.application_name] = (*seen, beat)
        return markers

    # ------------------------------------------------------------------ faults
    def schedule(self) -> list[tuple[float, str, Callable[[], Awaitable[None]]]]:
        """(seconds into the fault phase, what, action), in time order."""
        c, f = self.config, self.config.fault_seconds
        plan: list[tuple[float, str, Callable[[], Awaitable[None]]]] = []
        at = c.kill_every / 2
        while at < f:
            plan.append((at, "SIGKILL a worker", self.kill_worker))
            at += c.kill_every
        at = 0.10 * f
        while at <= 0.35 * f:
            plan.append((at, "terminate backends", self.terminate_backends))
            at += c.terminate_every
        plan.append((0.45 * f, "restart PostgreSQL", self.restart_postgres))
        plan.append((0.55 * f, "statement_timeout on", self.statement_timeout_on))
        plan.append((0.75 * f, "statement_timeout off", self.statement_timeout_off))
        plan.append((0.80 * f, "restart PostgreSQL", self.restart_postgres))
        return sorted(plan, key=lambda step: step[0])

    async def inject_faults(self) -> None:
        """Run the schedule; a fault that cannot be injected is noted, not fatal."""
        began = time.monotonic()
        for at, what, action in self.schedule():
            await asyncio.sleep(max(0.0, began + at - time.monotonic()))
            try:
                await action()
            except (psycopg.Error, RuntimeError, subprocess.TimeoutExpired) as exc:
                self.report.faults.errors.append(f"{what} at {at:.0f} s: {exc}")
            self.last_fault = time.monotonic()
        self.echo(f"chaos: faults done after {time.monotonic() - began:.1f} s")

    async def kill_worker(self) -> None:
        """SIGKILL one running worker, chosen at random."""
        assert self.fleet is not None
        live = self.fleet.live("worker")
        if live:
            self.fleet.kill(random.choice(live))
            self.report.faults.worker_kills += 1

    async def terminate_backends(self) -> None:
        """``pg_terminate_backend`` every session but the harness's."""
        assert self.faults_db is not None
        rows = await self.faults_db.rows(TERMINATE_ALL)
        self.report.faults.termination_rounds += 1
        self.report.faults.backends_terminated += int(rows[0][0])

    async def restart_postgres(self) -> None:
        """``pg_ctl restart -m fast``."""
        took = await asyncio.to_thread(self.pg.restart)
        self.report.faults.restarts.append(took)

    async def statement_timeout_on(self) -> None:
        """A short statement_timeout for every new session; sessions are cut to pick it up."""
        assert self.faults_db is not None
        ms = self.config.statement_timeout_ms
        await self.faults_db.rows(f"ALTER DATABASE {DATABASE} SET statement_timeout = {ms}")
        await self.terminate_backends()
        self.report.faults.statement_timeout = (
            f"{ms} ms for {0.2 * self.config.fault_seconds:.0f} s"
        )

    async def statement_timeout_off(self) -> None:
        """Back to no statement_timeout (sessions keep theirs until the next restart)."""
        assert self.faults_db is not None
        await self.faults_db.rows(f"ALTER DATABASE {DATABASE} RESET statement_timeout")

    # ------------------------------------------------------------------ quiescence
    async def _simulator_pending(self, http: httpx.AsyncClient) -> int:
        answer = await http.get(f"{self.sim_base}/_sim/callbacks", params={"message_id": "-none-"})
        return int(answer.json()["pending"])

    async def settle(self, faults_ended: float) -> None:
        """Wait for quiescence (bounded), then until ``hang_after`` has passed since the
        last fault, so that a worker that hung at the end is seen."""
        assert self.db is not None
        deadline = faults_ended + self.config.settle_seconds
        counts: tuple[int, ...] = ()
        async with httpx.AsyncClient(timeout=10) as http:
            while True:
                try:
                    queued, open_, queue = (int(v) for v in (await self.db.rows(UNSETTLED))[0])
                    counts = (queued, open_, queue, await self._simulator_pending(http))
                except (psycopg.Error, httpx.HTTPError) as exc:
                    counts = (-1,)
                    self.echo(f"chaos: cannot read progress: {exc}")
                if counts == (0, 0, 0, 0):
                    self.report.settled_after = time.monotonic() - faults_ended
                    break
                if time.monotonic() > deadline:
                    self.report.unsettled = (
                        f"after {self.config.settle_seconds:g} s: {counts[0]} lead(s) queued, "
                        f"{counts[1]} communication(s) pending or sent, {counts[2]} delivery "
                        f"queue row(s), {counts[3]} message(s) with webhooks still due"
                        if len(counts) == 4
                        else "progress could not be read"
                    )
                    break
                await asyncio.sleep(1.0)
        self.echo(
            f"chaos: quiescent after {self.report.settled_after:.1f} s"
            if self.report.settled_after is not None
            else f"chaos: not quiescent: {self.report.unsettled}"
        )
        watch_until = self.last_fault + self.config.hang_after + 2
        await asyncio.sleep(max(0.0, watch_until - time.monotonic()))

    # ------------------------------------------------------------------ audit
    async def audit(self) -> None:
        """Read the database and the simulator into the report."""
        assert self.db is not None
        r = self.report
        r.leads_by_status = Counter(
            {str(s): int(n) for s, n in await self.db.rows(
                "SELECT status, count(*) FROM public.leads GROUP BY 1"
            )}
        )  # fmt: skip
        accepted = sorted(r.intake.accepted_ids)
        found = dict(
            await self.db.rows(
                "SELECT id::text, status FROM public.leads WHERE id = ANY(%s::uuid[])",
                (accepted,),
            )
        )
        r.accepted_missing = sum(1 for lead in accepted if lead not in found)
        r.accepted_queued = sum(1 for status in found.values() if status == "queued")
        rows = await self.db.rows(
            "SELECT id::text, client_id::text, type, provider, recipient, content, status,"
            " external_id, created_at FROM public.communications"
        )
        communications = [Communication(*row) for row in rows]
        r.comms_by_status = Counter(c.status for c in communications)
        r.delivered_without_external_id = sum(
            1 for c in communications if c.status == "delivered" and c.external_id is None
        )
        r.failed_reasons = [
            (str(reason), int(n))
            for reason, n in await self.db.rows(
                "SELECT left(coalesce(error_message, '(none)'), 120), count(*)"
                " FROM public.communications WHERE status = 'failed'"
                " GROUP BY 1 ORDER BY 2 DESC LIMIT 3"
            )
        ]
        r.queue_rows_left = int(
            (await self.db.rows("SELECT count(*) FROM public.delivery_queue"))[0][0]
        )
        r.heartbeat_rows = int(
            (await self.db.rows("SELECT count(*) FROM public.worker_heartbeats"))[0][0]
        )
        async with httpx.AsyncClient(timeout=120) as http:
            messages = (await http.get(f"{self.sim_base}/_sim/messages")).json()["messages"]
            requests = (await http.get(f"{self.sim_base}/_sim/requests")).json()["requests"]
            callbacks = (await http.get(f"{self.sim_base}/_sim/callbacks")).json()
        r.messages = audit_messages(messages, communications)
        r.provider_requests = {}
        for request in requests:
            outcome = request["outcome"]
            if outcome in ("refused", "fault"):
                outcome = f"{outcome} {request['status']}"
            r.provider_requests.setdefault(request["provider"], Counter())[outcome] += 1
        r.callbacks = audit_callbacks(callbacks["callbacks"], int(callbacks["pending"]))
        r.faults.statements_cancelled = self.pg.log_count(
            "canceling statement due to statement timeout"
        )

    # ------------------------------------------------------------------ teardown
    def _copy_logs(self, to: Path) -> None:
        to.mkdir(parents=True, exist_ok=True)
        shutil.copytree(self.logs, to, dirs_exist_ok=True)
        if self.pg.log.exists():
            shutil.copy(self.pg.log, to / "postgresql.log")

    async def tear_down(self, keep_logs: Path | None) -> None:
        """Stop every process, the server, and remove the temporary directories."""
        try:
            if self.fleet is not None:
                await asyncio.to_thread(self.fleet.stop)
                self.report.fleet = self.fleet.tally
            for db in (self.db, self.faults_db):
                if db is not None:
                    with contextlib.suppress(psycopg.Error):
                        await db.close()
        finally:
            try:
                if keep_logs is not None:
                    await asyncio.to_thread(self._copy_logs, keep_logs)
            finally:
                await asyncio.to_thread(self.pg.stop)
                shutil.rmtree(self.logs, ignore_errors=True)


async def run_chaos(
    config: ChaosConfig = SHORT, *, echo: Echo | None = None, keep_logs: Path | None = None
) -> ChaosReport:
    """Run the harness once (see the module docstring) and return what it measured.

    Never raises for what the system under test does: a failure to set up is recorded in
    ``setup_error`` and shows as a broken invariant. Everything started is stopped and every
    temporary directory removed, whatever happens; ``keep_logs`` first copies the logs there.
    """
    say = echo or (lambda line: print(line, file=sys.stderr, flush=True))
    run = ChaosRun(config, say)
    stop_watching = asyncio.Event()
    watcher: asyncio.Task[None] | None = None
    try:
        await run.set_up()
        watcher = asyncio.create_task(run.watch(stop_watching))
        rng = random.Random(config.seed)
        requests = plan_requests(make_leads(config.leads, rng), run.api_keys, rng)
        began = time.monotonic()
        intake = post_all(
            run.api_base,
            requests,
            0.85 * config.fault_seconds,
            config.posting_clients,
            run.report.intake,
        )
        await asyncio.gather(intake, run.inject_faults())
        say(
            f"chaos: {run.report.intake.leads_posted} leads posted, faults done after "
            f"{time.monotonic() - began:.1f} s"
        )
        await run.settle(time.monotonic())
        stop_watching.set()
        await watcher
        await run.audit()
    except (
        RuntimeError,
        OSError,
        psycopg.Error,
        httpx.HTTPError,
        subprocess.SubprocessError,
    ) as exc:
        run.report.setup_error = f"{type(exc).__name__}: {exc}"
    finally:
        stop_watching.set()
        if watcher is not None and not watcher.done():
            watcher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await watcher
        await run.tear_down(keep_logs)
        run.report.elapsed = time.monotonic() - run.started
    return run.report


__all__ = ["FULL", "SHORT", "ChaosConfig", "IntakeTally", "run_chaos"]
