"""The API's one error shape: ``{"error": {"code", "message", "field"?, "fields"?}}``."""

from __future__ import annotations

from collections.abc import Sequence

from fastapi.responses import JSONResponse

from lqs.domain.leads import FieldError


def error_response(
    status_code: int,
    code: str,
    message: str,
    *,
    fields: Sequence[FieldError] = (),
    headers: dict[str, str] | None = None,
) -> JSONResponse:
    """A JSON error; with ``fields``, ``field`` names the first and ``fields`` lists them all."""
    error: dict[str, object] = {"code": code, "message": message}
    if fields:
        error["field"] = fields[0].field
        error["fields"] = [{"field": f.field, "message": f.message} for f in fields]
    return JSONResponse({"error": error}, status_code=status_code, headers=headers)
