"""``lqs worker`` as a daemon under database faults: it heals by itself.

A terminated connection, a cancelled statement, a database that refuses connections for
a while: the worker logs, backs off, reconnects and resumes; every lead is processed and
every message sent, and the process never has to be restarted by hand. SIGTERM with
requests in flight waits for their answers and records them before exiting.
"""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import psycopg
import pytest
from psycopg import conninfo

from lqs.db.connection import transaction_pooled
from lqs.simulator import Faults, SimulatorConfig, SimulatorControl
from lqs.simulator.config import Latency, ResendConfig
from tests.conftest import direct_url
from tests.e2e.conftest import lqs_env, run_lqs
from tests.e2e.test_sending import (
    _accepted_per_communication,
    _client,
    _comms,
    _delivery,
    _leads,
    _rows,
)


class Worker:
    """``lqs worker`` in the background, its output in a file."""

    def __init__(self, url: str, log: Path, **env: str) -> None:
        self.log = log
        self._handle = log.open("wb")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "lqs", "worker"],
            env=lqs_env(url, LQS_WORKER_POLL_INTERVAL="0.5", **env),
            stdout=self._handle,
            stderr=subprocess.STDOUT,
        )

    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def assert_alive(self) -> None:
        assert self.process.poll() is None, f"the worker exited: {self.output()[-3000:]}"

    def stop(self, timeout: float = 60) -> int:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        try:
            return self.process.wait(timeout=timeout)
        finally:
            if self.process.poll() is None:
                self.process.kill()
                self.process.wait()
            self._handle.close()


@pytest.fixture
def worker_factory(tmp_path: Path) -> Iterator[Callable[..., Worker]]:
    started: list[Worker] = []

    def start(url: str, **env: str) -> Worker:
        worker = Worker(url, tmp_path / f"worker-{len(started)}.log", **env)
        started.append(worker)
        return worker

    yield start
    for worker in started:
        worker.stop(timeout=10)


def _admin(url: str) -> psycopg.Connection:
    """A session on the server itself (not through a pooler): it follows server backends."""
    return psycopg.connect(
        conninfo.make_conninfo(direct_url(url), dbname="postgres"), autocommit=True
    )


def _dbname(url: str) -> str:
    return str(conninfo.conninfo_to_dict(url)["dbname"])


def _terminate_backends(url: str) -> int:
    with _admin(url) as admin:
        rows = admin.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
            " WHERE datname = %s AND pid <> pg_backend_pid()",
            (_dbname(url),),
        ).fetchall()
    return len(rows)


def _wait_until(condition: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not _holds(condition):
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.2)


def _holds(condition: Callable[[], bool]) -> bool:
    try:
        return condition()
    except (psycopg.OperationalError, psycopg.InternalError):
        # The database is still coming back (a pooler refuses clients for a moment after
        # refused server logins, or hands out a server connection whose cancelled
        # statement's answer arrives late: "received 2 results from command 'BEGIN'"): not
        # yet. An error that lasts still fails the wait at its deadline.
        return False


def _settled(url: str, client_id: str, leads: int) -> Callable[[], bool]:
    def check() -> bool:
        [row] = _rows(
            url,
            "SELECT count(*) FILTER (WHERE status = 'queued') AS queued, count(*) AS total"
            " FROM public.leads WHERE client_id = %s",
            client_id,
        )
        [comm] = _rows(
            url,
            "SELECT count(*) FILTER (WHERE status = 'sent') AS sent, count(*) AS total"
            " FROM public.communications WHERE client_id = %s",
            client_id,
        )
        return bool(
            row["total"] == leads and row["queued"] == 0 and comm["sent"] == comm["total"] == leads
        )

    return check


def test_terminated_connections_never_stop_the_worker(
    pipeline_db: str,
    simulator: str,
    control: SimulatorControl,
    worker_factory: Callable[..., Worker],
) -> None:
    client_id = _client(pipeline_db, _delivery(simulator))
    worker = worker_factory(pipeline_db)
    _leads(pipeline_db, client_id, 20)
    _wait_until(_settled(pipeline_db, client_id, 20), 60, "the first wave")

    terminated = 0
    for wave in range(6):
        _leads(pipeline_db, client_id, 10)
        terminated += _terminate_backends(pipeline_db)
        time.sleep(0.3 if wave % 2 else 0.05)
        worker.assert_alive()
    assert terminated >= 6

    _wait_until(_settled(pipeline_db, client_id, 80), 90, "every lead processed and sent")
    worker.assert_alive()
    assert worker.stop() == 0
    assert "worker_loop_interrupted" in worker.output()
    sent = {str(c["id"]) for c in _comms(pipeline_db, client_id)}
    accepted = _accepted_per_communication(control, "resend")
    assert set(accepted) == sent
    assert set(accepted.values()) == {1}  # every message reached Resend once


def test_cancelled_statements_and_refused_connections_are_waited_out(
    pipeline_db: str,
    simulator: str,
    control: SimulatorControl,
    worker_factory: Callable[..., Worker],
) -> None:
    client_id = _client(pipeline_db, _delivery(simulator))
    worker = worker_factory(pipeline_db)
    name = _dbname(pipeline_db)
    with _admin(pipeline_db) as admin:
        # Every statement of every new connection is cancelled at once.
        admin.execute(f'ALTER DATABASE "{name}" SET statement_timeout = 1'.encode())
        _terminate_backends(pipeline_db)
        # The test's own session opts out of the timeout its database now imposes (on the
        # server itself: a pooler ignores startup options).
        opted_out = conninfo.make_conninfo(
            direct_url(pipeline_db), options="-c statement_timeout=0"
        )
        _leads(opted_out, client_id, 5)
        # Until the worker has met a cancelled statement (a fixed sleep missed it on a
        # loaded machine, where reconnecting took longer than the sleep).
        _wait_until(lambda: _cancelled(worker), 60, "a statement of the worker cancelled")
        worker.assert_alive()
        admin.execute(f'ALTER DATABASE "{name}" RESET statement_timeout'.encode())
        _terminate_backends(pipeline_db)
    _wait_until(_settled(pipeline_db, client_id, 5), 60, "the leads after the timeouts")

    with _admin(pipeline_db) as admin:
        admin.execute(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS false'.encode())
        _terminate_backends(pipeline_db)
        time.sleep(3)
        worker.assert_alive()
        admin.execute(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS true'.encode())
    # Directly: a pooler may refuse clients for a moment after the refused logins.
    _leads(direct_url(pipeline_db), client_id, 5)
    _wait_until(_settled(pipeline_db, client_id, 10), 60, "the leads after the outage")
    worker.assert_alive()
    assert worker.stop() == 0
    assert _cancelled(worker)


def _cancelled(worker: Worker) -> bool:
    """Whether the worker has logged a statement cancelled by the statement timeout."""
    return "QueryCanceled" in worker.output() or "statement timeout" in worker.output()


def test_sigterm_waits_for_the_requests_in_flight_and_records_them(
    pipeline_db: str,
    simulator: str,
    control: SimulatorControl,
    worker_factory: Callable[..., Worker],
) -> None:
    control.configure(SimulatorConfig(seed=11, resend=ResendConfig(
        faults=Faults(latency=Latency(distribution="fixed", seconds=2.0)))))  # fmt: skip
    client_id = _client(pipeline_db, _delivery(simulator))
    worker = worker_factory(pipeline_db, LQS_DISPATCH_TIMEOUT="10")
    _leads(pipeline_db, client_id, 8)
    _wait_until(lambda: len(control.requests("resend")) >= 1, 30, "a request in flight")

    assert worker.stop(timeout=30) == 0

    comms = _comms(pipeline_db, client_id)
    accepted = set(_accepted_per_communication(control, "resend"))
    assert accepted  # the requests in flight were answered...
    recorded = {str(c["id"]) for c in comms if c["status"] == "sent"}
    assert accepted <= recorded  # ...and every accepted message is recorded as sent
    assert not {str(c["id"]) for c in comms if c["status"] == "pending"} & accepted


def test_a_worker_started_before_its_database_waits_for_it(
    pipeline_db: str,
    simulator: str,
    control: SimulatorControl,
    worker_factory: Callable[..., Worker],
) -> None:
    client_id = _client(pipeline_db, _delivery(simulator))
    name = _dbname(pipeline_db)
    with _admin(pipeline_db) as admin:
        admin.execute(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS false'.encode())
        try:
            worker = worker_factory(pipeline_db)
            # Through a transaction pooler the worker's connections (to the pooler) open,
            # and its loops wait out the refused server connections instead.
            waiting = (
                "worker_loop_interrupted"
                if transaction_pooled(pipeline_db)
                else "worker_waiting_for_database"
            )
            # Waited for, not slept for: a loaded machine takes seconds to start a worker.
            _wait_until(lambda: waiting in worker.output(), 30, f"the worker's {waiting}")
            worker.assert_alive()
        finally:
            admin.execute(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS true'.encode())
    _leads(pipeline_db, client_id, 3)
    _wait_until(_settled(pipeline_db, client_id, 3), 60, "the leads once the database is back")
    assert worker.stop() == 0


def test_worker_heartbeats_are_written_and_marked_stopped(
    pipeline_db: str, simulator: str, worker_factory: Callable[..., Worker]
) -> None:
    worker = worker_factory(pipeline_db)
    _wait_until(
        lambda: bool(_rows(pipeline_db, "SELECT 1 FROM public.worker_heartbeats")),
        30,
        "a heartbeat",
    )
    [beat] = _rows(pipeline_db, "SELECT * FROM public.worker_heartbeats")
    assert beat["pid"] == worker.process.pid
    assert beat["stopped_at"] is None
    assert worker.stop() == 0
    [beat] = _rows(pipeline_db, "SELECT * FROM public.worker_heartbeats")
    assert beat["stopped_at"] is not None


def test_a_one_shot_command_that_loses_the_database_says_so_in_one_line(
    pipeline_db: str,
) -> None:
    client_id = _client(pipeline_db, {})
    _leads(pipeline_db, client_id, 50)
    # Every statement of every new server connection is cancelled (a database setting, not
    # a startup option: a pooler ignores those).
    with _admin(pipeline_db) as admin:
        admin.execute(f'ALTER DATABASE "{_dbname(pipeline_db)}" SET statement_timeout = 1'.encode())
    _terminate_backends(pipeline_db)
    result = run_lqs(pipeline_db, "worker", "--once")
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    # One error line, the last; the worker may have logged a retry warning before it.
    lines = result.stderr.strip().splitlines()
    [line] = [found for found in lines if found.startswith("error:")]
    assert lines[-1] == line, result.stderr
    assert line.startswith("error: the database became unavailable (canceling statement")
