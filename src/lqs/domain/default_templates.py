"""Templates shipped for clients that store none (``templates`` table rows override them)."""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType

from lqs.domain.templates import MessageTemplate
from lqs.domain.vocabulary import CommunicationType

_LEAD_QUALIFIED_BODY = """\
<h1>New qualified lead for {{ client.name }}</h1>
<p><strong>{{ lead.first_name or '' }} {{ lead.last_name or '' }}</strong>
{%- if lead.job_title %}, {{ lead.job_title }}{% endif %}
{%- if lead.company_name %} at {{ lead.company_name }}{% endif %}</p>
<table>
{%- if lead.email %}<tr><th align="left">Email</th><td>{{ lead.email }}</td></tr>{% endif %}
{%- if lead.phone %}<tr><th align="left">Phone</th><td>{{ lead.phone }}</td></tr>{% endif %}
{%- if lead.company_size is not none -%}
<tr><th align="left">Company size</th><td>{{ lead.company_size }}</td></tr>
{%- endif %}
{%- if lead.industry -%}
<tr><th align="left">Industry</th><td>{{ lead.industry }}</td></tr>
{%- endif %}
{%- if lead.country %}<tr><th align="left">Country</th><td>{{ lead.country }}</td></tr>{% endif %}
{%- if lead.source %}<tr><th align="left">Source</th><td>{{ lead.source }}</td></tr>{% endif %}
{%- if lead.utm_campaign -%}
<tr><th align="left">Campaign</th><td>{{ lead.utm_campaign }}</td></tr>
{%- endif %}
</table>
<p>Score <strong>{{ score }}</strong>, grade <strong>{{ grade }}</strong>. Why:</p>
<ul>
{%- for entry in breakdown %}
<li>{{ entry.reason }} ({{ '%+d' % entry.points }})</li>
{%- else %}
<li>No rule matched.</li>
{%- endfor %}
</ul>
"""

_ACKNOWLEDGEMENT_BODY = """\
<p>Hello {{ lead.first_name or 'there' }},</p>
<p>Thank you for your interest in {{ client.name }}. We have received your details and
someone from our team will be in touch soon.</p>
<p>Kind regards,<br>{{ client.name }}</p>
"""

DEFAULT_TEMPLATES: Mapping[str, MessageTemplate] = MappingProxyType(
    {
        "lead_qualified": MessageTemplate(
            template_id="lead_qualified",
            version=1,
            channel=CommunicationType.EMAIL,
            subject=(
                "New qualified lead: {{ lead.first_name or '' }} {{ lead.last_name or '' }}"
                "{% if lead.company_name %} ({{ lead.company_name }}){% endif %}"
                ", {{ score }} points"
            ),
            body=_LEAD_QUALIFIED_BODY,
            body_format="html",
        ),
        "lead_acknowledgement": MessageTemplate(
            template_id="lead_acknowledgement",
            version=1,
            channel=CommunicationType.EMAIL,
            subject="Thanks for your interest in {{ client.name }}",
            body=_ACKNOWLEDGEMENT_BODY,
            body_format="html",
        ),
        "lead_qualified_sms": MessageTemplate(
            template_id="lead_qualified_sms",
            version=1,
            channel=CommunicationType.SMS,
            subject=None,
            body=(
                "New lead: {{ lead.first_name or '' }} {{ lead.last_name or '' }}"
                "{% if lead.company_name %}, {{ lead.company_name }}{% endif %}"
                " ({{ score }} pts) {{ lead.phone or lead.email }}"
            ),
            body_format="text",
        ),
    }
)
