"""The API's one error shape: ``{"error": {"code", "message", "field"?, "fields"?}}``.

A handler or a dependency refuses a request by raising :class:`ApiError`;
:func:`render_api_error`, registered in :func:`lqs.api.app.create_app`, answers it;
:func:`render_validation_error` answers FastAPI's own parameter validation the same way.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from fastapi import Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse

from lqs.domain.leads import FieldError
from lqs.errors import LqsError

ERROR_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "error": {
            "type": "object",
            "properties": {
                "code": {"type": "string"},
                "message": {"type": "string"},
                "field": {"type": "string"},
                "fields": {"type": "array", "items": {"type": "object"}},
            },
        }
    },
}
"""The error shape, as the OpenAPI document describes it."""


def error_responses(described: Iterable[tuple[int, str]]) -> dict[int | str, dict[str, Any]]:
    """A route's OpenAPI ``responses`` for its errors: each status with what it means."""
    return {
        status: {"description": text, "content": {"application/json": {"schema": ERROR_SCHEMA}}}
        for status, text in described
    }


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

    def response(self) -> JSONResponse:
        """This error as the API answers it, in the module's one shape."""
        error: dict[str, object] = {"code": self.code, "message": self.message}
        if self.fields:
            error["field"] = self.fields[0].field
            error["fields"] = [{"field": f.field, "message": f.message} for f in self.fields]
        return JSONResponse({"error": error}, status_code=self.status, headers=self.headers)


async def render_api_error(request: Request, exc: Exception) -> JSONResponse:
    """The exception handler for :class:`ApiError`."""
    if not isinstance(exc, ApiError):  # registered for ApiError only
        raise exc
    return exc.response()


def _parameter(location: Sequence[object]) -> str:
    """The parameter a validation error's location names: ``("query", "limit")`` → ``limit``."""
    parts = [str(part) for part in location]
    if len(parts) > 1 and parts[0] in ("query", "path", "header", "cookie", "body"):
        parts = parts[1:]
    return ".".join(parts) or "request"


async def render_validation_error(request: Request, exc: Exception) -> JSONResponse:
    """The exception handler for FastAPI's ``RequestValidationError`` (a query or path
    parameter of the wrong kind): 422 in the one shape, naming every parameter at fault."""
    if not isinstance(exc, RequestValidationError):  # registered for it only
        raise exc
    fields = [FieldError(_parameter(e.get("loc", ())), str(e.get("msg", ""))) for e in exc.errors()]
    first = f"{fields[0].field}: {fields[0].message}" if fields else "the request is invalid"
    return ApiError(422, "invalid_parameter", first, fields=fields).response()


def invalid_parameter(
    field: str, message: str, status: int = 400, code: str = "invalid_parameter"
) -> ApiError:
    """The refusal of one query parameter or form field, naming it."""
    return ApiError(status, code, f"{field}: {message}", fields=[FieldError(field, message)])
