"""What an outcome sends, and when a message must be rejected instead."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import ValidationError

from lqs.domain.clients import NotificationRule, parse_client_settings
from lqs.domain.default_templates import DEFAULT_TEMPLATES
from lqs.domain.delivery import parse_delivery_settings
from lqs.domain.notifications import (
    plan_messages,
    reject_suppressed,
    staff_channel_problems,
    staff_rules,
)
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


# ---------------------------------------------------------------- rules to the staff

DELIVERY_ALL = parse_delivery_settings(
    {
        "resend": {"api_key": "re_x", "from_address": "leads@acme.example"},
        "twilio": {"account_sid": "AC1", "auth_token": "t", "from_number": "+12015550100"},
        "webpush": {"vapid_private_key": "k", "vapid_subject": "mailto:ops@acme.example"},
        "webhook": {"url": "https://hooks.acme.example/lqs", "secret": "whsec_" + "A" * 32},
    }
)
KNOWN = {name: t.channel for name, t in DEFAULT_TEMPLATES.items()}


def _staff_rules(settings: Any, outcome: Any, channels: list[Channel], **given: Any) -> Any:
    return staff_rules(
        outcome, channels, settings, templates=given.get("templates", {}),
        priority=given.get("priority"), known_templates=given.get("known", KNOWN), slug="acme",
    )  # fmt: skip


def test_new_staff_channels_get_the_shipped_template_at_staff_priority() -> None:
    rules, problems = _staff_rules(_settings(), "qualified", list(Channel))
    assert problems == []
    assert [(r.channel, r.to, r.template, r.priority) for r in rules] == [
        (Channel.EMAIL, "client", "lead_qualified", 2),
        (Channel.SMS, "client", "lead_qualified_sms", 2),
        (Channel.PUSH, "client", "lead_qualified_push", 2),
        (Channel.WEBHOOK, "client", "lead_webhook", 2),
    ]


def test_a_kept_channel_keeps_its_template_priority_and_campaign_unless_told() -> None:
    own = {"channel": "email", "to": "client", "template": "vip_email", "priority": 7,
           "campaign_id": "spring"}  # fmt: skip
    settings = _settings(notifications={"qualified": [own]})
    known = {**KNOWN, "vip_email": Channel.EMAIL}

    [kept], _ = _staff_rules(settings, "qualified", [Channel.EMAIL], known=known)
    [told], _ = _staff_rules(
        settings, "qualified", [Channel.EMAIL], known=known, priority=1,
        templates={Channel.EMAIL: "lead_qualified"},
    )  # fmt: skip

    assert (kept.template, kept.priority, kept.campaign_id) == ("vip_email", 7, "spring")
    assert (told.template, told.priority, told.campaign_id) == ("lead_qualified", 1, "spring")


def test_only_the_webhook_has_a_shipped_template_for_other_outcomes() -> None:
    rules, problems = _staff_rules(_settings(), "nurture", [Channel.SMS, Channel.WEBHOOK])
    assert [r.template for r in rules] == ["lead_webhook"]
    assert problems == [
        "sms: no shipped sms template for nurture leads: store one with `lqs templates put "
        "--client acme --id NAME --channel sms ...` and pass --template sms=NAME"
    ]


def test_a_template_must_exist_and_be_for_the_rules_channel() -> None:
    _, problems = _staff_rules(
        _settings(), "qualified", [Channel.SMS, Channel.PUSH],
        templates={Channel.SMS: "lead_qualified", Channel.PUSH: "nowhere"},
    )  # fmt: skip
    assert problems == [
        "sms: template 'lead_qualified' is for the email channel; name a template for sms",
        "push: no template 'nowhere' for acme: store it with `lqs templates put --client acme "
        "--id nowhere --channel push ...`",
    ]


def test_replacing_staff_rules_keeps_the_rules_to_the_lead_and_other_outcomes() -> None:
    ack = {"channel": "email", "to": "lead", "template": "lead_acknowledgement", "priority": 3}
    staff = {"channel": "email", "to": "client", "template": "lead_qualified", "priority": 2}
    nurture = [{"channel": "email", "to": "lead", "template": "lead_acknowledgement",
                "priority": 6}]  # fmt: skip
    settings = _settings(notifications={"qualified": [staff, ack], "nurture": nurture})
    sms = NotificationRule(channel=Channel.SMS, to="client", template="lead_qualified_sms")

    replaced = settings.with_staff_rules("qualified", [sms])
    off = settings.with_staff_rules("qualified", [])

    assert replaced["qualified"] == [
        {"channel": "sms", "to": "client", "template": "lead_qualified_sms", "priority": 5},
        ack,
    ]
    assert replaced["nurture"] == nurture
    assert off["qualified"] == [ack]
    assert parse_client_settings({"notifications": replaced}).rules_for(LeadStatus.QUALIFIED)


def test_rules_to_the_lead_are_not_staff_rules() -> None:
    to_lead = NotificationRule(channel=Channel.EMAIL, to="lead", template="lead_acknowledgement")
    with pytest.raises(ValueError, match="only rules to the client's staff"):
        _settings().with_staff_rules("qualified", [to_lead])


def test_every_channel_is_ready_when_its_recipient_and_provider_are_set() -> None:
    settings = _settings(notification_phone="+12015550123", delivery=DELIVERY_ALL.model_dump())
    for channel in Channel:
        assert staff_channel_problems(channel, settings, DELIVERY_ALL, "acme") == []


@pytest.mark.parametrize(
    ("channel", "expected"),
    [
        (Channel.EMAIL, [
            "email: no notification_email to send to: set one with "
            "`lqs clients configure acme --notification-email ADDRESS`",
            "email: no email provider: add a `resend:` section (api_key, from_address; "
            "email.primary names the provider, resend unless set) with "
            "`lqs clients set-delivery acme FILE.yaml`"]),
        (Channel.SMS, [
            "sms: no notification_phone to send to: set one with "
            "`lqs clients configure acme --notification-phone +NUMBER`",
            "sms: no SMS provider: add a `twilio:` section (account_sid, auth_token, "
            "from_number) with `lqs clients set-delivery acme FILE.yaml`"]),
        (Channel.PUSH, [
            "push: no VAPID key: add a `webpush:` section (vapid_private_key from "
            "`vapid --gen`, vapid_subject) with `lqs clients set-delivery acme FILE.yaml`"]),
        (Channel.WEBHOOK, [
            "webhook: no webhook URL: add a `webhook:` section (url, secret) with "
            "`lqs clients set-delivery acme FILE.yaml`"]),
    ],
)  # fmt: skip
def test_a_channel_without_recipient_or_provider_names_what_to_set(
    channel: Channel, expected: list[str]
) -> None:
    bare = parse_client_settings({})
    assert staff_channel_problems(channel, bare, parse_delivery_settings({}), "acme") == expected


def test_the_email_provider_asked_for_is_the_one_email_primary_names() -> None:
    delivery = parse_delivery_settings(
        {"email": {"primary": "sendgrid"},
         "resend": {"api_key": "re_x", "from_address": "leads@acme.example"}}
    )  # fmt: skip
    [problem] = staff_channel_problems(Channel.EMAIL, _settings(), delivery, "acme")
    assert "add a `sendgrid:` section" in problem
