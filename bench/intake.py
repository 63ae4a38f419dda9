"""Intake: ``POST /v1/leads/batch`` and ``lqs leads import`` against a plain COPY of the rows."""

from __future__ import annotations

import csv
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx
import psycopg

from bench.common import ROOT, Row, interleave, run_lqs

COLUMNS = ("email", "first_name", "last_name", "job_title", "company_name", "company_size",
           "country", "source", "consent_status")  # fmt: skip


def make_leads(n: int, tag: str) -> list[dict[str, Any]]:
    return [
        {
            "email": f"lead{i}.{tag}@company{i % 997}.example",
            "first_name": f"First{i}",
            "last_name": f"Last{i}",
            "job_title": ("CEO", "Engineer", "VP Sales", "Analyst")[i % 4],
            "company_name": f"Company {i % 997}",
            "company_size": (i * 7) % 5000,
            "country": ("US", "GB", "DE", "FR")[i % 4],
            "source": "benchmark",
            "consent_status": ("granted", "unknown")[i % 2],
        }
        for i in range(n)
    ]


def _reset(url: str) -> None:
    with psycopg.connect(url) as conn:
        conn.execute(
            "TRUNCATE public.leads, public.lead_import_rows, public.idempotency_keys CASCADE"
        )


def _client_id(url: str) -> str:
    with psycopg.connect(url) as conn:
        row = conn.execute("SELECT id FROM public.clients WHERE slug = 'bench'").fetchone()
    assert row is not None
    return str(row[0])


def plain_copy(url: str, leads: list[dict[str, Any]]) -> float:
    """Baseline: COPY the same rows (already normalised) straight into leads."""
    _reset(url)
    client_id = _client_id(url)
    started = time.perf_counter()
    with (
        psycopg.connect(url) as conn,
        conn.cursor() as cur,
        cur.copy(
            "COPY public.leads (client_id, dedupe_key, " + ", ".join(COLUMNS) + ") FROM STDIN"
        ) as copy,
    ):
        for lead in leads:
            copy.write_row([client_id, "email:" + lead["email"], *(lead[c] for c in COLUMNS)])
    return len(leads) / (time.perf_counter() - started)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class ApiServer:
    def __init__(self, url: str) -> None:
        self.port = _free_port()
        env = {"LQS_DATABASE_URL": url, "PATH": "/usr/bin:/bin"}
        self.process = subprocess.Popen(
            [sys.executable, "-m", "lqs", "serve", "--port", str(self.port)],
            env=env,
            cwd=ROOT,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        deadline = time.monotonic() + 30
        while True:
            try:
                if httpx.get(f"http://127.0.0.1:{self.port}/healthz").status_code == 200:
                    return
            except httpx.TransportError:
                if time.monotonic() > deadline or self.process.poll() is not None:
                    raise RuntimeError("lqs serve did not start") from None
                time.sleep(0.1)

    def close(self) -> None:
        self.process.terminate()
        self.process.wait(timeout=30)


def batch_endpoint(url: str, server: ApiServer, key: str, leads: list[dict[str, Any]]) -> float:
    _reset(url)
    started = time.perf_counter()
    with httpx.Client(base_url=f"http://127.0.0.1:{server.port}", timeout=60) as http:
        for start in range(0, len(leads), 1000):
            response = http.post(
                "/v1/leads/batch",
                json={"leads": leads[start : start + 1000]},
                headers={"Authorization": f"Bearer {key}"},
            )
            response.raise_for_status()
    return len(leads) / (time.perf_counter() - started)


def csv_import(url: str, path: Path, n: int) -> float:
    _reset(url)
    started = time.perf_counter()
    run_lqs(url, "leads", "import", str(path), "--client", "bench")
    return n / (time.perf_counter() - started)


def run(url: str, n: int, repeats: int) -> list[Row]:
    run_lqs(url, "clients", "create", "Bench", "--slug", "bench")
    key = run_lqs(
        url, "keys", "create", "--client", "bench", "--rate-limit", "1000000"
    ).stdout.strip()
    leads = make_leads(n, "b")
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "leads.csv"
        with path.open("w", newline="") as handle:
            writer = csv.DictWriter(handle, fieldnames=list(COLUMNS))
            writer.writeheader()
            writer.writerows(leads)
        server = ApiServer(url)
        try:
            print(f"intake: {n:,} leads, {repeats} interleaved repeats")
            series = interleave(
                repeats,
                {
                    "plain COPY": lambda: plain_copy(url, leads),
                    "POST /v1/leads/batch": lambda: batch_endpoint(url, server, key, leads),
                    "lqs leads import": lambda: csv_import(url, path, n),
                },
            )
        finally:
            server.close()
    baseline = series["plain COPY"]
    return [
        Row("intake: POST /v1/leads/batch (1,000 per request)", series["POST /v1/leads/batch"],
            baseline, "leads/s", 0.40),
        Row("intake: lqs leads import (CSV, whole process)", series["lqs leads import"],
            baseline, "leads/s", 0.40),
    ]  # fmt: skip
