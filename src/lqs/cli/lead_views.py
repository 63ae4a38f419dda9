"""``lqs leads list|show|consent|reprocess``: what the leads hold, and queueing them again.

A lead is named by its id, the id's first characters (at least 4, as listings show it),
or its email address (the newest lead with it; ``--client`` chooses when leads of several
clients have it). Like the other listings, these read across clients unless ``--client``
names one.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Annotated, Any
from uuid import UUID

import psycopg
import typer
from rich.table import Table

from lqs.cli._common import (
    ID_PREFIX_MATCHES,
    ClientSlugOption,
    IdPrefix,
    SinceOption,
    console,
    fail,
    id_or_prefix,
    in_transaction,
    one_of,
    one_with_prefix,
    since,
    storable_option,
)
from lqs.cli.output import JsonOption, print_json_lines
from lqs.db.clients import Client, get_client, list_clients
from lqs.db.lead_views import (
    ConsentEntry,
    LeadFilter,
    LeadSummary,
    get_lead,
    grade_given,
    lead_communications,
    lead_consent_history,
    leads_with_email,
    leads_with_ids_between,
    list_leads,
)
from lqs.db.leads import requeue_leads
from lqs.domain.vocabulary import LeadStatus

LeadArgument = Annotated[
    str, typer.Argument(help="The lead's id, its first characters (at least 4), or its email")
]
LeadClientOption = Annotated[
    str | None,
    typer.Option("--client", help="The client's slug (when leads of several have the email)"),
]


def breakdown_table(entries: Sequence[Mapping[str, Any]], title: str = "Score breakdown") -> Table:
    """A stored score breakdown (docs/SCORING.md) as a table: each matched rule, the field
    and value it read, its points and its reason."""
    table = Table("rule", "field", "value", "points", "reason", title=title)
    for entry in entries:
        value = entry.get("value")
        table.add_row(
            str(entry.get("rule_id") or entry.get("id") or ""),
            str(entry.get("field") or ""),
            "" if value is None else json.dumps(value, ensure_ascii=False)[:60],
            str(entry.get("points", "")),
            str(entry.get("reason") or ""),
        )
    return table


@dataclass(frozen=True)
class _Found:
    lead_id: UUID
    same_email: list[UUID]
    """Older leads with the same email address, when the lead was named by it."""


async def _client(conn: psycopg.AsyncConnection, slug: str | None) -> Client | None:
    """The client ``--client`` names (ClientNotFound: one line, exit 1), or None."""
    return None if slug is None else await get_client(conn, storable_option(slug, "--client"))


async def _find_lead(
    conn: psycopg.AsyncConnection, ref: str, client: Client | None
) -> _Found | str:
    """The lead ``ref`` names, or why it names none (one line)."""
    at = f" of {client.slug}" if client else ""
    client_id = client.id if client else None
    if "@" in ref:
        matches = await leads_with_email(conn, storable_option(ref, "the lead's email"), client_id)
        if not matches:
            return f"no lead{at} has the email {ref!r}"
        slugs = sorted({m.client_slug for m in matches})
        if len(slugs) > 1:
            return (
                f"leads of {len(slugs)} clients have the email {ref!r} ({', '.join(slugs)}):"
                " name one with --client SLUG"
            )
        return _Found(matches[0].id, [m.id for m in matches[1:]])
    parsed = id_or_prefix(ref, "lead", also="or the lead's email")
    if isinstance(parsed, IdPrefix):
        found = await leads_with_ids_between(
            conn, parsed.low, parsed.high, client_id, limit=ID_PREFIX_MATCHES
        )
        one = one_with_prefix(parsed, found, "lead")
        return one if isinstance(one, str) else _Found(one, [])
    if not await leads_with_ids_between(conn, parsed, parsed, client_id, limit=1):
        return f"no lead{at} with id {parsed}"
    return _Found(parsed, [])


async def find_lead(conn: psycopg.AsyncConnection, ref: str, client_slug: str | None) -> UUID:
    """The id of the lead ``ref`` names (an id, a unique id prefix or an email, of the
    client ``client_slug`` names when given); exits with one line when it names none or
    several clients' leads."""
    found = await _find_lead(conn, ref, await _client(conn, client_slug))
    if isinstance(found, str):
        fail(found)
    return found.lead_id


async def _grade(conn: psycopg.AsyncConnection, value: str, client: Client | None) -> str:
    """``value`` as a grade the clients' rules give (case aside), or one some lead has
    (from rules changed since); else exit with one line listing the grades."""
    # Imported here: scoring loads RE2 and the email domain lists, which only --grade needs.
    from lqs.domain.scoring import grade_names

    clients = [client] if client else await list_clients(conn)
    names = list(
        dict.fromkeys(n for c in clients for n in grade_names(c.settings.get("scoring_rules")))
    ) or list(grade_names(None))
    if value in names:
        return value
    folded = [name for name in names if name.lower() == value.lower()]
    if len(folded) == 1:
        return folded[0]
    if not await grade_given(
        conn, storable_option(value, "--grade"), client.id if client else None
    ):
        scope = f"{client.slug}'s rules" if client else "the clients' rules"
        fail(f"--grade must be one of {', '.join(names)} (the grades {scope} give), not {value!r}")
    return value


def leads_list(
    client: Annotated[str | None, typer.Option("--client", help="Only this client's")] = None,
    status: Annotated[
        str | None, typer.Option(help="Only this status: queued, qualified, nurture, ...")
    ] = None,
    grade: Annotated[str | None, typer.Option(help="Only this grade, e.g. A")] = None,
    when: SinceOption = None,
    search: Annotated[
        str | None,
        typer.Option(help="Only those whose email, name or company contains this (any case)"),
    ] = None,
    limit: Annotated[int, typer.Option(min=1, max=10_000)] = 50,
    as_json: JsonOption = False,
) -> None:
    """The newest leads, with their status, score and grade."""
    wanted_status = one_of(status, LeadStatus)
    wanted_since = since(when)
    text = storable_option(search, "--search").strip() if search is not None else ""

    async def listed(conn: psycopg.AsyncConnection) -> list[LeadSummary]:
        found = await _client(conn, client)
        wanted = LeadFilter(
            client_id=found.id if found else None,
            status=wanted_status,
            grade=None if grade is None else await _grade(conn, grade, found),
            since=wanted_since,
            search=text or None,
        )
        return await list_leads(conn, wanted, limit)

    rows = in_transaction(listed)
    if as_json:
        print_json_lines(rows)
        return
    table = Table("id", "created", "client", "email", "name", "company", "status", "score",
                  "grade")  # fmt: skip
    for row in rows:
        table.add_row(
            str(row.id), f"{row.received_at:%Y-%m-%d %H:%M}", row.client_slug, row.email or "",
            row.name or "", row.company or "", row.status,
            "" if row.score is None else str(row.score), row.grade or "",
        )  # fmt: skip
    console().print(table)
    console().print(f"{len(rows)} lead(s)")


_FIELDS = (
    ("id", "id"), ("client", "client_slug"), ("status", "status"), ("score", "score"),
    ("grade", "grade"), ("error", "error_message"), ("failed attempts", "processing_failures"),
    ("received", "received_at"), ("processed", "processed_at"), ("email", "email"),
    ("phone", "phone"), ("first name", "first_name"), ("last name", "last_name"),
    ("job title", "job_title"), ("company", "company_name"), ("company domain", "company_domain"),
    ("company size", "company_size"), ("industry", "industry"), ("country", "country"),
    ("time zone", "time_zone"), ("source", "source"), ("utm_source", "utm_source"),
    ("utm_medium", "utm_medium"),
    ("utm_campaign", "utm_campaign"), ("utm_term", "utm_term"), ("utm_content", "utm_content"),
    ("consent", "consent_status"), ("consent source", "consent_source"),
    ("consent at", "consent_at"),
)  # fmt: skip
"""What ``lqs leads show`` prints first, in this order (label, column)."""


def leads_show(
    ref: LeadArgument, client: LeadClientOption = None, as_json: JsonOption = False
) -> None:
    """One lead: its fields, score and the rules behind it, its communications and its
    consent history."""

    async def shown(conn: psycopg.AsyncConnection) -> tuple[_Found, dict[str, Any], Any, Any]:
        found = await _find_lead(conn, ref, await _client(conn, client))
        if isinstance(found, str):
            fail(found)
        lead = await get_lead(conn, found.lead_id)
        assert lead is not None  # found just now, in this transaction
        communications = await lead_communications(conn, found.lead_id)
        consent = await lead_consent_history(conn, found.lead_id)
        return found, lead, communications, consent

    found, lead, communications, consent = in_transaction(shown)
    if as_json:
        lead.pop("dedupe_key", None)
        print_json_lines([{**lead, "communications": communications, "consent_history": consent}])
        return
    fields = Table("field", "value", show_header=False)
    for label, name in _FIELDS:
        value = lead.get(name)
        if isinstance(value, datetime):
            value = value.isoformat(sep=" ", timespec="seconds")
        if value is not None and not (name == "processing_failures" and value == 0):
            fields.add_row(label, str(value))
    if lead.get("custom"):
        fields.add_row("custom", json.dumps(lead["custom"], ensure_ascii=False))
    if lead.get("history"):
        fields.add_row("merged submissions", str(len(lead["history"])))
    if found.same_email:
        fields.add_row("older leads, same email", ", ".join(map(str, found.same_email)))
    console().print(fields)
    breakdown = lead.get("score_breakdown")
    if breakdown:
        console().print(breakdown_table(breakdown))
    elif lead["status"] == LeadStatus.QUEUED:
        console().print("not scored yet: queued for the worker")
    if not communications:
        console().print("communications: none recorded")
    else:
        sent = Table("id", "created", "channel", "recipient", "template", "status", "reason",
                     title="Communications (lqs comms show ID)")  # fmt: skip
        for c in communications:
            sent.add_row(
                str(c.id), f"{c.created_at:%Y-%m-%d %H:%M:%S}", c.channel, c.recipient,
                c.template_id or "", c.status, (c.reason or "")[:80],
            )  # fmt: skip
        console().print(sent)
    if not consent:
        console().print("consent history: no change recorded since the lead was submitted")
        return
    history = Table("recorded", "channel", "recipient", "status", "source", "communication",
                    title="Consent history")  # fmt: skip
    for e in consent:
        history.add_row(
            f"{e.recorded_at:%Y-%m-%d %H:%M:%S}", e.channel, e.recipient, e.consent_status,
            e.source, "" if e.communication_id is None else str(e.communication_id),
        )  # fmt: skip
    console().print(history)


def leads_consent(
    client: ClientSlugOption,
    email: Annotated[str, typer.Option("--email", help="The lead's email address")],
    as_json: JsonOption = False,
) -> None:
    """The consent history of the client's lead with this email (the newest such lead),
    oldest first, with the proof of each change: the consent record submitted and the
    API key that submitted it, or the CSV import or provider event behind it."""
    if "@" not in email:
        fail(f"--email {email!r} is not an email address; give the lead's email")

    async def history(conn: psycopg.AsyncConnection) -> tuple[_Found, list[ConsentEntry]]:
        found = await _find_lead(conn, email, await _client(conn, client))
        if isinstance(found, str):
            fail(found)
        return found, await lead_consent_history(conn, found.lead_id)

    found, entries = in_transaction(history)
    if as_json:
        print_json_lines(entries)
        return
    console().print(f"lead {found.lead_id}")
    if found.same_email:
        console().print(f"older leads, same email: {', '.join(map(str, found.same_email))}")
    if not entries:
        console().print("consent history: no change recorded (consent as submitted before proof)")
        return
    table = Table("#", "recorded", "status", "channel", "recipient", "source", "by",
                  "wording", "captured", "ip", "user agent", title="Consent history")  # fmt: skip
    for e in entries:
        table.add_row(
            str(e.id), f"{e.recorded_at:%Y-%m-%d %H:%M:%S}", e.consent_status, e.channel,
            e.recipient, e.source, _consent_by(e), e.text_version or (e.text or "")[:40],
            "" if e.captured_at is None else f"{e.captured_at:%Y-%m-%d %H:%M:%S}",
            e.ip or "", (e.user_agent or "")[:40],
        )  # fmt: skip
    console().print(table)


def _consent_by(entry: ConsentEntry) -> str:
    """Who recorded an entry: the API key, or the evidence's own words."""
    if entry.api_key_id is not None:
        return f"api key {entry.api_key_name or entry.api_key_id}"
    if entry.evidence:
        return ", ".join(f"{k} {v}" for k, v in sorted(entry.evidence.items()))
    if entry.communication_id is not None:
        return f"communication {entry.communication_id}"
    return ""


def leads_reprocess(
    refs: Annotated[
        list[str],
        typer.Argument(help="The leads: ids, id prefixes (at least 4 characters) or emails"),
    ],
    client: LeadClientOption = None,
) -> None:
    """Queue leads again to be scored and planned by the worker: parked leads (status
    error) after fixing their client's rules or templates, or any lead after changing them.

    Messages a lead has already recorded are not recorded (nor sent) again. Every lead
    named must exist, or nothing is queued.
    """

    async def requeued(conn: psycopg.AsyncConnection) -> tuple[list[UUID], list[UUID]]:
        found_client = await _client(conn, client)
        ids: list[UUID] = []
        problems: list[str] = []
        for ref in refs:
            found = await _find_lead(conn, ref, found_client)
            if isinstance(found, str):
                problems.append(found)
            elif found.lead_id not in ids:
                ids.append(found.lead_id)
        if problems:
            fail(f"{'; '.join(problems)}; nothing was queued")
        done = await requeue_leads(conn, ids)
        if done.erased:
            fail(
                f"{', '.join(map(str, done.erased))}: erased (lqs leads erase), never processed"
                " again; nothing was queued"
            )
        if done.blocked:
            pairs = ", ".join(f"{lead} (open: {open_lead})" for lead, open_lead in done.blocked)
            fail(
                f"cannot reopen {pairs}: another lead of the same client with the same email"
                " is open; reprocess that one instead; nothing was queued"
            )
        return done.queued, done.already_queued

    queued, already = in_transaction(requeued)
    if already:
        typer.echo(f"already queued, left alone: {', '.join(map(str, already))}", err=True)
    console().print(f"queued {len(queued)} lead(s) again; the worker (lqs worker) qualifies them")
