"""What one delivery event does to a communication: the whole rule table, then properties.

The table lists every status × every event kind explicitly, so that a change to the rules in
``lqs.domain.events`` shows up here as a visible diff.
"""

from __future__ import annotations

import itertools
import random
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from lqs.domain.events import FINAL, DeliveryEvent, EventKind, Transition, transition
from lqs.domain.vocabulary import CommunicationStatus as Status

WHEN = datetime(2026, 3, 1, 12, 30, tzinfo=UTC)
NOTE = "sendgrid raw: why (code 42)"
"""What the rules write as the error for the event :func:`_event` builds."""

P, S, D = Status.PENDING, Status.SENT, Status.DELIVERED
F, B, R = Status.FAILED, Status.BOUNCED, Status.REJECTED
K = EventKind
T = Transition
NOTHING = Transition()

DELIVERED_NOW = T(D, delivered_at=WHEN)
FAILS = T(F, error_message=NOTE)
BOUNCES = T(B, error_message=NOTE, suppress="bounce")
REJECTS = T(R, error_message=NOTE, compliance_note=NOTE)

EXPECTED: dict[tuple[Status, EventKind], Transition] = {
    # pending: our record of the send may not have landed yet; events still apply.
    (P, K.ACCEPTED): T(S),
    (P, K.DELIVERED): DELIVERED_NOW,
    (P, K.DELAYED): NOTHING,
    (P, K.BOUNCED): BOUNCES,
    (P, K.SOFT_BOUNCED): NOTHING,
    (P, K.FAILED): FAILS,
    (P, K.DROPPED): REJECTS,
    (P, K.COMPLAINED): T(suppress="complaint"),
    (P, K.UNSUBSCRIBED): T(suppress="unsubscribe"),
    (P, K.ENGAGED): NOTHING,
    (P, K.OTHER): NOTHING,
    # sent
    (S, K.ACCEPTED): NOTHING,
    (S, K.DELIVERED): DELIVERED_NOW,
    (S, K.DELAYED): NOTHING,
    (S, K.BOUNCED): BOUNCES,
    (S, K.SOFT_BOUNCED): NOTHING,
    (S, K.FAILED): FAILS,
    (S, K.DROPPED): REJECTS,
    (S, K.COMPLAINED): T(suppress="complaint"),
    (S, K.UNSUBSCRIBED): T(suppress="unsubscribe"),
    (S, K.ENGAGED): NOTHING,
    (S, K.OTHER): NOTHING,
    # delivered: a late "sent" never downgrades it; a later hard bounce still counts.
    (D, K.ACCEPTED): NOTHING,
    (D, K.DELIVERED): NOTHING,
    (D, K.DELAYED): NOTHING,
    (D, K.BOUNCED): BOUNCES,
    (D, K.SOFT_BOUNCED): NOTHING,
    (D, K.FAILED): NOTHING,
    (D, K.DROPPED): NOTHING,
    (D, K.COMPLAINED): T(suppress="complaint"),
    (D, K.UNSUBSCRIBED): T(suppress="unsubscribe"),
    (D, K.ENGAGED): NOTHING,
    (D, K.OTHER): NOTHING,
    # failed, bounced, rejected: final; only suppressions still happen.
    (F, K.ACCEPTED): NOTHING,
    (F, K.DELIVERED): NOTHING,
    (F, K.DELAYED): NOTHING,
    (F, K.BOUNCED): T(suppress="bounce"),
    (F, K.SOFT_BOUNCED): NOTHING,
    (F, K.FAILED): NOTHING,
    (F, K.DROPPED): NOTHING,
    (F, K.COMPLAINED): T(suppress="complaint"),
    (F, K.UNSUBSCRIBED): T(suppress="unsubscribe"),
    (F, K.ENGAGED): NOTHING,
    (F, K.OTHER): NOTHING,
    (B, K.ACCEPTED): NOTHING,
    (B, K.DELIVERED): NOTHING,
    (B, K.DELAYED): NOTHING,
    (B, K.BOUNCED): T(suppress="bounce"),
    (B, K.SOFT_BOUNCED): NOTHING,
    (B, K.FAILED): NOTHING,
    (B, K.DROPPED): NOTHING,
    (B, K.COMPLAINED): T(suppress="complaint"),
    (B, K.UNSUBSCRIBED): T(suppress="unsubscribe"),
    (B, K.ENGAGED): NOTHING,
    (B, K.OTHER): NOTHING,
    (R, K.ACCEPTED): NOTHING,
    (R, K.DELIVERED): NOTHING,
    (R, K.DELAYED): NOTHING,
    (R, K.BOUNCED): T(suppress="bounce"),
    (R, K.SOFT_BOUNCED): NOTHING,
    (R, K.FAILED): NOTHING,
    (R, K.DROPPED): NOTHING,
    (R, K.COMPLAINED): T(suppress="complaint"),
    (R, K.UNSUBSCRIBED): T(suppress="unsubscribe"),
    (R, K.ENGAGED): NOTHING,
    (R, K.OTHER): NOTHING,
}

RANK = {P: 0, S: 1, D: 2}


def _event(
    kind: EventKind, *, occurred_at: datetime | None = WHEN, event_id: str = "e1"
) -> DeliveryEvent:
    return DeliveryEvent(
        provider="sendgrid",
        event_id=event_id,
        kind=kind,
        raw_type="raw",
        external_id="m1",
        occurred_at=occurred_at,
        reason="why",
        error_code="42",
    )


def _apply(status: Status, events: list[DeliveryEvent]) -> tuple[Status, datetime | None]:
    """Fold ``events`` over ``status`` as the caller does: (final status, delivered_at)."""
    delivered_at = None
    for event in events:
        change = transition(status, event)
        if change.status is not None:
            status = change.status
        if change.delivered_at is not None:
            delivered_at = change.delivered_at
    return status, delivered_at


def test_the_table_covers_every_status_and_every_kind() -> None:
    assert set(EXPECTED) == set(itertools.product(Status, EventKind))


@pytest.mark.parametrize(("current", "kind"), list(EXPECTED))
def test_transition_matches_the_table(current: Status, kind: EventKind) -> None:
    assert transition(current, _event(kind)) == EXPECTED[(current, kind)]


def test_delivered_before_sent_is_not_lost() -> None:
    assert _apply(P, [_event(K.DELIVERED), _event(K.ACCEPTED)]) == (D, WHEN)


def test_a_complaint_does_not_invent_a_delivery_time() -> None:
    complaint = transition(S, _event(K.COMPLAINED, occurred_at=WHEN + timedelta(days=2)))

    assert complaint.status is None
    assert complaint.delivered_at is None
    assert complaint.suppress == "complaint"


def test_a_delivery_without_a_provider_time_leaves_delivered_at_to_the_caller() -> None:
    assert transition(P, _event(K.DELIVERED, occurred_at=None)) == T(D)


def test_the_error_message_is_cut_to_2000_characters() -> None:
    event = DeliveryEvent("resend", "e", K.FAILED, "email.failed", "m", reason="x" * 5000)

    change = transition(S, event)

    assert change.error_message is not None
    assert len(change.error_message) == 2000
    assert change.error_message.startswith("resend email.failed: xxx")


def test_only_status_changes_count_as_changes() -> None:
    assert T(S).changes_status
    assert not T(suppress="complaint").changes_status


# Properties ------------------------------------------------------------------------------

instants = st.datetimes(
    min_value=datetime(2000, 1, 1), max_value=datetime(2100, 1, 1), timezones=st.just(UTC)
)
events = st.builds(
    DeliveryEvent,
    provider=st.sampled_from(["resend", "sendgrid", "twilio"]),
    event_id=st.text(min_size=1, max_size=8),
    kind=st.sampled_from(EventKind),
    raw_type=st.text(max_size=12),
    external_id=st.none() | st.text(max_size=8),
    occurred_at=st.none() | instants,
    reason=st.none() | st.text(max_size=30),
    error_code=st.none() | st.text(max_size=6),
)


@given(st.sampled_from(Status), st.lists(events, max_size=12))
def test_the_status_never_moves_backward(status: Status, history: list[DeliveryEvent]) -> None:
    for event in history:
        new = transition(status, event).status
        if new is not None:
            assert status not in FINAL, f"{status} is final but {event.kind} moved it to {new}"
            assert new in FINAL or RANK[new] > RANK[status]
            status = new


@given(st.sampled_from(sorted(FINAL)), events)
def test_a_final_status_never_changes(status: Status, event: DeliveryEvent) -> None:
    assert transition(status, event).status is None


@given(st.permutations([K.ACCEPTED, K.DELIVERED]), instants)
def test_sent_and_delivered_in_any_order_end_delivered(
    order: list[EventKind], delivered_at: datetime
) -> None:
    history = [_event(kind, occurred_at=delivered_at) for kind in order]

    assert _apply(P, history) == (D, delivered_at)


@given(
    st.lists(
        st.sampled_from([K.ACCEPTED, K.DELIVERED, K.DELAYED, K.ENGAGED, K.OTHER]),
        max_size=10,
    ).map(lambda kinds: [K.DELIVERED, *kinds]),
    st.randoms(use_true_random=False),
)
def test_repeated_and_reordered_events_still_end_delivered(
    kinds: list[EventKind], rnd: random.Random
) -> None:
    rnd.shuffle(kinds)

    status, delivered_at = _apply(P, [_event(kind) for kind in kinds])

    assert status is D
    assert delivered_at == WHEN


@given(st.sampled_from(Status), events)
def test_delivered_at_is_the_events_own_time(status: Status, event: DeliveryEvent) -> None:
    change = transition(status, event)

    if change.status is D:
        assert change.delivered_at == event.occurred_at
    else:
        assert change.delivered_at is None


@given(st.sampled_from(Status), events)
def test_a_move_to_failed_bounced_or_rejected_says_why(
    status: Status, event: DeliveryEvent
) -> None:
    change = transition(status, event)

    if change.status in FINAL:
        assert change.error_message
        assert change.error_message.startswith(f"{event.provider} {event.raw_type}: ")
    if change.status is R:
        assert change.compliance_note == change.error_message
