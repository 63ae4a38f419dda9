"""Worker memory while it processes a large backlog: RSS at 10% of the leads and at the end."""

from __future__ import annotations

import subprocess
import sys
import time

import psutil
import psycopg

from bench.common import ROOT
from bench.processor import _prepare


def _processed(url: str) -> int:
    with psycopg.connect(url) as conn:
        row = conn.execute("SELECT count(*) FROM public.leads WHERE status <> 'queued'").fetchone()
    return int(row[0]) if row else 0


def run(url: str, n: int) -> tuple[float, float, float]:
    """Process ``n`` queued leads with ``lqs worker --once``; return (RSS MiB at n/10,
    RSS MiB at the end, leads/s)."""
    print(f"memory: {n:,} leads through lqs worker --once")
    _prepare(url, n)
    started = time.perf_counter()
    process = subprocess.Popen(
        [sys.executable, "-m", "lqs", "worker", "--once", "--only", "process"],
        env={"LQS_DATABASE_URL": url, "PATH": "/usr/bin:/bin"},
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    watched = psutil.Process(process.pid)
    at_tenth = 0.0
    last = 0.0
    while process.poll() is None:
        try:
            last = watched.memory_info().rss / 2**20
        except psutil.NoSuchProcess:
            break
        if not at_tenth and _processed(url) >= n // 10:
            at_tenth = last
        time.sleep(0.5)
    elapsed = time.perf_counter() - started
    if process.returncode != 0:
        raise RuntimeError(process.stderr.read().decode() if process.stderr else "worker failed")
    print(f"  RSS at {n // 10:,}: {at_tenth:.1f} MiB, at {n:,}: {last:.1f} MiB")
    return at_tenth, last, n / elapsed
