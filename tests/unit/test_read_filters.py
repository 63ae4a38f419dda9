"""The listings' filters as a page's URL gives them (:func:`parse_query`) and the links
between a listing's pages: the API's parser, with blank form fields left out."""

from __future__ import annotations

from datetime import UTC, datetime
from uuid import UUID

import pytest

from lqs.api.errors import ApiError
from lqs.api.pages.listings import PAGE_SIZE, page_size, pager, path_id
from lqs.api.read_filters import (
    CommunicationQuery,
    LeadQuery,
    communication_filter,
    lead_filter,
    page_cursor,
    parse_query,
)
from lqs.db.tenant_reads import TenantCommunicationFilter, TenantLeadFilter
from lqs.domain.cursor import Cursor, encode_cursor
from lqs.domain.vocabulary import LeadStatus

LAST = UUID("00000000-0000-4000-8000-000000000001")


def test_blank_form_fields_are_no_filter() -> None:
    query = parse_query(LeadQuery, {"status": "", "q": "", "grade": "A"})

    assert lead_filter(query) == TenantLeadFilter(grade="A")


def test_a_pages_lead_filter_is_the_apis() -> None:
    query = parse_query(
        LeadQuery,
        {"status": "qualified", "min_score": "10", "received_from": "2026-12-01T00:00:00Z"},
    )

    assert query.status is LeadStatus.QUALIFIED
    assert lead_filter(query) == TenantLeadFilter(
        status="qualified", min_score=10, received_from=datetime(2026, 12, 1, tzinfo=UTC)
    )


def test_the_channel_is_called_type_in_the_url() -> None:
    query = parse_query(CommunicationQuery, {"type": "sms", "recipient": "+12015550123"})

    assert communication_filter(query) == TenantCommunicationFilter(
        channel="sms", recipient="+12015550123"
    )


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"status": "lost"}, "status"),
        ({"min_score": "many"}, "min_score"),
        ({"max_score": str(2**31)}, "max_score"),
        ({"received_to": "2026-12-01T00:00:00"}, "received_to"),  # no offset
        ({"grade": "A" * 21}, "grade"),
    ],
)
def test_a_value_of_the_wrong_kind_is_refused_naming_it(params: dict[str, str], field: str) -> None:
    with pytest.raises(ApiError) as refused:
        parse_query(LeadQuery, params)

    assert refused.value.status == 422
    assert refused.value.message.startswith(f"{field}: ")


def test_a_range_the_wrong_way_round_is_refused() -> None:
    query = parse_query(
        CommunicationQuery, {"created_from": "2026-12-02T00:00Z", "created_to": "2026-12-01T00:00Z"}
    )

    with pytest.raises(ApiError, match="created_from: is after created_to"):
        communication_filter(query)


def test_a_cursor_of_another_order_is_refused() -> None:
    by_score = encode_cursor(Cursor("score", 10, LAST))

    with pytest.raises(ApiError) as refused:
        page_cursor(by_score, "received", datetime)

    assert refused.value.code == "invalid_cursor"


@pytest.mark.parametrize("text", ["0", "201", "-1", "ten", "1.5"])
def test_a_page_size_outside_1_to_200_is_refused(text: str) -> None:
    with pytest.raises(ApiError, match="limit"):
        page_size(text)


def test_the_page_size_defaults() -> None:
    assert page_size(None) == PAGE_SIZE
    assert page_size("") == PAGE_SIZE
    assert page_size("200") == 200


def test_the_next_page_keeps_the_filters_and_adds_the_cursor() -> None:
    after = Cursor("received", datetime(2026, 12, 1, tzinfo=UTC), LAST)

    links = pager("/app/leads", {"status": "qualified", "q": "", "limit": "2"}, after)

    assert links.next_url == (f"/app/leads?status=qualified&limit=2&cursor={encode_cursor(after)}")
    assert links.first_url is None  # this is the first page


def test_a_later_page_links_to_the_first_with_the_same_filters() -> None:
    links = pager("/app/leads", {"status": "qualified", "cursor": "abc"}, None)

    assert links.next_url is None
    assert links.first_url == "/app/leads?status=qualified"
    assert pager("/app/leads", {"cursor": "abc"}, None).first_url == "/app/leads"


@pytest.mark.parametrize("text", ["", "x", "1234", "00000000-0000-4000-8000-00000000000g"])
def test_a_path_id_that_is_not_a_uuid_names_nothing(text: str) -> None:
    assert path_id(text) is None
