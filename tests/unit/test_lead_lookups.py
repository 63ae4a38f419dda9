"""Naming a lead or a communication by the first characters of its id; a lead's grades;
what ``--search`` matches; whether a lead processed again already has a message."""

from __future__ import annotations

from uuid import UUID

import pytest
import typer

from lqs.cli._common import IdPrefix, id_or_prefix, one_with_prefix
from lqs.db.lead_views import like_pattern
from lqs.domain.notifications import PlannedMessage, message_key, recorded_before
from lqs.domain.scoring import grade_names
from lqs.domain.vocabulary import Channel, ConsentStatus

ID = UUID("abcdef01-2345-4678-9abc-def012345678")


def test_a_full_id_is_taken_as_it_is() -> None:
    assert id_or_prefix(str(ID), "lead") == ID
    assert id_or_prefix(str(ID).upper(), "lead") == ID


@pytest.mark.parametrize(
    ("prefix", "low", "high"),
    [
        ("abcd", "abcd0000-0000-0000-0000-000000000000", "abcdffff-ffff-ffff-ffff-ffffffffffff"),
        ("ABCDEF01-", "abcdef01-0000-0000-0000-000000000000",
         "abcdef01-ffff-ffff-ffff-ffffffffffff"),
        ("abcdef01-23", "abcdef01-2300-0000-0000-000000000000",
         "abcdef01-23ff-ffff-ffff-ffffffffffff"),
    ],
)  # fmt: skip
def test_a_prefix_is_the_range_of_ids_it_starts(prefix: str, low: str, high: str) -> None:
    parsed = id_or_prefix(prefix, "lead")
    assert parsed == IdPrefix(prefix.lower(), UUID(low), UUID(high))
    assert isinstance(parsed, IdPrefix)
    assert parsed.low <= ID <= parsed.high  # each of these starts ID


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("abc", "the lead id must be a UUID or its first characters (at least 4) or its email"),
        (
            "not-a-uuid",
            "the lead id must be a UUID or its first characters (at least 4) or its email",
        ),
        ("abcd-ef", "no lead id starts with 'abcd-ef'"),  # a dash where no UUID has one
        ("abcdef012", "no lead id starts with 'abcdef012'"),  # a digit where the dash goes
    ],
)
def test_what_cannot_start_an_id_is_one_line(
    value: str, message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(typer.Exit) as exited:
        id_or_prefix(value, "lead", also="or its email")
    assert exited.value.exit_code == 1
    assert capsys.readouterr().err == f"error: {message}\n"


def test_one_id_or_why_not() -> None:
    prefix = IdPrefix("abcd", ID, ID)
    other = UUID("abcdef02-0000-4000-8000-000000000000")
    assert one_with_prefix(prefix, [ID], "lead") == ID
    assert one_with_prefix(prefix, [], "lead") == "no lead id starts with 'abcd'"
    assert one_with_prefix(prefix, [ID, other], "lead") == f"'abcd' starts {ID}, {other}: give more"
    assert str(one_with_prefix(prefix, [ID] * 5, "lead")).endswith(" and more: give more")


def test_grades_are_the_rule_sets_bands_then_the_lowest() -> None:
    assert grade_names(None) == ("A", "B", "C", "D")
    assert grade_names({"rules": []}) == ("A", "B", "C", "D")
    assert grade_names({"grades": {"Hot": 70, "Warm": 40}}) == ("Hot", "Warm", "D")
    assert grade_names({"grades": {"D": 90, "E": 10}}) == ("D", "E")


@pytest.mark.parametrize(
    ("text", "pattern"),
    [("ann", "%ann%"), ("50%", "%50\\%%"), ("a_b", "%a\\_b%"), ("c:\\x", "%c:\\\\x%")],
)
def test_search_text_is_matched_literally(text: str, pattern: str) -> None:
    assert like_pattern(text) == pattern


def _message(rejection: str | None = None, recipient: str = "Ann@Corp.example") -> PlannedMessage:
    return PlannedMessage(
        channel=Channel.EMAIL,
        recipient=recipient,
        template_id="lead_acknowledgement",
        priority=5,
        campaign_id=None,
        to_lead=True,
        consent_status=ConsentStatus.GRANTED,
        rejection=rejection,
    )


KEY = message_key("email", " ann@corp.example", "lead_acknowledgement@v3")


@pytest.mark.parametrize("status", ["pending", "sent", "delivered", "failed", "bounced"])
def test_a_message_recorded_before_is_not_recorded_again_whatever_became_of_it(
    status: str,
) -> None:
    assert recorded_before(_message(), {KEY: frozenset({status})})
    assert recorded_before(_message(), {KEY: frozenset({"rejected", status})})


def test_a_message_only_ever_rejected_is_recorded_again_once_it_may_go() -> None:
    earlier = {KEY: frozenset({"rejected"})}
    assert not recorded_before(_message(), earlier)
    assert recorded_before(_message(rejection="lead consent is denied"), earlier)


def test_another_recipient_or_template_is_another_message() -> None:
    earlier = {KEY: frozenset({"sent"})}
    assert not recorded_before(_message(recipient="bo@corp.example"), earlier)
    assert not recorded_before(
        _message(), {message_key("email", "ann@corp.example", "x"): frozenset({"sent"})}
    )
    assert not recorded_before(_message(), {})
