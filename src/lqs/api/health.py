"""``GET /healthz``: the process answers. ``GET /readyz``: it can serve requests now.

Orchestrators restart a process whose liveness probe fails and stop routing to one whose
readiness probe fails. ``/healthz`` therefore touches nothing but the event loop: a
database outage must not get healthy API processes restarted in a loop. ``/readyz``
answers 503 with ``Retry-After`` naming each failing check of
:class:`~lqs.api.readiness.Readiness`.
"""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import JSONResponse

from lqs.api.deps import ReadinessChecker
from lqs.api.limits import retry_after_header
from lqs.api.readiness import DATABASE_RETRY_AFTER

router = APIRouter()


@router.get("/healthz", include_in_schema=False)
async def healthz() -> JSONResponse:
    """200 while the process serves HTTP; never touches the database."""
    return JSONResponse({"status": "ok"})


@router.get("/readyz", include_in_schema=False)
async def readyz(readiness: ReadinessChecker) -> JSONResponse:
    """200 ``{"status": "ready", "checks": {...}}``, or 503 naming each failing check."""
    report = await readiness.report()
    if report.ready:
        return JSONResponse({"status": "ready", "checks": report.checks})
    names = list(report.failing)
    error = {
        "code": "not_ready",
        "message": "; ".join(f"{name}: {problem}" for name, problem in report.failing.items()),
        "field": names[0],
        "fields": [{"field": n, "message": p} for n, p in report.failing.items()],
    }
    return JSONResponse(
        {"status": "not_ready", "checks": report.checks, "error": error},
        status_code=503,
        headers=retry_after_header(DATABASE_RETRY_AFTER),
    )
