"""Resend (email): ``POST /emails`` with the communication id as ``Idempotency-Key``.

Resend keeps an idempotency key for 24 hours: a retry with the same key and payload
returns the first answer and sends nothing, so a crash between Resend's 200 and our
record cannot send twice as long as every retry happens inside that window (the default
retry horizon ends at 23 h). 409 ``concurrent_idempotent_requests`` (the first request
with the key is still in flight) is transient; 409 ``invalid_idempotent_request`` (same
key, different payload) is permanent.
"""

from __future__ import annotations

import json
from dataclasses import replace
from typing import Any

import httpx

from lqs.domain.delivery import ResendSettings
from lqs.providers.base import (
    OutboundMessage,
    ProviderConfigError,
    SendResult,
    Verdict,
    answer_fields,
    bearer,
    classify_status,
    parse_retry_after,
    refused,
    transport_failure,
)

_TRANSIENT_CODES = frozenset(
    {"concurrent_idempotent_requests", "rate_limit_exceeded", "application_error",
     "internal_server_error"}
)  # fmt: skip


def _tag(value: str) -> str:
    # Tag names and values allow ASCII letters, digits, "_" and "-" only, 256 at most.
    return "".join(
        ch if ch.isascii() and (ch.isalnum() or ch in "_-") else "_" for ch in value[:256]
    )


MAX_BATCH = 100
"""The most emails one ``POST /emails/batch`` may carry."""


class ResendProvider:
    """Sends email through Resend's REST API (or anything speaking it, like the simulator)."""

    name = "resend"
    channel = "email"

    def __init__(self, http: httpx.AsyncClient) -> None:
        self._http = http

    def request_body(self, settings: ResendSettings, message: OutboundMessage) -> dict[str, Any]:
        """The JSON Resend receives for ``message``."""
        if message.content is None or message.subject is None:
            raise ProviderConfigError("an email needs a subject and content")
        body: dict[str, Any] = {
            "from": settings.from_address,
            "to": [message.recipient],
            "subject": message.subject,
            "html": message.content,
            "tags": [
                {"name": "communication_id", "value": str(message.communication_id)},
                *(
                    {"name": _tag(k), "value": _tag(v)}
                    for k, v in message.metadata.items()
                    if k != "communication_id"
                ),
            ],
        }
        if message.headers:
            body["headers"] = dict(message.headers)
        return body

    async def send(self, settings: ResendSettings, message: OutboundMessage) -> SendResult:
        """POST the email; the communication id is the idempotency key.

        Raises:
            ProviderConfigError: the API key cannot be used.
        """
        authorization = bearer(settings.api_key.get_secret_value(), "resend.api_key")
        if not message.subject or not message.content:
            # Resend refuses an empty subject or body with a 422 anyway.
            return refused("invalid_message", "an email needs a subject and content")
        try:
            body = self.request_body(settings, message)
        except ProviderConfigError as exc:
            return refused("invalid_message", str(exc))
        try:
            response = await self._http.post(
                settings.base_url.rstrip("/") + "/emails",
                json=body,
                headers={
                    "Authorization": authorization,
                    "Idempotency-Key": str(message.communication_id),
                },
            )
        except httpx.HTTPError as exc:
            return transport_failure(exc)
        code, text, email_id = answer_fields(response, "resend", id_key="id", code_key="name")
        result = classify_status(
            response,
            error_code=code,
            error_message=text,
            external_id=email_id,
            transient_codes=_TRANSIENT_CODES,
        )
        if result.rate_limited and result.retry_after is None:
            # A success that used up the window carries no Retry-After; ratelimit-reset
            # says (in seconds) when the window reopens.
            result = replace(
                result, retry_after=parse_retry_after(response.headers.get("ratelimit-reset"))
            )
        return result

    @staticmethod
    def batch_body(bodies: list[dict[str, Any]]) -> str:
        """The JSON text of a batch of request bodies (see :meth:`request_body`)."""
        if not 1 <= len(bodies) <= MAX_BATCH:
            raise ProviderConfigError(f"a batch holds 1 to {MAX_BATCH} emails")
        return json.dumps(bodies, separators=(",", ":"), ensure_ascii=False)

    async def send_batch(
        self, settings: ResendSettings, body: str, count: int, key: str
    ) -> list[SendResult]:
        """POST a batch (:meth:`batch_body`, ``count`` emails) to ``/emails/batch``.

        ``key`` is the batch's ``Idempotency-Key``: the same body under the same key again
        returns the first answer and sends nothing, so a retry sends ``body`` exactly as
        first sent. Validation is permissive, so one bad email fails alone. Returns one
        result per email, in order.

        Raises:
            ProviderConfigError: the API key cannot be used.
        """
        authorization = bearer(settings.api_key.get_secret_value(), "resend.api_key")
        try:
            response = await self._http.post(
                settings.base_url.rstrip("/") + "/emails/batch",
                content=body.encode(),
                headers={
                    "Authorization": authorization,
                    "Content-Type": "application/json",
                    "Idempotency-Key": key,
                    "x-batch-validation": "permissive",
                },
            )
        except httpx.HTTPError as exc:
            return [transport_failure(exc)] * count
        code, text, _ = answer_fields(response, "resend", id_key="id", code_key="name")
        overall = classify_status(
            response, error_code=code, error_message=text, transient_codes=_TRANSIENT_CODES
        )
        if not overall.accepted:
            return [overall] * count
        try:
            answer = response.json()
            ids = [str(item["id"]) for item in answer.get("data") or []]
            errors = {int(e["index"]): str(e.get("message")) for e in answer.get("errors") or []}
        except (ValueError, KeyError, TypeError, AttributeError):
            ids, errors = [], {}
        if len(ids) + len(errors) != count:
            # An answer we cannot map to the emails: retry the same batch (same key).
            return [
                SendResult(
                    Verdict.TRANSIENT,
                    response.status_code,
                    response=overall.response,
                    error_code="unreadable_batch_answer",
                    error_message=f"resend batch answer lists {len(ids)} ids and "
                    f"{len(errors)} errors for {count} emails",
                )
            ] * count
        accepted = iter(ids)
        results = []
        for index in range(count):
            if index in errors:
                results.append(
                    SendResult(
                        Verdict.PERMANENT,
                        response.status_code,
                        error_code="validation_error",
                        error_message=f"resend batch email {index}: {errors[index]}",
                    )
                )
                continue
            email_id = next(accepted)
            results.append(
                SendResult(
                    Verdict.ACCEPTED,
                    response.status_code,
                    external_id=email_id,
                    response={"id": email_id, "batch": key},
                    rate_limited=overall.rate_limited,
                    retry_after=overall.retry_after,
                )
            )
        return results
