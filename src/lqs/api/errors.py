"""The API's one error shape: ``{"error": {"code", "message", "field"?, "fields"?}}``.

A handler or a dependency refuses a request by raising :class:`ApiError`;
:func:`render_api_error`, registered in :func:`lqs.api.app.create_app`, answers it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from fastapi import Request
from fastapi.responses import JSONResponse

from lqs.domain.leads import FieldError
from lqs.errors import LqsError


class ApiError(LqsError):
    """Raised to answer the request with an error: ``status``, a machine-readable ``code``
    (``invalid_api_key``, ``invalid_signature``, ...), a message a person can act on, the
    fields at fault (``field`` names the first, ``fields`` lists them all) and any headers
    (``Retry-After``, ``WWW-Authenticate``)."""

    def __init__(
        self,
        status: int,
        code: str,
        message: str,
        *,
        fields: Sequence[FieldError] = (),
        headers: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(f"{status} {code}: {message}")
        self.status = status
        self.code = code
        self.message = message
        self.fields = tuple(fields)
        self.headers = dict(headers) if headers else None


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


async def render_api_error(request: Request, exc: Exception) -> JSONResponse:
    """The exception handler for :class:`ApiError`."""
    if not isinstance(exc, ApiError):  # registered for ApiError only
        raise exc
    return error_response(exc.status, exc.code, exc.message, fields=exc.fields, headers=exc.headers)
