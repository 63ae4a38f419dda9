"""Intake over HTTP: ``POST /v1/leads`` at fixed concurrency against one ``lqs serve``
worker, against a bare Starlette endpoint that inserts the same row with psycopg, and
against one that also checks and stores the lead as LQS does (bench/checked_intake.py).

The load comes from a generator in its own process (multiprocessing, spawn), so its CPU
is not the server's: ``concurrency`` keep-alive HTTP/1.1 connections over raw asyncio
streams, every request pre-encoded before the clock starts, each a distinct valid lead.
Both servers get the same bytes (the bare one ignores the Authorization header), run as
one uvicorn worker each on this host, and are measured interleaved.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import multiprocessing
import os
import statistics
import subprocess
import sys
import tempfile
import time
import traceback
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, replace
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

import httpx
import psutil
import psycopg

from bench.common import (
    ROOT,
    Row,
    Section,
    Series,
    backend_cpu_seconds,
    backend_cpu_used,
    free_port,
    interleave,
    run_lqs,
)
from bench.intake import make_leads

LQS = "LQS (lqs serve)"
BARE = "bare Starlette+psycopg"
CHECKED = "bare Starlette, same validation and insert-or-merge"

WARM_UP = 1_000
"""Requests sent to each server before the measured repeats."""
_LOAD_TIMEOUT = 600.0
"""Seconds one load run may take before the generator is killed."""


@dataclass(frozen=True)
class Load:
    """What one run of the load generator measured."""

    requests: int
    seconds: float
    p50_ms: float
    p99_ms: float
    generator_cpu_ms: float
    """The generator's own CPU time per request."""
    server_cpu_ms: float = 0.0
    """The server process's CPU time per request (filled in by the caller)."""
    postgres_cpu_ms: float | None = None
    """The database's backends' CPU time per request; None for a server on another host."""

    @property
    def rate(self) -> float:
        return self.requests / self.seconds


# ---------------------------------------------------------------- the load generator


def _content_length(head: bytes) -> int:
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            return int(value)
    raise RuntimeError(f"response without Content-Length: {head!r}")


async def _drive(port: int, requests: Sequence[bytes], concurrency: int, status: bytes) -> Load:
    streams = [await asyncio.open_connection("127.0.0.1", port) for _ in range(concurrency)]
    latencies = [0.0] * len(requests)
    # One shared iterator: each connection takes the next unsent request when it is free.
    pending = iter(range(len(requests)))

    async def connection(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        for index in pending:
            sent = time.perf_counter()
            writer.write(requests[index])
            head = await reader.readuntil(b"\r\n\r\n")
            body = await reader.readexactly(_content_length(head))
            latencies[index] = time.perf_counter() - sent
            if head[9:12] != status:
                raise RuntimeError(f"request {index}: {head.decode()}{body.decode()}")

    started = time.perf_counter()
    cpu = time.process_time()
    await asyncio.gather(*(connection(r, w) for r, w in streams))
    seconds = time.perf_counter() - started
    cpu_ms = (time.process_time() - cpu) * 1000 / len(requests)
    for _, writer in streams:
        writer.close()
    quantiles = statistics.quantiles(latencies, n=100)
    return Load(len(requests), seconds, quantiles[49] * 1000, quantiles[98] * 1000, cpu_ms)


def _generate(
    port: int, requests: list[bytes], concurrency: int, status: bytes, results: Connection
) -> None:
    """The generator process: drive the load, send back a Load or the error's traceback."""
    try:
        try:
            # uvicorn's own event loop, installed with uvicorn[standard].
            import uvloop

            load = uvloop.run(_drive(port, requests, concurrency, status))
        except ImportError:
            load = asyncio.run(_drive(port, requests, concurrency, status))
        results.send(load)
    except BaseException:
        results.send(traceback.format_exc())
    finally:
        results.close()


def drive_load(port: int, requests: list[bytes], concurrency: int, status: int = 201) -> Load:
    """Send ``requests`` (raw HTTP/1.1) to 127.0.0.1:``port`` from a separate process;
    every answer must have ``status``."""
    context = multiprocessing.get_context("spawn")
    receiving, sending = context.Pipe(duplex=False)
    process = context.Process(
        target=_generate,
        args=(port, requests, concurrency, str(status).encode(), sending),
        daemon=True,
    )
    process.start()
    sending.close()
    try:
        if not receiving.poll(_LOAD_TIMEOUT):
            raise RuntimeError(f"the load generator sent nothing in {_LOAD_TIMEOUT:.0f} s")
        result = receiving.recv()
    finally:
        receiving.close()
        process.join(timeout=10)
        if process.is_alive():
            process.kill()
            process.join()
    if isinstance(result, str):
        raise RuntimeError(f"the load generator failed:\n{result}")
    assert isinstance(result, Load)
    return result


def encode_requests(leads: list[dict[str, Any]], port: int, key: str) -> list[bytes]:
    requests = []
    for lead in leads:
        body = json.dumps(lead).encode()
        head = (
            f"POST /v1/leads HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
            f"Authorization: Bearer {key}\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(body)}\r\n\r\n"
        )
        requests.append(head.encode() + body)
    return requests


# ---------------------------------------------------------------- the servers


@dataclass(frozen=True)
class Server:
    """A server the benchmark started: its port and process."""

    port: int
    process: psutil.Process

    def cpu_seconds(self) -> float:
        times = self.process.cpu_times()
        return float(times.user + times.system)


@contextmanager
def serving(name: str, command: list[str], env: dict[str, str], log: Path) -> Iterator[Server]:
    """Run a server on a free port until the block ends; print its log if anything fails."""
    port = free_port()
    with log.open("wb") as output:
        process = subprocess.Popen(
            [*command, "--port", str(port)],
            env={"PATH": "/usr/bin:/bin", **env},
            cwd=ROOT,
            stdout=output,
            stderr=subprocess.STDOUT,
        )
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                if httpx.get(f"http://127.0.0.1:{port}/healthz").status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"{name} did not start")
            time.sleep(0.1)
        yield Server(port, psutil.Process(process.pid))
    except BaseException:
        print(f"--- {name} log ({log}) ---\n{log.read_text(errors='replace')}", file=sys.stderr)
        raise
    finally:
        process.terminate()
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def measure_load(
    url: str, server: Server, requests: list[bytes], concurrency: int, status: int = 201
) -> Load:
    """:func:`drive_load` against ``server``, with its CPU and its PostgreSQL backends'."""
    cpu = server.cpu_seconds()
    backends = backend_cpu_seconds(url)
    load = drive_load(server.port, requests, concurrency, status)
    load = replace(load, server_cpu_ms=(server.cpu_seconds() - cpu) * 1000 / len(requests))
    after = backend_cpu_seconds(url)
    used = backend_cpu_used(backends, after)
    if used is not None:
        load = replace(load, postgres_cpu_ms=used * 1000 / len(requests))
    return load


def _reset(url: str) -> None:
    with psycopg.connect(url) as conn:
        conn.execute("TRUNCATE public.leads, public.idempotency_keys CASCADE")


def _client_id(url: str, slug: str) -> str:
    with psycopg.connect(url) as conn:
        row = conn.execute("SELECT id FROM public.clients WHERE slug = %s", (slug,)).fetchone()
    assert row is not None
    return str(row[0])


# ---------------------------------------------------------------- the stage


def per_request(loads: list[Load], which: str) -> str:
    """The median of the loads' ``which`` CPU figure, or n/a."""
    values = [getattr(load, which) for load in loads]
    return "n/a" if None in values else f"{statistics.median(values):.2f} ms"


def latency_span(values: list[float]) -> str:
    return f"{statistics.median(values):,.1f} ms ({min(values):,.1f}–{max(values):,.1f})"


def p99_series(name: str, loads: list[Load]) -> Series:
    """The p99 latencies of ``loads`` (ms), for a row comparing latencies."""
    return Series(name, [load.p99_ms for load in loads], decimals=1)


def print_loads(loads: dict[str, list[Load]], each: str = "request") -> None:
    for name, found in loads.items():
        p50 = [load.p50_ms for load in found]
        p99 = [load.p99_ms for load in found]
        print(
            f"  {name}: p50 {latency_span(p50)}, p99 {latency_span(p99)}; CPU per {each}: "
            f"server {per_request(found, 'server_cpu_ms')}, "
            f"PostgreSQL {per_request(found, 'postgres_cpu_ms')}, "
            f"load generator {per_request(found, 'generator_cpu_ms')}"
        )


def load_table(
    series: dict[str, Series], loads: dict[str, list[Load]], unit: str, each: str = "request"
) -> list[str]:
    """A Markdown table: each server's rate, latencies and CPU per ``each``."""
    table = [
        f"| server | {unit} | p50 latency | p99 latency "
        f"| CPU per {each}: server, its PostgreSQL backends, load generator |",
        "| --- | --- | --- | --- | --- |",
    ]
    for name, found in loads.items():
        table.append(
            f"| {name} | {series[name].median:,.0f} ({series[name].span()}) "
            f"| {latency_span([load.p50_ms for load in found])} "
            f"| {latency_span([load.p99_ms for load in found])} "
            f"| {per_request(found, 'server_cpu_ms')}, {per_request(found, 'postgres_cpu_ms')}, "
            f"{per_request(found, 'generator_cpu_ms')} |"
        )
    return table


def uvicorn(app: str) -> list[str]:
    """The command serving ``app`` with one uvicorn worker (add ``--port``)."""
    return [sys.executable, "-m", "uvicorn", app, "--host", "127.0.0.1", "--workers", "1",
            "--log-level", "warning", "--no-access-log"]  # fmt: skip


def run(url: str, *, requests: int, concurrency: int, repeats: int) -> Section:
    """``POST /v1/leads`` requests/s and p50/p99 latency, LQS against both bare servers."""
    run_lqs(url, "clients", "create", "Bench HTTP", "--slug", "bench-http")
    key = run_lqs(
        url, "keys", "create", "--client", "bench-http", "--rate-limit", "100000000"
    ).stdout.strip()
    bare_env = {
        "BARE_INTAKE_DATABASE_URL": url,
        "BARE_INTAKE_CLIENT_ID": _client_id(url, "bench-http"),
    }
    loads: dict[str, list[Load]] = {LQS: [], BARE: [], CHECKED: []}
    runs = itertools.count()

    def measure(name: str, server: Server, count: int = requests) -> float:
        # Distinct leads in every run, so LQS never takes its merge path.
        leads = make_leads(count, f"h{next(runs)}")
        encoded = encode_requests(leads, server.port, key)
        _reset(url)
        load = measure_load(url, server, encoded, concurrency)
        with psycopg.connect(url) as conn:
            row = conn.execute("SELECT count(*) FROM public.leads").fetchone()
        if row is None or row[0] != count:
            raise RuntimeError(f"{name} stored {row} leads, not {count}")
        loads[name].append(load)
        return load.rate

    print(f"http intake: {requests:,} requests at concurrency {concurrency}, {repeats} repeats")
    with tempfile.TemporaryDirectory() as tmp:
        logs = Path(tmp)
        with (
            serving(LQS, [sys.executable, "-m", "lqs", "serve"],
                    {"LQS_DATABASE_URL": url}, logs / "lqs.log") as lqs,
            serving(BARE, uvicorn("bench.bare_intake:app"), bare_env, logs / "bare.log") as bare,
            serving(CHECKED, uvicorn("bench.checked_intake:app"), bare_env,
                    logs / "checked.log") as checked,
        ):  # fmt: skip
            servers = {LQS: lqs, BARE: bare, CHECKED: checked}
            # Warm-up, not counted: the pools grow to their size, the processes warm up.
            for name, server in servers.items():
                measure(name, server, min(requests, WARM_UP))
                loads[name].clear()
            series = interleave(
                repeats,
                {name: lambda n=name, s=server: measure(n, s) for name, server in servers.items()},
            )
    _reset(url)
    print_loads(loads)
    return _section(series, loads, requests, concurrency)


def _section(
    series: dict[str, Series], loads: dict[str, list[Load]], requests: int, concurrency: int
) -> Section:
    table = [
        f"`POST /v1/leads`, {concurrency} keep-alive connections from a load generator in its "
        f"own process, {requests:,} distinct valid leads per repeat; one uvicorn worker per "
        f"server on the same {os.cpu_count()}-core host as the generator and PostgreSQL. "
        "Latency is from sending a request to reading its whole answer; each cell is the "
        "median of the repeats' figures (min–max).",
        "",
        *load_table(series, loads, "requests/s"),
        "",
        f"*{BARE}* parses the JSON and inserts the same columns with psycopg (one pool of 10 "
        "connections, like `lqs serve`): no API key lookup, validation, normalisation, "
        f"deduplication or NOTIFY. *{CHECKED}* (bench/checked_intake.py) validates and "
        "normalises the lead with LQS's own `parse_lead` (pydantic, email-validator, "
        "phonenumbers) and stores it with `insert_or_merge_leads`'s statement and consent "
        "history in one transaction: no FastAPI, API key lookup, Idempotency-Key or NOTIFY.",
    ]
    stage = f"POST /v1/leads (concurrency {concurrency})"
    rows = [
        Row(stage, series[LQS], series[BARE], "requests/s", None),
        Row(f"{stage} against the same validation", series[LQS], series[CHECKED],
            "requests/s", 0.70),
        Row(f"{stage}: p99 latency against the same validation's",
            p99_series(LQS, loads[LQS]), p99_series(CHECKED, loads[CHECKED]), "ms",
            2.0, at_most=True),
    ]  # fmt: skip
    return Section("Intake over HTTP", rows=rows, markdown=table)
