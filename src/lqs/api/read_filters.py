"""The filters of the tenant's listings, parsed once for the API and the dashboard.

``GET /v1/leads`` and ``/app/leads`` (and ``/v1/communications``, ``/app/communications``)
take the same query parameters: :class:`LeadQuery` and :class:`CommunicationQuery` declare
them (names, kinds, limits, descriptions for OpenAPI), :func:`lead_filter` and
:func:`communication_filter` check what a model cannot (text PostgreSQL cannot compare,
ranges the wrong way round) and make the database's filter, and :func:`page_cursor`
reads a listing's cursor. The API lets FastAPI validate the models (a 422 naming the
parameter); a page calls :func:`parse_query` and shows the refusal next to its form.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Annotated, Any, TypeVar

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, ValidationError

from lqs.api.errors import ApiError, invalid_parameter
from lqs.db.tenant_reads import TenantCommunicationFilter, TenantLeadFilter
from lqs.domain.cursor import Cursor, InvalidCursor, decode_cursor
from lqs.domain.leads import FieldError
from lqs.domain.text import unstorable_text
from lqs.domain.vocabulary import Channel, CommunicationStatus, LeadStatus

MAX_TEXT = 200
_INT4 = 2**31

Text = Annotated[str | None, Field(min_length=1, max_length=MAX_TEXT)]
Score = Annotated[int | None, Field(ge=-_INT4, lt=_INT4)]


class LeadQuery(BaseModel):
    """The query parameters that select leads."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    status: LeadStatus | None = Field(
        None, description="The lead's status: its outcome once scored"
    )
    grade: Annotated[str | None, Field(min_length=1, max_length=20)] = None
    min_score: Score = None
    max_score: Score = None
    source: Text = None
    campaign: Annotated[
        str | None, Field(min_length=1, max_length=MAX_TEXT, description="utm_campaign")
    ] = None
    received_from: AwareDatetime | None = Field(
        None, description="Received at or after (ISO 8601, with offset)"
    )
    received_to: AwareDatetime | None = Field(
        None, description="Received before (ISO 8601, with offset)"
    )
    q: Annotated[
        str | None,
        Field(
            min_length=1,
            max_length=MAX_TEXT,
            description="Text in the email, the name or the company (% and _ literal)",
        ),
    ] = None


class CommunicationQuery(BaseModel):
    """The query parameters that select communications (``type`` is the channel)."""

    model_config = ConfigDict(extra="ignore", frozen=True, populate_by_name=True)

    channel: Channel | None = Field(None, alias="type", description="email, sms, push or webhook")
    status: CommunicationStatus | None = None
    provider: Text = None
    campaign_id: Text = None
    template_id: Annotated[
        str | None,
        Field(
            min_length=1,
            max_length=MAX_TEXT,
            description="A template's name (any version) or name@version",
        ),
    ] = None
    recipient: Text = None
    created_from: AwareDatetime | None = Field(
        None, description="Created at or after (ISO 8601, with offset)"
    )
    created_to: AwareDatetime | None = Field(
        None, description="Created before (ISO 8601, with offset)"
    )


def _texts(**values: str | None) -> None:
    """Refuse text PostgreSQL cannot compare (a NUL, a lone surrogate): 400 naming it."""
    for name, value in values.items():
        problem = None if value is None else unstorable_text(value)
        if problem:
            raise invalid_parameter(name, f"contains {problem}")


def _range(low_name: str, low: Any, high_name: str, high: Any) -> None:
    if low is not None and high is not None and low > high:
        raise invalid_parameter(low_name, f"is after {high_name}")


def lead_filter(query: LeadQuery) -> TenantLeadFilter:
    """The leads ``query`` selects.

    Raises:
        ApiError: 400 naming the parameter: unstorable text, or a range the wrong way round.
    """
    _texts(grade=query.grade, source=query.source, campaign=query.campaign, q=query.q)
    _range("min_score", query.min_score, "max_score", query.max_score)
    _range("received_from", query.received_from, "received_to", query.received_to)
    return TenantLeadFilter(
        status=None if query.status is None else query.status.value,
        grade=query.grade,
        min_score=query.min_score,
        max_score=query.max_score,
        source=query.source,
        campaign=query.campaign,
        received_from=query.received_from,
        received_to=query.received_to,
        search=query.q,
    )


def communication_filter(query: CommunicationQuery) -> TenantCommunicationFilter:
    """The communications ``query`` selects.

    Raises:
        ApiError: 400 naming the parameter: unstorable text, or a range the wrong way round.
    """
    _texts(
        provider=query.provider,
        campaign_id=query.campaign_id,
        template_id=query.template_id,
        recipient=query.recipient,
    )
    _range("created_from", query.created_from, "created_to", query.created_to)
    return TenantCommunicationFilter(
        channel=None if query.channel is None else query.channel.value,
        status=None if query.status is None else query.status.value,
        provider=query.provider,
        campaign_id=query.campaign_id,
        template_id=query.template_id,
        recipient=query.recipient,
        created_from=query.created_from,
        created_to=query.created_to,
    )


def page_cursor(text: str | None, sort: str, key_type: type[datetime] | type[int]) -> Cursor | None:
    """The listing's cursor (None: the first page).

    Raises:
        ApiError: 400 ``invalid_cursor``, a cursor this service did not make for ``sort``.
    """
    if text is None:
        return None
    try:
        return decode_cursor(text, sort, key_type)
    except InvalidCursor as exc:
        raise invalid_parameter("cursor", str(exc), code="invalid_cursor") from None


Query = TypeVar("Query", bound=BaseModel)


def parse_query(model: type[Query], params: Mapping[str, str]) -> Query:
    """``params`` (a page's query string; blank values are left out, as a form sends an
    empty field) read as ``model``.

    Raises:
        ApiError: 422 naming the first parameter of the wrong kind.
    """
    given = {name: value for name, value in params.items() if value != ""}
    try:
        return model.model_validate(given)
    except ValidationError as exc:
        fields = [
            FieldError(".".join(str(part) for part in error["loc"]) or "query", error["msg"])
            for error in exc.errors()
        ]
        first = fields[0]
        raise ApiError(
            422, "invalid_parameter", f"{first.field}: {first.message}", fields=fields
        ) from None
