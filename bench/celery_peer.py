"""The processor's same-work peer on Celery: one task per lead, a Redis broker, one worker.

The bench starts its own ``redis-server`` on a free loopback port (no persistence) and one
Celery worker as a separate process (``--pool=solo``, concurrency 1: one process, like the
one LQS processor it is compared with) that consumes nothing until it is told to. A run
sends one task per queued lead (not timed), then tells the worker to consume their queue
and waits for the last task: the clock runs from that order to the last task's end. Each
task does LQS's work for its lead (bench/peer.py :func:`~bench.peer.process_lead_sync`)
on one psycopg connection the worker keeps, then counts itself in Redis (one ``INCR``).

This module is also the worker's Celery app (``celery -A bench.celery_peer worker``),
configured from :data:`BROKER_ENV`.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from importlib.metadata import version
from pathlib import Path
from typing import Any
from uuid import UUID

import psycopg
import redis
from celery import Celery

from bench.common import ROOT, free_port
from bench.peer import CLIENT, ClientConfig, PeerError, process_lead_sync
from lqs.db.clients import Client
from lqs.db.connection import connect
from lqs.domain.templates import TemplateRenderer

CELERY_VERSION = version("celery")
BROKER_ENV = "LQS_BENCH_CELERY_BROKER"
TASK = "bench.process_lead"
LEADS_QUEUE = "bench_leads"
IDLE_QUEUE = "bench_idle"
"""The queue the worker starts on (nothing is sent there): it waits, ready, for the run."""
START_TIMEOUT = 60.0
TIMEOUT = 600.0
"""Seconds one run may take before it is abandoned as stuck."""

app = Celery("lqs_bench", broker=os.environ.get(BROKER_ENV, "redis://127.0.0.1:6379/0"))
app.conf.update(
    task_ignore_result=True,
    task_serializer="json",
    accept_content=["json"],
    worker_hijack_root_logger=False,
    broker_connection_retry_on_startup=True,
    # The idle worker's BRPOP returns every 50 ms (not every second), so it starts on the
    # leads' queue as soon as it is told to: no second of waiting in the timed run.
    broker_transport_options={"polling_interval": 0.05},
)

_renderer = TemplateRenderer()
_connections: dict[str, psycopg.Connection] = {}
_configs: dict[UUID, ClientConfig] = {}
_counter: list[redis.Redis] = []


def _connection(url: str) -> psycopg.Connection:
    conn = _connections.get(url)
    if conn is None or conn.closed:
        conn = _connections[url] = connect(url)
    return conn


def _config(conn: psycopg.Connection, client_id: UUID) -> ClientConfig:
    config = _configs.get(client_id)
    if config is None:
        row = conn.execute(CLIENT, (client_id,)).fetchone()
        if row is None:
            raise PeerError(f"no client {client_id}")
        config = _configs[client_id] = ClientConfig.parse(Client(*row))
    return config


def _redis() -> redis.Redis:
    if not _counter:
        _counter.append(redis.Redis.from_url(str(app.conf.broker_url)))
    return _counter[0]


@app.task(name=TASK)
def process_lead_task(url: str, lead_id: str, run: str, n: int) -> None:
    """One lead's work; the ``n``-th task of ``run`` to finish says so in Redis, and a
    failing task says why (the bench then stops waiting)."""
    try:
        conn = _connection(url)
        process_lead_sync(conn, UUID(lead_id), lambda cid: _config(conn, cid), _renderer)
    except Exception as exc:
        _redis().rpush(f"{run}:done", f"failed: {type(exc).__name__}: {exc}")
        raise
    if _redis().incr(run) == n:
        _redis().rpush(f"{run}:done", "done")


class CeleryUnavailable(RuntimeError):
    """redis-server or the Celery worker could not be started (the peer is skipped)."""


class CeleryPeer:
    """A redis-server and a Celery worker started for the bench; :meth:`close` stops them."""

    def __init__(self) -> None:
        self._processes: list[subprocess.Popen[bytes]] = []
        self._log = Path(tempfile.mkstemp(prefix="lqs-bench-celery-", suffix=".log")[1])
        self.broker = ""
        self.worker = ""
        self._client: Celery | None = None
        self._redis: redis.Redis | None = None

    @classmethod
    def start(cls) -> CeleryPeer:
        """Start redis-server and the worker, and wait until the worker answers.

        Raises:
            CeleryUnavailable: either could not be started (the reason says why).
        """
        peer = cls()
        try:
            peer._start_redis()
            peer._start_worker()
        except BaseException:
            peer.close()
            raise
        return peer

    def _start_redis(self) -> None:
        server = shutil.which("redis-server")
        if server is None:
            raise CeleryUnavailable("no redis-server on PATH")
        port = free_port()
        self.broker = f"redis://127.0.0.1:{port}/0"
        # No persistence: a scratch broker.
        command = [server, "--port", str(port), "--bind", "127.0.0.1", "--save", "",
                   "--appendonly", "no"]  # fmt: skip
        with self._log.open("ab") as log:
            self._processes.append(subprocess.Popen(command, stdout=log, stderr=log))
        self._redis = redis.Redis.from_url(self.broker)
        deadline = time.monotonic() + 10
        while True:
            try:
                self._redis.ping()
                return
            except (redis.ConnectionError, redis.TimeoutError):
                if self._processes[0].poll() is not None or time.monotonic() > deadline:
                    raise CeleryUnavailable(f"redis-server did not start: {self._tail()}") from None
                time.sleep(0.05)

    def _start_worker(self) -> None:
        self.worker = f"lqs-bench-{uuid.uuid4().hex[:8]}@localhost"
        env = {**os.environ, BROKER_ENV: self.broker, "PYTHONPATH": str(ROOT)}
        command = [
            sys.executable, "-m", "celery", "-A", "bench.celery_peer", "worker",
            "--pool=solo", "--concurrency=1", "-Q", IDLE_QUEUE, "-n", self.worker,
            "--without-gossip", "--without-mingle", "--without-heartbeat", "--loglevel=WARNING",
        ]  # fmt: skip
        with self._log.open("ab") as log:
            process = subprocess.Popen(command, env=env, cwd=ROOT, stdout=log, stderr=log)
        self._processes.append(process)
        self._client = Celery("lqs_bench_client", broker=self.broker, set_as_current=False)
        deadline = time.monotonic() + START_TIMEOUT
        while not self._client.control.ping(destination=[self.worker], timeout=0.5):
            if process.poll() is not None or time.monotonic() > deadline:
                raise CeleryUnavailable(f"the Celery worker did not start: {self._tail()}")

    def _tail(self) -> str:
        lines = self._log.read_text(errors="replace").strip().splitlines()
        return lines[-1] if lines else "no output"

    def rate(self, url: str, timeout: float = TIMEOUT) -> float:
        """Leads per second: one task per queued lead of the database at ``url``, sent
        before the clock starts, run by the worker.

        Raises:
            PeerError: a task failed, or they were not all done within ``timeout`` s.
        """
        assert self._client is not None
        assert self._redis is not None
        with psycopg.connect(url) as conn:
            rows = conn.execute("SELECT id FROM public.leads WHERE status = 'queued'").fetchall()
        n = len(rows)
        run = f"bench:{uuid.uuid4().hex}"
        with self._client.producer_or_acquire() as producer:
            for (lead_id,) in rows:
                self._client.send_task(
                    TASK, args=(url, str(lead_id), run, n), queue=LEADS_QUEUE, producer=producer
                )
        started = time.perf_counter()
        self._client.control.add_consumer(
            LEADS_QUEUE, destination=[self.worker], reply=True, limit=1
        )
        answer = self._last_task(run, timeout)
        elapsed = time.perf_counter() - started
        self._client.control.cancel_consumer(
            LEADS_QUEUE, destination=[self.worker], reply=True, limit=1
        )
        if answer is None:
            done = int(self._redis.get(run) or 0)
            raise PeerError(f"Celery ran {done:,} of {n:,} tasks in {timeout:.0f} s")
        if answer[1] != b"done":
            raise PeerError(f"a Celery task {answer[1].decode()}")
        return n / elapsed

    def _last_task(self, run: str, timeout: float) -> Any:
        """``run``'s word that its last task is done (or one failed), None after
        ``timeout`` s: waited for a second at a time (the client's socket timeout is 5 s),
        checking that the worker is alive in between.

        Raises:
            PeerError: the worker died.
        """
        assert self._redis is not None
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            answer = self._redis.blpop([f"{run}:done"], timeout=1)
            if answer is not None:
                return answer
            if self._processes[-1].poll() is not None:
                raise PeerError(f"the Celery worker died: {self._tail()}")
        return None

    def close(self) -> None:
        """Stop the worker and redis-server (in that order)."""
        for process in reversed(self._processes):
            process.terminate()
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        self._processes.clear()
        self._log.unlink(missing_ok=True)
