"""What a qualified (or nurtured, or disqualified) lead sends, and whether it may be sent.

Pure planning: the processor passes the lead, the client's settings and the score; this
returns one :class:`PlannedMessage` per message, each either sendable or rejected with a
compliance note. Rendering and storage happen elsewhere.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace

from lqs.domain.clients import STAFF_PRIORITY, ClientSettings, NotificationRule, Outcome
from lqs.domain.delivery import DeliverySettings, provider_for
from lqs.domain.vocabulary import Channel, ConsentStatus, LeadStatus


@dataclass(frozen=True)
class PlannedMessage:
    """A message to record: to whom, how, with which template, and whether it may go."""

    channel: Channel
    recipient: str | None
    template_id: str
    priority: int
    campaign_id: str | None
    to_lead: bool
    consent_status: ConsentStatus
    rejection: str | None
    """None when the message may be sent; otherwise the compliance note."""


def _recipients(
    rule: NotificationRule,
    settings: ClientSettings,
    lead: Mapping[str, object],
    push_subscriptions: Sequence[str],
) -> list[str]:
    if rule.to == "client":
        if rule.channel is Channel.EMAIL:
            found = settings.notification_email
        elif rule.channel is Channel.SMS:
            found = settings.notification_phone
        elif rule.channel is Channel.WEBHOOK:
            found = settings.webhook_url
        else:  # push: every live subscription of the client's staff
            return list(push_subscriptions)
        return [found] if found else []
    if rule.channel is Channel.EMAIL:
        value = lead.get("email")
    elif rule.channel is Channel.SMS:
        value = lead.get("phone")
    else:
        value = None
    return [str(value)] if value else []


def plan_messages(
    outcome: LeadStatus,
    settings: ClientSettings,
    lead: Mapping[str, object],
    suppressed: frozenset[tuple[str, str]] = frozenset(),
    push_subscriptions: Sequence[str] = (),
) -> list[PlannedMessage]:
    """The messages ``outcome`` sends for this lead under the client's settings.

    A message to the lead needs ``consent_status == granted``; any message to a
    recipient in ``suppressed`` (``(channel, normalised recipient)`` pairs) is rejected.
    Messages to the client's own addresses are operational: they need no lead consent and
    are recorded with ``consent_status = granted``. A push rule to the client sends one
    message to each of ``push_subscriptions`` (the ids of its live subscriptions).
    A rule whose recipient is unknown (no address configured, the lead has no phone, no
    subscription) plans nothing: there is no one to record a message to.
    """
    planned = []
    lead_consent = ConsentStatus(str(lead.get("consent_status") or "unknown"))
    for rule in settings.rules_for(outcome):
        for recipient in _recipients(rule, settings, lead, push_subscriptions):
            to_lead = rule.to == "lead"
            consent = lead_consent if to_lead else ConsentStatus.GRANTED
            rejection = None
            if to_lead and consent is not ConsentStatus.GRANTED:
                rejection = (
                    f"lead consent is {consent.value}: messages to the lead need granted consent"
                )
            planned.append(
                PlannedMessage(
                    channel=rule.channel,
                    recipient=recipient,
                    template_id=rule.template,
                    priority=rule.priority,
                    campaign_id=rule.campaign_id,
                    to_lead=to_lead,
                    consent_status=consent,
                    rejection=rejection,
                )
            )
    return reject_suppressed(planned, suppressed)


def reject_suppressed(
    planned: list[PlannedMessage], suppressed: frozenset[tuple[str, str]]
) -> list[PlannedMessage]:
    """``planned`` with every message still allowed whose recipient is in ``suppressed``
    (``(channel, normalised recipient)`` pairs) rejected: the suppression check of
    :func:`plan_messages`, for messages planned before the suppressions were known."""
    if not suppressed:
        return planned
    return [
        replace(
            message,
            rejection=f"recipient is on the client's {message.channel.value} suppression list",
        )
        if message.rejection is None
        and message.recipient is not None
        and (message.channel.value, normalise_recipient(message.channel, message.recipient))
        in suppressed
        else message
        for message in planned
    ]


def normalise_recipient(channel: str, recipient: str) -> str:
    """The form suppressions are stored and matched in: trimmed of any whitespace (Python's
    :meth:`str.strip`: tabs, newlines and no-break spaces too), and lower-case for email.

    The only definition: the database stores what this returns and compares with it.
    ``channel`` is a :class:`Channel` or its value (the ``type`` column's text).
    """
    value = recipient.strip()
    return value.lower() if channel == Channel.EMAIL else value


MessageKey = tuple[str, str, str]
"""What makes two messages of one lead the same message: the channel, the recipient (as
:func:`normalise_recipient` gives it) and the template's name (without its version)."""


def message_key(channel: str, recipient: str, template: str) -> MessageKey:
    """The :data:`MessageKey` of a message; ``template`` may carry its version
    (``lead_qualified@v3``, ``lead_qualified@default``), which does not count."""
    return channel, normalise_recipient(channel, recipient), template.partition("@")[0]


def recorded_before(message: PlannedMessage, earlier: Mapping[MessageKey, frozenset[str]]) -> bool:
    """Whether a lead processed again already has ``message``: ``earlier`` gives the
    statuses of the lead's recorded communications by :data:`MessageKey`.

    Such a message is not recorded again, whatever became of it (``lqs comms retry``
    re-drives a failed one), so processing a lead twice never sends anything twice. The
    one exception is a message that was only ever rejected, never sent: it is recorded
    again when it may be sent now (consent granted since, a suppression lifted), not
    when it would be rejected again.
    """
    if message.recipient is None:
        return False
    statuses = earlier.get(message_key(message.channel, message.recipient, message.template_id))
    if not statuses:
        return False
    return statuses != {"rejected"} or message.rejection is not None


def shipped_staff_template(channel: Channel, outcome: Outcome) -> str | None:
    """The shipped template (:mod:`lqs.domain.default_templates`) a message to the
    client's staff on ``channel`` uses for ``outcome`` unless told otherwise; None when none
    fits (the email, SMS and push ones announce a *qualified* lead)."""
    if channel is Channel.WEBHOOK:
        return "lead_webhook"  # it carries the outcome
    if outcome != "qualified":
        return None
    return {
        Channel.EMAIL: "lead_qualified",
        Channel.SMS: "lead_qualified_sms",
        Channel.PUSH: "lead_qualified_push",
    }[channel]


def staff_channel_problems(
    channel: Channel, settings: ClientSettings, delivery: DeliverySettings, slug: str
) -> list[str]:
    """What client ``slug`` lacks before messages to its staff can go on ``channel``: a
    recipient (the notification address, the webhook URL) and a provider; each problem is
    one line naming the setting and the command that sets it. Empty when nothing lacks.

    Push needs only the provider: browsers subscribe (``lqs push add``) over time.
    """
    problems: list[str] = []
    set_delivery = f"`lqs clients set-delivery {slug} FILE.yaml`"
    if channel is Channel.EMAIL and not settings.notification_email:
        problems.append(
            "email: no notification_email to send to: set one with "
            f"`lqs clients configure {slug} --notification-email ADDRESS`"
        )
    if channel is Channel.SMS and not settings.notification_phone:
        problems.append(
            "sms: no notification_phone to send to: set one with "
            f"`lqs clients configure {slug} --notification-phone +NUMBER`"
        )
    if provider_for(channel.value, delivery) is None:
        missing, section = {
            Channel.EMAIL: (
                "no email provider",
                f"a `{delivery.email.primary}:` section (api_key, from_address; "
                "email.primary names the provider, resend unless set)",
            ),
            Channel.SMS: (
                "no SMS provider",
                "a `twilio:` section (account_sid, auth_token, from_number)",
            ),
            Channel.PUSH: (
                "no VAPID key",
                "a `webpush:` section (vapid_private_key from `vapid --gen`, vapid_subject)",
            ),
            Channel.WEBHOOK: ("no webhook URL", "a `webhook:` section (url, secret)"),
        }[channel]
        problems.append(f"{channel.value}: {missing}: add {section} with {set_delivery}")
    return problems


def staff_rules(
    outcome: Outcome,
    channels: Sequence[Channel],
    settings: ClientSettings,
    *,
    templates: Mapping[Channel, str],
    priority: int | None,
    known_templates: Mapping[str, Channel],
    slug: str,
) -> tuple[list[NotificationRule], list[str]]:
    """The rules that send ``outcome`` to client ``slug``'s staff on ``channels``, and the
    problems that stop them (one line each; empty when there are none).

    A channel that already has a rule keeps its template, priority and campaign unless
    ``templates`` or ``priority`` say otherwise; a new one gets
    :func:`shipped_staff_template` and :data:`~lqs.domain.clients.STAFF_PRIORITY`.
    ``known_templates`` gives the channel of every template the client can use (its own
    and the shipped ones): a rule's template must be one of them, for its channel.
    """
    current = {
        rule.channel: rule for rule in reversed(settings.notifications.get(outcome, []))
        if rule.to == "client"
    }  # fmt: skip
    rules: list[NotificationRule] = []
    problems: list[str] = []
    for channel in channels:
        kept = current.get(channel)
        template = templates.get(channel) or (
            kept.template if kept else shipped_staff_template(channel, outcome)
        )
        if template is None:
            problems.append(
                f"{channel.value}: no shipped {channel.value} template for {outcome} leads: "
                f"store one with `lqs templates put --client {slug} --id NAME "
                f"--channel {channel.value} ...` and pass --template {channel.value}=NAME"
            )
            continue
        found = known_templates.get(template)
        if found is None:
            problems.append(
                f"{channel.value}: no template {template!r} for {slug}: store it with "
                f"`lqs templates put --client {slug} --id {template} "
                f"--channel {channel.value} ...`"
            )
            continue
        if found is not channel:
            problems.append(
                f"{channel.value}: template {template!r} is for the {found.value} channel; "
                f"name a template for {channel.value}"
            )
            continue
        rules.append(
            NotificationRule(
                channel=channel,
                to="client",
                template=template,
                priority=(
                    priority if priority is not None else kept.priority if kept else STAFF_PRIORITY
                ),
                campaign_id=kept.campaign_id if kept else None,
            )
        )
    return rules, problems
