"""``lqs templates ...``: store, list, show and preview a client's message templates.

A template is known by its id (``lead_qualified``); the highest stored version is the one
the processor uses, and a client that stored none of an id gets the shipped one
(:mod:`lqs.domain.default_templates`). ``preview`` renders exactly as the processor does:
the same sandboxed renderer, the same variables, for one of the client's leads or for a
sample lead.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Literal
from uuid import UUID

import psycopg
import typer

from lqs.cli._common import ClientSlugOption, console, fail, for_client
from lqs.cli.output import JsonOption, print_json_lines
from lqs.cli.stats import table
from lqs.db.clients import Client
from lqs.db.templates import TemplateVersion, client_template, client_templates, store_template
from lqs.domain.vocabulary import Channel

if TYPE_CHECKING:
    from lqs.domain.templates import MessageTemplate

templates_app = typer.Typer(
    help="Store, list, show and preview a client's message templates.", no_args_is_help=True
)

TemplateIdOption = Annotated[
    str, typer.Option("--id", metavar="ID", help="The template's id, e.g. lead_qualified")
]
VersionOption = Annotated[
    int | None,
    typer.Option(min=1, metavar="N", help="A stored version (default: the one in use)"),
]


@dataclass(frozen=True)
class TemplateInUse:
    """A template as a client has it: stored (a version of its own) or shipped."""

    id: str
    source: Literal["stored", "shipped"]
    version: int
    versions: int
    """How many versions the client stored (0 for a shipped template)."""
    channel: str
    subject: str | None
    body: str
    body_format: str
    updated_at: datetime | None
    """When this version was stored (None for a shipped template)."""

    @classmethod
    def stored(cls, found: TemplateVersion) -> TemplateInUse:
        return cls(
            found.name, "stored", found.version, found.versions, found.channel,
            found.subject, found.body, found.body_format, found.created_at,
        )  # fmt: skip

    @classmethod
    def shipped(cls, template: MessageTemplate) -> TemplateInUse:
        return cls(
            template.template_id, "shipped", template.version, 0, template.channel.value,
            template.subject, template.body, template.body_format, None,
        )  # fmt: skip

    def as_message_template(self) -> MessageTemplate:
        from lqs.domain.templates import MessageTemplate

        fmt: Literal["html", "text"] = "html" if self.body_format == "html" else "text"
        return MessageTemplate(
            self.id, self.version, Channel(self.channel), self.subject, self.body, fmt
        )


def _shipped() -> dict[str, MessageTemplate]:
    from lqs.domain.default_templates import DEFAULT_TEMPLATES  # Jinja2 sources: only here

    return dict(DEFAULT_TEMPLATES)


async def _in_use(
    conn: psycopg.AsyncConnection, client: Client, template_id: str, version: int | None
) -> TemplateInUse | str:
    """The client's template ``template_id`` (version ``version``, or the one in use), or
    one line saying it has no such template and naming those it has."""
    found = await client_template(conn, client.id, template_id, version)
    if found is not None:
        return TemplateInUse.stored(found)
    if version is not None:
        mine = await client_template(conn, client.id, template_id)
        stored = f"it stored versions 1 to {mine.versions}" if mine else "it stored none"
        return f"{client.slug} has no version {version} of template {template_id!r} ({stored})"
    shipped = _shipped().get(template_id)
    if shipped is not None:
        return TemplateInUse.shipped(shipped)
    known = sorted({t.name for t in await client_templates(conn, client.id)} | set(_shipped()))
    return (
        f"{client.slug} has no template {template_id!r}; it has {', '.join(known)}"
        " (lqs templates list)"
    )


def _all_in_use(stored: list[TemplateVersion]) -> list[TemplateInUse]:
    own = {t.name: TemplateInUse.stored(t) for t in stored}
    shipped = {i: TemplateInUse.shipped(t) for i, t in _shipped().items() if i not in own}
    return [found for _, found in sorted({**own, **shipped}.items())]


def _when(moment: datetime | None) -> str:
    return moment.isoformat(timespec="seconds") if moment else ""


@templates_app.command("list")
def templates_list(client: ClientSlugOption, as_json: JsonOption = False) -> None:
    """List the templates a client's messages use: its own (the version in use) and the
    shipped ones it did not replace."""
    stored = for_client(client, lambda conn, found: client_templates(conn, found.id))
    templates = _all_in_use(stored)
    if as_json:
        print_json_lines({k: v for k, v in vars(t).items() if k != "body"} for t in templates)
        return
    rows = [
        (
            t.id, t.source, f"{t.version} of {t.versions}" if t.source == "stored" else "-",
            t.channel, t.body_format, _when(t.updated_at),
        )
        for t in templates
    ]  # fmt: skip
    headings = ("id", "source", "version", "channel", "format", "updated")
    console().print(table(f"Templates of {client}", headings, rows))


@templates_app.command("show")
def templates_show(
    client: ClientSlugOption,
    template_id: TemplateIdOption,
    version: VersionOption = None,
    as_json: JsonOption = False,
) -> None:
    """Show a template's source: subject, body, channel, format and when it was stored."""
    found = for_client(client, lambda conn, c: _in_use(conn, c, template_id, version))
    if isinstance(found, str):
        fail(found)
    if as_json:
        print_json_lines([found])
        return
    stored = f"version {found.version} of {found.versions}, stored {_when(found.updated_at)}"
    typer.echo(f"template: {found.id} ({stored if found.source == 'stored' else 'shipped'})")
    typer.echo(f"channel:  {found.channel} ({found.body_format})")
    if found.subject is not None:
        typer.echo(f"subject:  {found.subject}")
    typer.echo("")
    typer.echo(found.body)


def _lead_key(value: str) -> tuple[UUID | None, str | None]:
    try:
        return UUID(value), None
    except ValueError:
        pass
    if "@" not in value:
        fail(f"--lead {value!r}: give the lead's id (a UUID) or its email address")
    return None, value.strip()


@templates_app.command("preview")
def templates_preview(
    client: ClientSlugOption,
    template_id: TemplateIdOption,
    lead: Annotated[
        str | None,
        typer.Option(
            metavar="ID|EMAIL",
            help="Render for this lead of the client (its id, or its email: the latest lead)",
        ),
    ] = None,
    sample: Annotated[
        bool, typer.Option("--sample", help="Render for a sample lead (the default)")
    ] = False,
    version: VersionOption = None,
    as_json: JsonOption = False,
) -> None:
    """Render a template as the processor would: the same sandbox and limits, the same
    variables, for one of the client's leads or for a sample lead with every field set."""
    if lead is not None and sample:
        fail("give --lead or --sample, not both")
    lead_key = _lead_key(lead) if lead is not None else None
    from lqs.domain.templates import TemplateError, TemplateRenderer

    async def to_render(
        conn: psycopg.AsyncConnection, found: Client
    ) -> tuple[TemplateInUse, str, dict[str, Any]] | str:
        template = await _in_use(conn, found, template_id, version)
        if isinstance(template, str):
            return template
        if lead_key is None:
            return template, "sample", _sample_variables(found)
        from lqs.db.leads import find_client_lead
        from lqs.worker.processor import template_variables

        stored = await find_client_lead(conn, found.id, *lead_key)
        if stored is None:
            return f"{found.slug} has no lead {lead!r} (lqs leads list --client {found.slug})"
        claimed, outcome = stored
        return template, str(claimed.id), template_variables(claimed, outcome, found)

    chosen = for_client(client, to_render)
    if isinstance(chosen, str):
        fail(chosen)
    template, rendered_for, variables = chosen
    try:
        message = TemplateRenderer().render(template.as_message_template(), variables)
    except TemplateError as exc:
        fail(str(exc))
    if as_json:
        print_json_lines(
            [
                {
                    "id": template.id, "source": template.source, "version": template.version,
                    "channel": template.channel, "lead": rendered_for,
                    "subject": message.subject, "content": message.content,
                }
            ]
        )  # fmt: skip
        return
    which = f"v{template.version}" if template.source == "stored" else "shipped"
    typer.echo(f"template: {template.id} ({which}), {template.channel}, for lead {rendered_for}")
    if message.subject is not None:
        typer.echo(f"subject:  {message.subject}")
    typer.echo("")
    typer.echo(message.content)


@templates_app.command("put")
def templates_put(
    client: ClientSlugOption,
    template_id: Annotated[str, typer.Option("--id", help="e.g. lead_qualified")],
    body_file: Annotated[Path, typer.Option(help="The body (Jinja2)")],
    channel: Annotated[Channel, typer.Option()] = Channel.EMAIL,
    subject: Annotated[str | None, typer.Option(help="The subject (Jinja2)")] = None,
    body_format: Annotated[str, typer.Option("--format", help="html or text")] = "html",
) -> None:
    """Store a new version of a template once it passes a check; a bad one stores nothing.

    The check compiles it, refuses names the processor does not provide (top level: lead,
    client, score, grade, outcome, breakdown; lead.X must be a lead field, lead.custom.X
    may be anything), and renders a sample lead that has every lead field and no custom
    field: read custom fields as lead.custom.get('x') or lead.custom.x | default('').
    """
    if body_format not in ("html", "text"):
        fail("--format must be html or text")
    try:
        body = body_file.read_text(encoding="utf-8")
    except OSError as exc:
        fail(f"cannot read {body_file}: {exc.strerror or exc}")
    except UnicodeDecodeError as exc:
        fail(f"{body_file}: not UTF-8 text ({exc.reason} at byte {exc.start})")
    fmt: Literal["html", "text"] = "html" if body_format == "html" else "text"
    # Jinja2 and the sandbox: only the template commands need them.
    from lqs.domain.templates import MessageTemplate, TemplateError, TemplateRenderer

    renderer = TemplateRenderer()
    try:
        template = MessageTemplate(template_id, 1, channel, subject, body, fmt)
        renderer.check(template)  # before touching the database: a syntax error is common
    except (TemplateError, ValueError) as exc:
        fail(f"{exc}; nothing was stored")

    async def store(conn: psycopg.AsyncConnection, found: Client) -> int | str:
        try:
            renderer.vet(template, _sample_variables(found))
        except TemplateError as exc:
            return str(exc)  # the transaction stores nothing
        return await store_template(conn, found.id, template_id, channel.value, subject, body, fmt)

    outcome = for_client(client, store)
    if isinstance(outcome, str):
        fail(f"{outcome}; nothing was stored")
    console().print(f"stored {template_id} version {outcome} for {client}")


def _sample_variables(client: Client) -> dict[str, Any]:
    """What the processor would pass a template for a plausible qualified lead of ``client``:
    every lead field set (no custom field: many leads have none)."""
    from lqs.db.leads import ClaimedLead, LeadOutcome
    from lqs.domain.vocabulary import LeadStatus
    from lqs.worker.processor import template_variables

    lead_id = UUID("00000000-0000-4000-8000-00000000a1a1")
    row = {
        "id": lead_id, "client_id": client.id, "email": "ada.lovelace@analytical.example",
        "phone": "+442071838750", "first_name": "Ada", "last_name": "Lovelace",
        "job_title": "Chief Technology Officer", "company_name": "Analytical Engines Ltd",
        "company_domain": "analytical.example", "company_size": 250, "industry": "Software",
        "country": "GB", "time_zone": "Europe/London", "source": "website",
        "utm_source": "newsletter", "utm_medium": "email",
        "utm_campaign": "spring_launch", "utm_term": "lead scoring", "utm_content": "header_link",
        "custom": {}, "consent_status": "granted", "consent_source": "website form",
        "consent_at": datetime(2026, 3, 2, 9, 58, tzinfo=UTC),
        "received_at": datetime(2026, 3, 2, 10, 0, tzinfo=UTC), "processed_at": None,
    }  # fmt: skip
    breakdown = [
        {"rule_id": "corporate-email", "rule_version": 1, "field": "email",
         "value": row["email"], "points": 25, "reason": "Email on a company domain"},
        {"rule_id": "senior-title", "rule_version": 1, "field": "job_title",
         "value": row["job_title"], "points": 20, "reason": "Senior decision-maker"},
        {"rule_id": "company-size", "rule_version": 1, "field": "company_size",
         "value": row["company_size"], "points": 20, "reason": "Company of 50 to 10,000 people"},
    ]  # fmt: skip
    outcome = LeadOutcome(lead_id, LeadStatus.QUALIFIED, 65, "B", breakdown, None)
    return template_variables(ClaimedLead.from_row(row), outcome, client)
