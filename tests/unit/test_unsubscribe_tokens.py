"""One-click unsubscribe tokens: what they name, and every way a token is refused."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import pytest

from lqs.domain.unsubscribe import InvalidUnsubscribeToken, UnsubscribeLinks

SECRET = "fake-unsubscribe-secret-for-unit-tests-0001"
CREATED = datetime(2026, 1, 10, 8, 0, tzinfo=UTC)
TTL = timedelta(days=30)
CLIENT, LEAD, COMM = uuid.uuid4(), uuid.uuid4(), uuid.uuid4()


def _links(secret: str = SECRET, base_url: str = "https://lqs.example/") -> UnsubscribeLinks:
    return UnsubscribeLinks(secret, base_url, TTL)


def _token(links: UnsubscribeLinks | None = None, created_at: datetime = CREATED) -> str:
    return (links or _links()).token(
        client_id=CLIENT,
        lead_id=LEAD,
        communication_id=COMM,
        channel="email",
        recipient="ann@buyer.example",
        created_at=created_at,
    )


def test_a_token_reads_back_as_what_it_names() -> None:
    found = _links().read(_token(), now=CREATED + timedelta(days=1))

    assert (found.client_id, found.lead_id, found.communication_id) == (CLIENT, LEAD, COMM)
    assert (found.channel, found.recipient) == ("email", "ann@buyer.example")
    assert found.expires_at == CREATED + TTL


def test_a_fresh_token_reads_with_the_clock() -> None:
    token = _token(created_at=datetime.now(UTC))

    assert _links().read(token).communication_id == COMM


def test_the_same_inputs_give_the_same_token() -> None:
    assert _token() == _token()
    assert _token() == _token(_links(base_url="https://other.example"))


def test_the_headers_point_at_the_base_url_with_one_click_post() -> None:
    token = _token()

    assert _links().headers(token) == {
        "List-Unsubscribe": f"<https://lqs.example/u/{token}>",
        "List-Unsubscribe-Post": "List-Unsubscribe=One-Click",
    }


@pytest.mark.parametrize("segment", [1, 2], ids=["claims", "signature"])
def test_a_tampered_token_is_refused(segment: int) -> None:
    parts = _token().split(".")
    # A character in the middle: every one of its bits counts (unlike the last one's).
    text = parts[segment]
    i = len(text) // 2
    parts[segment] = text[:i] + ("A" if text[i] != "A" else "B") + text[i + 1 :]

    with pytest.raises(InvalidUnsubscribeToken, match="not valid"):
        _links().read(".".join(parts), now=CREATED)


@pytest.mark.parametrize("token", ["", "not-a-token", "a.b.c", "ey.ey.ey"])
def test_a_malformed_token_is_refused(token: str) -> None:
    with pytest.raises(InvalidUnsubscribeToken, match="not valid"):
        _links().read(token, now=CREATED)


def test_a_token_signed_with_another_secret_is_refused() -> None:
    other = _links("another-fake-secret-for-unit-tests-000002")

    with pytest.raises(InvalidUnsubscribeToken, match="not valid"):
        _links().read(_token(other), now=CREATED)


def test_a_token_expires_ttl_after_the_communication_was_created() -> None:
    token = _token()
    links = _links()

    assert links.read(token, now=CREATED + TTL - timedelta(seconds=1)).lead_id == LEAD
    with pytest.raises(InvalidUnsubscribeToken, match="expired"):
        links.read(token, now=CREATED + TTL)
    with pytest.raises(InvalidUnsubscribeToken, match="expired"):
        links.read(_token(created_at=datetime.now(UTC) - TTL - timedelta(minutes=1)))


def test_a_short_secret_is_refused() -> None:
    with pytest.raises(ValueError, match="32"):
        UnsubscribeLinks("x" * 31, "https://lqs.example", TTL)
