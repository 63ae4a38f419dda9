"""What an outcome sends, and when a message must be rejected instead."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import ValidationError

from lqs.domain.clients import parse_client_settings
from lqs.domain.notifications import plan_messages, reject_suppressed
from lqs.domain.vocabulary import Channel, ConsentStatus, LeadStatus

LEAD: dict[str, Any] = {
    "email": "ann@corp.example",
    "phone": "+12015550123",
    "consent_status": "granted",
}


def _settings(**extra: Any) -> Any:
    return parse_client_settings({"notification_email": "sales@client.example", **extra})


def test_default_settings_email_the_client_about_qualified_leads_only() -> None:
    settings = _settings()
    [message] = plan_messages(LeadStatus.QUALIFIED, settings, LEAD)
    assert message.recipient == "sales@client.example"
    assert message.template_id == "lead_qualified"
    assert message.priority == 2
    assert message.rejection is None
    assert plan_messages(LeadStatus.NURTURE, settings, LEAD) == []
    assert plan_messages(LeadStatus.DISQUALIFIED, settings, LEAD) == []


def test_no_notification_address_plans_nothing() -> None:
    assert plan_messages(LeadStatus.QUALIFIED, parse_client_settings({}), LEAD) == []


def _ack_settings() -> Any:
    return _settings(
        notifications={
            "qualified": [
                {"channel": "email", "to": "lead", "template": "lead_acknowledgement"},
                {"channel": "sms", "to": "lead", "template": "lead_qualified_sms"},
            ]
        }
    )


@pytest.mark.parametrize("consent", ["denied", "unknown", "withdrawn"])
def test_messages_to_a_lead_without_granted_consent_are_rejected(consent: str) -> None:
    messages = plan_messages(
        LeadStatus.QUALIFIED, _ack_settings(), {**LEAD, "consent_status": consent}
    )
    assert [m.consent_status for m in messages] == [ConsentStatus(consent)] * 2
    assert all(m.rejection and consent in m.rejection for m in messages)


def test_messages_to_a_consenting_lead_go_to_their_address_and_phone() -> None:
    messages = plan_messages(LeadStatus.QUALIFIED, _ack_settings(), LEAD)
    assert [(m.channel, m.recipient, m.rejection) for m in messages] == [
        (Channel.EMAIL, "ann@corp.example", None),
        (Channel.SMS, "+12015550123", None),
    ]


def test_suppressed_recipient_is_rejected_whatever_the_consent() -> None:
    messages = plan_messages(
        LeadStatus.QUALIFIED, _ack_settings(), LEAD, frozenset({("email", "ann@corp.example")})
    )
    assert "suppression" in (messages[0].rejection or "")
    assert messages[1].rejection is None


def test_suppression_matches_emails_case_insensitively() -> None:
    messages = plan_messages(
        LeadStatus.QUALIFIED,
        _settings(notification_email="Sales@Client.example"),
        LEAD,
        frozenset({("email", "sales@client.example")}),
    )
    assert messages[0].rejection is not None


@pytest.mark.parametrize("consent", ["granted", "denied"])
def test_suppressions_applied_after_planning_reject_what_planning_with_them_rejects(
    consent: str,
) -> None:
    lead = {**LEAD, "consent_status": consent}
    settings = _settings(
        notifications={
            "qualified": [
                {"channel": "email", "to": "lead", "template": "lead_acknowledgement"},
                {"channel": "sms", "to": "lead", "template": "lead_qualified_sms"},
                {"channel": "email", "to": "client", "template": "lead_qualified"},
            ]
        }
    )
    suppressed = frozenset({("email", "ann@corp.example"), ("email", "sales@client.example")})

    planned = plan_messages(LeadStatus.QUALIFIED, settings, lead)
    rejected = reject_suppressed(planned, suppressed)

    assert rejected == plan_messages(LeadStatus.QUALIFIED, settings, lead, suppressed)
    assert [m.rejection is None for m in rejected] == [False, consent == "granted", False]
    assert reject_suppressed(planned, frozenset()) == planned


@pytest.mark.parametrize(
    "bad",
    [
        {"time_zone": "Mars/Olympus"},
        {"default_region": "usa"},
        {"notifications": {"qualified": [{"channel": "fax", "to": "client", "template": "x"}]}},
        {"notifications": {"qualified": [{"channel": "email", "to": "client", "template": "X!"}]}},
        {"notifications": {"qualified": [{"channel": "email", "to": "boss", "template": "x"}]}},
    ],
)
def test_invalid_client_settings_are_refused(bad: dict[str, Any]) -> None:
    with pytest.raises(ValidationError):
        parse_client_settings(bad)
