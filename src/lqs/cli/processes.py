"""Child ``lqs`` processes (the simulator, the API, the worker) in one process group.

Used by ``lqs demo`` and by the end-to-end benchmarks: each child writes to a log file of
its own, and all are stopped together (SIGTERM to the group, then SIGKILL).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Mapping
from pathlib import Path


class ProcessGroup:
    """Child processes in one process group, each writing to a log file; stopped together."""

    def __init__(self, logs: Path, env: Mapping[str, str]) -> None:
        self.logs = logs
        self.env = dict(env)
        self.procs: list[tuple[str, subprocess.Popen[bytes]]] = []
        self.group: int | None = None

    def start(self, name: str, *args: str, env: Mapping[str, str] | None = None) -> None:
        """Start ``lqs ARGS`` as ``name``, with the group's environment or ``env``."""
        with (self.logs / f"{name}.log").open("wb") as log:
            proc = subprocess.Popen(
                [sys.executable, "-m", "lqs", *args],
                env=dict(env) if env is not None else self.env,
                # Not the repository: a developer's .env there must not change the settings.
                cwd=self.logs,
                stdout=log,
                stderr=subprocess.STDOUT,
                process_group=0 if self.group is None else self.group,
            )
        if self.group is None:
            self.group = proc.pid
        self.procs.append((name, proc))

    def check(self) -> None:
        """Raises RuntimeError if a child has exited."""
        for name, proc in self.procs:
            if proc.poll() is not None:
                raise RuntimeError(f"lqs {name} exited with {proc.returncode}: {self.tail(name)}")

    def tail(self, name: str, lines: int = 5) -> str:
        text = (self.logs / f"{name}.log").read_text(errors="replace").strip().splitlines()
        return " | ".join(text[-lines:])

    def stop(self) -> list[str]:
        """SIGTERM the group, wait, SIGKILL what is left; the names that had to be killed."""
        if self.group is None:
            return []
        with_term = True
        try:
            os.killpg(self.group, signal.SIGTERM)
        except ProcessLookupError:
            with_term = False
        deadline = time.monotonic() + 15
        killed = []
        for name, proc in self.procs:
            try:
                proc.wait(timeout=max(0.1, deadline - time.monotonic()) if with_term else 0.1)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
                killed.append(name)
        return killed
