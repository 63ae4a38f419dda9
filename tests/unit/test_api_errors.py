"""ApiError is answered in the API's one error shape, byte for byte."""

from __future__ import annotations

import json

from fastapi.exceptions import RequestValidationError
from starlette.requests import Request

from lqs.api.errors import ApiError, render_api_error, render_validation_error
from lqs.domain.leads import FieldError

REQUEST = Request({"type": "http", "method": "POST", "path": "/", "headers": []})


async def test_an_error_without_fields_has_only_code_and_message() -> None:
    response = await render_api_error(
        REQUEST, ApiError(429, "rate_limited", "slow down", headers={"Retry-After": "3"})
    )

    assert response.status_code == 429
    assert response.headers["Retry-After"] == "3"
    assert response.body == b'{"error":{"code":"rate_limited","message":"slow down"}}'


async def test_field_names_the_first_of_the_fields() -> None:
    fields = [FieldError("email", "not an email"), FieldError("phone", "too short")]

    response = await render_api_error(
        REQUEST, ApiError(422, "invalid_lead", "2 bad", fields=fields)
    )

    assert response.status_code == 422
    assert json.loads(response.body) == {
        "error": {
            "code": "invalid_lead",
            "message": "2 bad",
            "field": "email",
            "fields": [
                {"field": "email", "message": "not an email"},
                {"field": "phone", "message": "too short"},
            ],
        }
    }


async def test_parameter_validation_names_every_parameter_without_its_location() -> None:
    exc = RequestValidationError(
        [
            {"loc": ("query", "limit"), "msg": "Input should be less than or equal to 200"},
            {"loc": ("path", "lead_id"), "msg": "bad"},
            {"loc": ("body", "leads", 0, "email"), "msg": "not an email"},
        ]
    )

    response = await render_validation_error(REQUEST, exc)

    assert response.status_code == 422
    error = json.loads(response.body)["error"]
    assert error["code"] == "invalid_parameter"
    assert error["message"] == "limit: Input should be less than or equal to 200"
    assert [f["field"] for f in error["fields"]] == ["limit", "lead_id", "leads.0.email"]
