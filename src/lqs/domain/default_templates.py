"""Templates shipped for clients that store none (``templates`` table rows override them).

Every template, shipped or stored, is rendered with these variables:

``lead``
    A mapping with every lead field: ``id``, ``email``, ``phone``, ``first_name``,
    ``last_name``, ``job_title``, ``company_name``, ``company_domain``, ``company_size``,
    ``industry``, ``country``, ``source``, ``utm_source``, ``utm_medium``, ``utm_campaign``,
    ``utm_term``, ``utm_content``, ``custom`` (a mapping of the client's own fields),
    ``consent_status`` and ``received_at`` (ISO 8601 text). Any value may be None.
``client``
    The client the lead came to: ``name`` and ``slug``.
``score``, ``grade``, ``outcome``
    The lead's score (an integer), its grade (e.g. ``"A"``) and its outcome
    (``qualified``, ``nurture`` or ``disqualified``).
``breakdown``
    Why the lead scored so: a list of mappings with ``rule_id``, ``rule_version``,
    ``field``, ``value`` (the lead's value), ``points`` and ``reason``, possibly empty.

Rendering uses ``StrictUndefined``: a variable or a key that does not exist is an error,
so these templates write ``lead.first_name | default('', true)`` (empty for a missing key
and for None alike) wherever a value is optional.
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType
from typing import Literal

from lqs.domain.templates import MessageTemplate
from lqs.domain.vocabulary import Channel

# "Ann Lee", or "" if the lead gave no name.
_NAME = (
    "{%- set name = [lead.first_name | default('', true), lead.last_name | default('', true)]"
    " | select | join(' ') -%}"
)

_QUALIFIED_SUBJECT = (
    _NAME + "New qualified lead: {{ name or lead.email | default('no name given', true) }}"
    "{% if lead.company_name | default('', true) %}, {{ lead.company_name }}{% endif %}"
    " ({{ score }} points)"
)

_QUALIFIED_BODY = (
    _NAME
    + """
<h1>New qualified lead for {{ client.name }}</h1>
<p><strong>{{ name or lead.email | default('No name given', true) }}</strong>
{%- if lead.job_title | default('', true) %}, {{ lead.job_title }}{% endif %}
{%- if lead.company_name | default('', true) %} at {{ lead.company_name }}{% endif %}</p>
<p>Score <strong>{{ score }}</strong>, grade <strong>{{ grade }}</strong>.</p>
<table>
{%- for label, key in [('Email', 'email'), ('Phone', 'phone'), ('Job title', 'job_title'),
                       ('Company', 'company_name'), ('Company domain', 'company_domain'),
                       ('Company size', 'company_size'), ('Industry', 'industry'),
                       ('Country', 'country'), ('Source', 'source'),
                       ('Campaign', 'utm_campaign'), ('Received', 'received_at')] %}
{%- set value = lead[key] | default(none) %}
{%- if value is not none and value != '' %}
<tr><th align="left">{{ label }}</th><td>{{ value }}</td></tr>
{%- endif %}
{%- endfor %}
{%- set custom = lead.custom | default({}, true) %}
{%- for key, value in (custom if custom is mapping else {}) | dictsort %}
<tr><th align="left">{{ key }}</th><td>{{ value if value is not none else '' }}</td></tr>
{%- endfor %}
</table>
<h2>Why</h2>
{%- if breakdown %}
<table>
<tr><th align="left">Rule</th><th align="left">Field</th><th align="left">Value</th>\
<th align="right">Points</th></tr>
{%- for entry in breakdown %}
<tr><td>{{ entry.reason }}</td><td>{{ entry.field }}</td>\
<td>{{ entry.value if entry.value is not none else '' }}</td>\
<td align="right">{{ '%+d' % entry.points }}</td></tr>
{%- endfor %}
</table>
{%- else %}
<p>No scoring rule matched.</p>
{%- endif %}
"""
)

_ACK_SUBJECT = "Thanks for your interest, {{ lead.first_name | default('there', true) }}"

_ACK_BODY = """\
<p>Hello {{ lead.first_name | default('there', true) }},</p>
<p>Thank you for your interest in {{ client.name }}. We have received your details, and
someone from our team will be in touch soon.</p>
<p>Kind regards,<br>The {{ client.name }} team</p>
"""

# One SMS segment: at most 16 + 30 + 2 + 25 + 2 + 6 + 12 + 2 + 3 + 50 = 148 characters
# for a grade of up to 2 characters and a score of up to 6, and "..." rather than "…",
# which is not in the GSM 7-bit alphabet and would cut the segment to 70 characters.
_QUALIFIED_SMS = (
    _NAME + "Qualified lead: {{ (name or 'no name') | truncate(30, true, '...', 0) }}"
    "{% if lead.company_name | default('', true) %}"
    ", {{ lead.company_name | truncate(25, true, '...', 0) }}{% endif %}"
    " ({{ score }} pts, grade {{ grade }}). "
    "{{ (lead.phone | default('', true) or lead.email | default('', true))"
    " | truncate(50, true, '...', 0) }}"
)

# A push notification: a short title and a line of text (push payloads are ~4 KB at most).
_QUALIFIED_PUSH_TITLE = "New {{ outcome }} lead ({{ score }} points)"
_QUALIFIED_PUSH = (
    _NAME
    + "{{ (name or lead.email | default('no name given', true)) | truncate(60, true, '...', 0) }}"
    "{% if lead.company_name | default('', true) %}"
    ", {{ lead.company_name | truncate(60, true, '...', 0) }}{% endif %}"
    " (grade {{ grade }})"
)

# A webhook, for any outcome: a one-line subject, and everything the templates get as
# JSON text (a receiver reads ``json.loads(event["data"]["content"])``).
_LEAD_SUBJECT = (
    _NAME + "{{ outcome | capitalize }} lead: "
    "{{ name or lead.email | default('no name given', true) }}"
    "{% if lead.company_name | default('', true) %}, {{ lead.company_name }}{% endif %}"
    " ({{ score }} points)"
)
_LEAD_JSON = (
    "{{ {'outcome': outcome, 'score': score, 'grade': grade, 'lead': lead,"
    " 'breakdown': breakdown, 'client': client} | tojson }}"
)

_SHIPPED: tuple[tuple[str, Channel, str | None, str, Literal["html", "text"]], ...] = (
    # template id, channel, subject (None for SMS), body, body format
    ("lead_qualified", Channel.EMAIL, _QUALIFIED_SUBJECT, _QUALIFIED_BODY, "html"),
    ("lead_acknowledgement", Channel.EMAIL, _ACK_SUBJECT, _ACK_BODY, "html"),
    ("lead_qualified_push", Channel.PUSH, _QUALIFIED_PUSH_TITLE, _QUALIFIED_PUSH, "text"),
    ("lead_qualified_sms", Channel.SMS, None, _QUALIFIED_SMS, "text"),
    ("lead_webhook", Channel.WEBHOOK, _LEAD_SUBJECT, _LEAD_JSON, "text"),
)  # fmt: skip

DEFAULT_TEMPLATES: Mapping[str, MessageTemplate] = MappingProxyType(
    {
        template_id: MessageTemplate(
            template_id=template_id,
            version=1,
            channel=channel,
            subject=subject,
            body=body,
            body_format=body_format,
        )
        for template_id, channel, subject, body, body_format in _SHIPPED
    }
)
"""The shipped templates (each at version 1) by id; the processor falls back to these."""
