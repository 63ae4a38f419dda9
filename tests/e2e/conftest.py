"""Processes as a user runs them: ``lqs serve``, ``lqs worker``, the CLI, over HTTP."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from lqs.simulator import SimulatorConfig, SimulatorControl, running_simulator
from tests.conftest import DatabaseFactory, pooler_env


def lqs_env(database_url: str, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("LQS_")}
    env["LQS_DATABASE_URL"] = database_url
    env.update(pooler_env(database_url))  # CI's third pass: through PgBouncer
    env.update(extra)
    return env


def run_lqs(
    database_url: str, *args: str, cwd: Path | None = None, **extra: str
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "lqs", *args],
        env=lqs_env(database_url, **extra),
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class Server:
    base_url: str
    process: subprocess.Popen[str]


@pytest.fixture
def pipeline_db(make_migrated_database: DatabaseFactory) -> str:
    """A fresh migrated database for the test (a copy of the session's migrated one)."""
    return make_migrated_database()


@pytest.fixture
def api_server(pipeline_db: str) -> Iterator[Server]:
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "lqs", "serve", "--port", str(port)],
        env=lqs_env(pipeline_db),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    base_url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while True:
        try:
            if httpx.get(f"{base_url}/healthz", timeout=1).status_code == 200:
                break
        except httpx.TransportError:
            pass
        if process.poll() is not None or time.monotonic() > deadline:
            process.kill()
            _, err = process.communicate()
            raise RuntimeError(f"lqs serve did not start: {err}")
        time.sleep(0.05)
    yield Server(base_url, process)
    process.terminate()
    process.communicate(timeout=30)


@pytest.fixture(scope="module")
def simulator() -> Iterator[str]:
    with running_simulator(SimulatorConfig(seed=7)) as base_url:
        yield base_url


@pytest.fixture
def control(simulator: str) -> Iterator[SimulatorControl]:
    with SimulatorControl(simulator) as ctl:
        ctl.configure(SimulatorConfig(seed=7))
        ctl.reset()
        yield ctl
