"""Whether the API can serve requests now: the checks behind ``GET /readyz``.

:class:`Readiness` checks that the database answers through the API's own pool, that its
migrations are current (none pending, edited or missing) and, unless turned off, that
some worker beat recently. Its report is cached for a moment so that probes from many
places cost one query round.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field

import psycopg
import structlog
from psycopg_pool import AsyncConnectionPool

from lqs.db.errors import is_transient, log_fields
from lqs.db.health import readiness_problems

log = structlog.get_logger(__name__)

DATABASE_RETRY_AFTER = 5
"""Seconds a client is asked to wait (``Retry-After``) when the database is unavailable."""

OK = "ok"
NOT_REQUIRED = "not required"
NOT_CHECKED = "not checked: the database did not answer"


@dataclass(frozen=True)
class ReadinessOptions:
    """What ``/readyz`` requires, and how long it waits and caches."""

    require_worker: bool = True
    worker_max_age: float = 30.0
    """Seconds since a live worker's last heartbeat before the fleet counts as stale."""
    cache_seconds: float = 2.0
    timeout: float = 2.0
    """Seconds to wait for a pooled connection before the database counts as unreachable."""


@dataclass(frozen=True)
class ReadinessReport:
    """Every check's result (``ok``, ``not required`` or the problem) and the failing ones."""

    checks: dict[str, str]
    failing: dict[str, str] = field(default_factory=dict)

    @property
    def ready(self) -> bool:
        return not self.failing


class Readiness:
    """Runs the readiness checks on ``pool`` and caches the report for a moment."""

    def __init__(self, pool: AsyncConnectionPool, options: ReadinessOptions) -> None:
        self._pool = pool
        self._options = options
        self._lock = asyncio.Lock()
        self._cached: tuple[float, ReadinessReport] | None = None

    async def report(self) -> ReadinessReport:
        """The current report; concurrent callers share one check."""
        async with self._lock:
            now = time.monotonic()
            if self._cached and now - self._cached[0] < self._options.cache_seconds:
                return self._cached[1]
            report = await self._check()
            self._cached = (time.monotonic(), report)
            return report

    async def _check(self) -> ReadinessReport:
        options = self._options
        try:
            async with self._pool.connection(timeout=options.timeout) as conn:
                problems = await readiness_problems(
                    conn, worker_max_age=options.worker_max_age if options.require_worker else None
                )
        except psycopg.Error as exc:
            # The detail (host, port, server message) goes to the log, not to whoever
            # can reach this endpoint.
            what = "unreachable" if is_transient(exc) else "cannot be read"
            log.warning(
                "readiness_database",
                **log_fields(exc),
            )
            problem = f"{what} ({type(exc).__name__})"
            return ReadinessReport(
                {"database": problem, "migrations": NOT_CHECKED, "worker": NOT_CHECKED},
                {"database": problem},
            )
        checks = {"database": OK}
        failing = {}
        for name, found in problems.items():
            checks[name] = found or OK
            if found:
                failing[name] = found
        checks.setdefault("worker", NOT_REQUIRED)
        return ReadinessReport(checks, failing)
