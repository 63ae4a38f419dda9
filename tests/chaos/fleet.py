"""The harness's processes (simulator, API, workers) and the orchestrator that watches them.

Processes are started with the demo's :class:`~lqs.cli.processes.ProcessGroup` (one process
group, one log file each). Each process gets its own ``application_name`` in its database
URL, so the harness can tell its sessions apart in ``pg_stat_activity``.

The orchestrator does only what a real one (systemd, Kubernetes) does: a process that died
is started again and counted. How it died decides what the run reports:

- killed by the harness (a fault): *restarted by the orchestrator*, fine;
- exited by itself (any exit code): a failure: a daemon must survive what the harness does;
- alive but making no progress for ``hang_after`` seconds (*hung*): a failure; the harness
  kills and replaces it, as a person would (*restarted by hand*), so the run can go on.

Progress of a worker is any of: a new line in its log, a new query or session in
``pg_stat_activity`` under its ``application_name``, or a newer ``worker_heartbeats.beat_at``
for its pid. An idle worker polls the database every ``LQS_WORKER_POLL_INTERVAL`` (0.5 s
here), so a healthy one shows progress many times a second.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from lqs.cli.processes import ProcessGroup

Marker = tuple[Any, ...]
"""What the harness last saw of a process; a change means it made progress."""


@dataclass
class Incarnation:
    """One OS process in a role's slot (``worker-2.3``: slot 2 of the workers, third start)."""

    name: str
    role: str
    slot: int
    application_name: str
    proc: subprocess.Popen[bytes]
    log: Path
    started_at: float
    last_progress: float
    marker: Marker = ()
    killed_by_harness: bool = False
    ended: str | None = None

    @property
    def alive(self) -> bool:
        """Whether the process is still running."""
        return self.proc.poll() is None

    def tail(self, lines: int = 4) -> str:
        """The last lines of its log, on one line."""
        try:
            text = self.log.read_text(errors="replace").strip().splitlines()
        except OSError:
            return ""
        return " | ".join(line.strip()[:200] for line in text[-lines:])


@dataclass
class FleetTally:
    """What happened to the processes during the run."""

    harness_kills: int = 0
    orchestrator_restarts: int = 0
    self_exits: list[str] = field(default_factory=list)
    hung: list[str] = field(default_factory=list)
    restarts_by_hand: int = 0
    killed_at_teardown: list[str] = field(default_factory=list)

    def self_exits_of(self, role: str) -> list[str]:
        """The self-exits of one role (``worker``, ``api``, ``simulator``)."""
        return [line for line in self.self_exits if line.startswith(role)]


class Fleet:
    """The processes of one run, and their supervision (see the module docstring)."""

    def __init__(
        self, logs: Path, base_env: Mapping[str, str], database_url: Callable[[str], str]
    ) -> None:
        """``database_url(application_name)`` is the URL a process with that name uses."""
        self.group = ProcessGroup(logs, base_env)
        self.base_env = dict(base_env)
        self.database_url = database_url
        self.host = socket.gethostname()
        self.current: dict[tuple[str, int], Incarnation] = {}
        self.history: list[Incarnation] = []
        self.args: dict[tuple[str, int], tuple[str, ...]] = {}
        self.tally = FleetTally()

    def start(self, role: str, slot: int, *args: str) -> Incarnation:
        """Start ``lqs ARGS`` in ``role``'s ``slot`` (a later start replaces the previous one)."""
        self.args[role, slot] = args
        starts = sum(1 for inc in self.history if (inc.role, inc.slot) == (role, slot))
        name = f"{role}-{slot}.{starts + 1}" if role == "worker" else f"{role}.{starts + 1}"
        application = f"chaos-{name}"
        # Each process has its own application_name in its URL, to find its sessions.
        env = {**self.base_env, "LQS_DATABASE_URL": self.database_url(application)}
        self.group.start(name, *args, env=env)
        proc = self.group.procs[-1][1]
        now = time.monotonic()
        incarnation = Incarnation(
            name, role, slot, application, proc, self.group.logs / f"{name}.log", now, now
        )
        self.current[(role, slot)] = incarnation
        self.history.append(incarnation)
        return incarnation

    def live(self, role: str) -> list[Incarnation]:
        """The running processes of ``role``."""
        return [inc for (r, _), inc in sorted(self.current.items()) if r == role and inc.alive]

    def kill(self, incarnation: Incarnation) -> None:
        """SIGKILL one process as a fault (the orchestrator then replaces it)."""
        incarnation.killed_by_harness = True
        self.tally.harness_kills += 1
        with contextlib.suppress(ProcessLookupError):
            os.kill(incarnation.proc.pid, signal.SIGKILL)
        incarnation.proc.wait()

    def observe(self, markers: Mapping[str, Marker]) -> None:
        """Record progress: ``markers`` maps an ``application_name`` to what was seen of it."""
        now = time.monotonic()
        for incarnation in self.current.values():
            marker = (_log_size(incarnation.log), markers.get(incarnation.application_name))
            if marker != incarnation.marker:
                incarnation.marker = marker
                incarnation.last_progress = now

    def supervise(self, hang_after: float) -> None:
        """Replace dead processes and hung workers, counting each case (module docstring)."""
        now = time.monotonic()
        for (role, slot), incarnation in list(self.current.items()):
            code = incarnation.proc.poll()
            if code is not None:
                if incarnation.killed_by_harness:
                    incarnation.ended = "killed by the harness"
                    self.tally.orchestrator_restarts += 1
                else:
                    incarnation.ended = f"exited by itself with {code}"
                    self.tally.self_exits.append(
                        f"{incarnation.name} exited by itself with {code} after "
                        f"{now - incarnation.started_at:.1f} s: {incarnation.tail()}"
                    )
                    self.tally.orchestrator_restarts += 1
                self.start(role, slot, *self.args[role, slot])
            elif role == "worker" and now - incarnation.last_progress > hang_after:
                incarnation.ended = "hung"
                self.tally.hung.append(
                    f"{incarnation.name}: alive, no progress for "
                    f"{now - incarnation.last_progress:.0f} s: {incarnation.tail()}"
                )
                incarnation.killed_by_harness = True  # by hand: not a fault of the schedule
                incarnation.proc.kill()
                incarnation.proc.wait()
                self.tally.restarts_by_hand += 1
                self.start(role, slot, *self.args[role, slot])

    def stop(self) -> None:
        """SIGTERM every process, SIGKILL what has not stopped within 15 s (counted)."""
        for incarnation in self.current.values():
            incarnation.killed_by_harness = True
        self.tally.killed_at_teardown = self.group.stop()


def _log_size(path: Path) -> int:
    try:
        return path.stat().st_size
    except OSError:
        return -1
