"""``lqs clients ...``, ``lqs keys ...`` and ``lqs templates ...``: tenant administration."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any, Literal
from uuid import UUID

import psycopg
import typer
import yaml
from pydantic import ValidationError
from rich.table import Table

from lqs.cli._common import (
    ClientSlugArgument,
    ClientSlugOption,
    console,
    fail,
    for_client,
    in_transaction,
)
from lqs.cli.output import JsonOption, print_json_lines
from lqs.db.clients import (
    Client,
    create_api_key,
    create_client,
    list_api_keys,
    list_clients,
    revoke_api_key,
    update_client_settings,
)
from lqs.db.push import live_push_subscriptions
from lqs.db.templates import latest_templates, store_template
from lqs.domain.clients import (
    OUTCOMES,
    SLUG_PATTERN,
    ClientSettings,
    NotificationRule,
    Outcome,
    parse_client_settings,
)
from lqs.domain.delivery import DeliverySettingsError, parse_delivery_settings, provider_for
from lqs.domain.notifications import staff_channel_problems, staff_rules
from lqs.domain.vocabulary import Channel

clients_app = typer.Typer(help="Create and configure clients (tenants).", no_args_is_help=True)
keys_app = typer.Typer(help="Create, list and revoke a client's API keys.", no_args_is_help=True)
templates_app = typer.Typer(
    help="Store versions of a client's message templates.", no_args_is_help=True
)


def _validated_settings(current: dict[str, Any], patch: dict[str, Any]) -> None:
    try:
        parse_client_settings({**current, **patch})
    except ValidationError as exc:
        first = exc.errors()[0]
        fail(f"{'.'.join(str(p) for p in first['loc'])}: {first['msg']}")


@clients_app.command("create")
def clients_create(
    name: Annotated[str, typer.Argument(help="The client's display name")],
    slug: Annotated[str, typer.Option(help="Short unique id: lowercase letters, digits, dashes")],
    notification_email: Annotated[
        str | None, typer.Option(help="Where qualified-lead emails go")
    ] = None,
    region: Annotated[str, typer.Option(help="Default phone region (ISO country)")] = "US",
) -> None:
    """Create a client."""
    if not SLUG_PATTERN.match(slug):
        fail(f"--slug {slug!r}: use 1-63 lowercase letters, digits and dashes, not at the ends")
    if not name.strip():
        fail("NAME must not be empty")
    initial: dict[str, Any] = {"default_region": region.upper()}
    if notification_email:
        initial["notification_email"] = notification_email
    _validated_settings({}, initial)
    client = in_transaction(lambda conn: create_client(conn, name.strip(), slug, initial))
    console.print(f"created client {client.slug} ({client.id})")


@clients_app.command("list")
def clients_list(as_json: JsonOption = False) -> None:
    """List clients."""
    clients = in_transaction(list_clients)
    if as_json:
        # Never the settings whole: they hold the delivery credentials.
        print_json_lines(
            {
                "slug": c.slug,
                "name": c.name,
                "id": c.id,
                "notification_email": c.settings.get("notification_email"),
            }
            for c in clients
        )
        return
    table = Table(title="Clients")
    for heading in ("slug", "name", "id", "notification email"):
        table.add_column(heading)
    for client in clients:
        table.add_row(
            client.slug,
            client.name,
            str(client.id),
            client.settings.get("notification_email") or "",
        )
    console.print(table)


def _load_yaml(path: Path) -> Any:
    try:
        return yaml.safe_load(path.read_text(encoding="utf-8"))
    except OSError as exc:
        fail(f"cannot read {path}: {exc.strerror or exc}")
    except UnicodeDecodeError as exc:
        fail(f"{path}: not UTF-8 text ({exc.reason} at byte {exc.start})")
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" line {mark.line + 1}" if mark is not None else ""
        fail(f"{path}{where}: not valid YAML ({getattr(exc, 'problem', exc)})")


@clients_app.command("set-rules")
def clients_set_rules(
    slug: ClientSlugArgument,
    rules_file: Annotated[Path, typer.Argument(help="A YAML rule set (docs/SCORING.md)")],
) -> None:
    """Validate a scoring rule set and store it for the client; a bad file stores nothing."""
    from lqs.domain.scoring import RulesError, parse_rules  # the rule engine: only here

    spec = _load_yaml(rules_file)
    try:
        rules = parse_rules(spec)
    except RulesError as exc:
        for problem in exc.problems:
            typer.echo(f"rules: {problem}", err=True)
        fail(f"{rules_file}: {len(exc.problems)} problem(s) listed above; nothing was stored")
    for_client(
        slug, lambda conn, found: update_client_settings(conn, found.id, {"scoring_rules": spec})
    )
    console.print(f"stored {len(rules.rules)} scoring rules for {slug}")


@clients_app.command("set-delivery")
def clients_set_delivery(
    slug: ClientSlugArgument,
    delivery_file: Annotated[
        Path, typer.Argument(help="YAML: providers, credentials, base URLs, email failover")
    ],
) -> None:
    """Validate a client's delivery settings (which provider sends what, with which
    credentials) and store them; a bad file stores nothing."""
    spec = _load_yaml(delivery_file)
    if not isinstance(spec, dict):
        fail(f"{delivery_file}: expected a mapping of delivery settings")
    try:
        delivery = parse_delivery_settings(spec)
    except DeliverySettingsError as exc:
        for problem in exc.problems:
            typer.echo(problem, err=True)
        fail(f"{delivery_file}: {len(exc.problems)} problem(s) listed above; nothing was stored")
    for_client(slug, lambda conn, found: update_client_settings(conn, found.id, {"delivery": spec}))
    channels = [
        channel
        for channel in ("email", "sms", "push", "webhook")
        if provider_for(channel, delivery) is not None
    ]
    console.print(f"stored delivery settings for {slug}: {', '.join(channels) or 'no channel'}")


@clients_app.command("configure")
def clients_configure(
    slug: ClientSlugArgument,
    notification_email: Annotated[str | None, typer.Option()] = None,
    notification_phone: Annotated[str | None, typer.Option()] = None,
    region: Annotated[str | None, typer.Option(help="Default phone region")] = None,
    time_zone: Annotated[str | None, typer.Option()] = None,
    acknowledge_leads: Annotated[
        bool | None,
        typer.Option(help="Also email qualified leads an acknowledgement (needs their consent)"),
    ] = None,
) -> None:
    """Change a client's notification settings."""
    patch: dict[str, Any] = {}
    if notification_email is not None:
        patch["notification_email"] = notification_email
    if notification_phone is not None:
        patch["notification_phone"] = notification_phone
    if region is not None:
        patch["default_region"] = region.upper()
    if time_zone is not None:
        patch["time_zone"] = time_zone

    async def store(conn: psycopg.AsyncConnection, client: Client) -> None:
        current = parse_client_settings(client.settings)
        if acknowledge_leads is not None:
            qualified = [r for r in current.notifications.get("qualified", []) if r.to != "lead"]
            if acknowledge_leads:
                qualified.append(
                    NotificationRule(
                        channel=Channel.EMAIL,
                        to="lead",
                        template="lead_acknowledgement",
                    )
                )
            notifications = {**current.notifications, "qualified": qualified}
            patch["notifications"] = {
                outcome: [r.model_dump(mode="json") for r in rules]
                for outcome, rules in notifications.items()
            }
        _validated_settings(client.settings, patch)
        await update_client_settings(conn, client.id, patch)

    for_client(slug, store)
    console.print(f"updated {slug}")


_NOTIFY_HELP = """Choose how the client's staff hear of an outcome, and show every rule.

--via replaces the outcome's messages to the staff (rules to the lead stay as they are):
a channel that already has a rule keeps its template and priority unless --template or
--priority say otherwise; a new one gets the shipped template (lead_qualified,
lead_qualified_sms, lead_qualified_push; lead_webhook for any outcome) at priority 2.
A channel whose recipient or provider is not configured is refused, naming what to set
(email: --notification-email and an email provider; sms: --notification-phone and
twilio; push: webpush; webhook: webhook url and secret, in set-delivery's file); nothing
is stored then. Push goes to every live `lqs push add` subscription: none yet is a
warning. Without --on, only shows the rules."""


@clients_app.command("notify", help=_NOTIFY_HELP)
def clients_notify(
    slug: ClientSlugArgument,
    outcome: Annotated[
        str | None, typer.Option("--on", help="qualified, nurture or disqualified")
    ] = None,
    via: Annotated[
        str | None, typer.Option(help="Channels, comma-separated: email,sms,push,webhook")
    ] = None,
    template: Annotated[
        list[str] | None,
        typer.Option(help="CHANNEL=NAME, or NAME when --via names one channel; repeatable"),
    ] = None,
    priority: Annotated[int | None, typer.Option(help="1 (first) to 10")] = None,
    off: Annotated[bool, typer.Option("--off", help="Send the staff nothing on --on")] = False,
    as_json: JsonOption = False,
) -> None:
    change = _notify_change(outcome, via, template or [], priority, off)

    async def apply(conn: psycopg.AsyncConnection, client: Client) -> _NotifyResult:
        current = parse_client_settings(client.settings)
        live = (await live_push_subscriptions(conn, [client.id])).get(client.id, [])
        if change is None:
            return _NotifyResult(current, len(live), [], [])
        wanted, channels, templates = change
        try:
            delivery = parse_delivery_settings(client.settings.get("delivery"))
        except DeliverySettingsError as exc:
            problems = [f"stored {problem}" for problem in exc.problems]
            return _NotifyResult(current, len(live), [], problems)
        # The shipped templates come with Jinja2: only this command needs them.
        from lqs.domain.default_templates import DEFAULT_TEMPLATES

        stored = await latest_templates(conn, [client.id])
        known = {name: t.channel for name, t in DEFAULT_TEMPLATES.items()}
        known.update({name: Channel(t.channel) for (_, name), t in stored.items()})
        rules, problems = staff_rules(
            wanted, channels, current, templates=templates, priority=priority,
            known_templates=known, slug=slug,
        )  # fmt: skip
        for channel in channels:
            problems += staff_channel_problems(channel, current, delivery, slug)
        if problems:
            return _NotifyResult(current, len(live), [], problems)
        warnings = []
        if Channel.PUSH in channels and not live:
            warnings.append(
                f"push: {slug} has no live push subscription yet: nothing is pushed until "
                f"one is added with `lqs push add --client {slug} ...`"
            )
        patch = {"notifications": current.with_staff_rules(wanted, rules)}
        settings = await update_client_settings(conn, client.id, patch)
        return _NotifyResult(parse_client_settings(settings), len(live), warnings, [])

    result = for_client(slug, apply)
    if result.problems:
        for problem in result.problems:
            typer.echo(problem, err=True)
        fail(f"{len(result.problems)} problem(s) listed above; nothing was stored")
    for warning in result.warnings:
        typer.echo(f"warning: {warning}", err=True)
    rows = _notification_rows(result.settings, result.live_push)
    if change is not None:
        wanted, channels, _ = change
        how = ", ".join(c.value for c in channels) or "nothing"
        typer.echo(f"stored: {wanted} leads now reach {slug}'s staff by {how}", err=as_json)
    if as_json:
        print_json_lines(rows)
        return
    if not rows:
        console.print(f"{slug} has no notification rules: no outcome sends anything")
        return
    table = Table(title=f"Notifications of {slug}")
    for heading in ("outcome", "to", "channel", "template", "priority", "recipient"):
        table.add_column(heading, overflow="fold")  # a URL or template cut short is no use
    for row in rows:
        table.add_row(*(str(row[key]) for key in ("outcome", "to", "channel", "template",
                                                  "priority", "recipient")))  # fmt: skip
    console.print(table)


@dataclass(frozen=True)
class _NotifyResult:
    settings: ClientSettings
    live_push: int
    warnings: list[str]
    problems: list[str]


def _notify_change(
    outcome: str | None, via: str | None, templates: list[str], priority: int | None, off: bool
) -> tuple[Outcome, list[Channel], dict[Channel, str]] | None:
    """What ``lqs clients notify`` was asked to change (None: nothing, only show), or exit
    with one line naming the bad option."""
    if via is not None and off:
        fail("--via and --off: give one")
    if outcome is None:
        if via is not None or off or templates or priority is not None:
            fail("--on OUTCOME is needed with --via, --off, --template or --priority")
        return None
    if outcome not in OUTCOMES:
        fail(f"--on {outcome!r}: use one of {', '.join(OUTCOMES)}")
    wanted: Outcome = outcome
    if via is None and not off:
        fail("--on needs --via CHANNELS (e.g. --via email,sms) or --off")
    if off and (templates or priority is not None):
        fail("--off sends nothing: --template and --priority do not apply")
    if priority is not None and not 1 <= priority <= 10:
        fail(f"--priority {priority}: use 1 (first) to 10")
    channels: list[Channel] = []
    for name in (part.strip() for part in via.split(",")) if via is not None else ():
        if name not in set(Channel):
            fail(f"--via: unknown channel {name!r}; use {', '.join(Channel)} (or --off)")
        channel = Channel(name)
        if channel in channels:
            fail(f"--via: {channel.value} is named twice")
        channels.append(channel)
    chosen: dict[Channel, str] = {}
    for given in templates:
        channel_name, _, name = given.rpartition("=")
        if not channel_name:
            if len(channels) != 1:
                fail(f"--template {given!r}: write CHANNEL={given} when --via names several")
            channel_name = channels[0].value
        if channel_name not in {c.value for c in channels}:
            fail(f"--template {given!r}: {channel_name!r} is not one of the --via channels")
        if not re.fullmatch(r"[a-z0-9_]{1,100}", name):
            fail(f"--template {given!r}: a template id is 1-100 of a-z, 0-9 and _")
        if Channel(channel_name) in chosen:
            fail(f"--template: two templates for {channel_name}")
        chosen[Channel(channel_name)] = name
    return wanted, channels, chosen


def _notification_rows(settings: ClientSettings, live_push: int) -> list[dict[str, Any]]:
    """One row per rule of every outcome, with where its messages go."""
    staff = {
        Channel.EMAIL: settings.notification_email or "(no notification_email)",
        Channel.SMS: settings.notification_phone or "(no notification_phone)",
        Channel.PUSH: f"{live_push} live push subscription(s)",
        Channel.WEBHOOK: settings.webhook_url or "(no webhook url)",
    }
    lead = {Channel.EMAIL: "the lead's email", Channel.SMS: "the lead's phone"}
    return [
        {
            "outcome": outcome,
            "to": rule.to,
            "channel": rule.channel.value,
            "template": rule.template,
            "priority": rule.priority,
            "campaign_id": rule.campaign_id,
            "recipient": staff[rule.channel]
            if rule.to == "client"
            else lead.get(rule.channel, "(nothing: leads have no address on this channel)"),
        }
        for outcome in OUTCOMES
        for rule in settings.notifications.get(outcome, [])
    ]


@keys_app.command("create")
def keys_create(
    client: ClientSlugOption,
    name: Annotated[str, typer.Option(help="What the key is for")] = "default",
    rate_limit: Annotated[int, typer.Option(help="Requests per minute", min=1)] = 600,
) -> None:
    """Create an API key and print it once: only its hash is stored."""

    async def create(conn: psycopg.AsyncConnection, found: Client) -> str:
        _, plaintext = await create_api_key(conn, found.id, name, rate_limit)
        return plaintext

    plaintext = for_client(client, create)
    typer.echo(plaintext)
    typer.echo("Store this key now: it cannot be shown again.", err=True)


@keys_app.command("list")
def keys_list(client: ClientSlugOption, as_json: JsonOption = False) -> None:
    """List a client's keys (prefixes only)."""
    keys = for_client(client, lambda conn, found: list_api_keys(conn, found.id))
    if as_json:
        print_json_lines(keys)
        return
    table = Table(title=f"API keys of {client}")
    for heading in ("prefix", "name", "rate/min", "created", "revoked"):
        table.add_column(heading)
    for key in keys:
        table.add_row(
            key.prefix,
            key.name,
            str(key.rate_limit_per_minute),
            key.created_at.isoformat(timespec="seconds"),
            key.revoked_at.isoformat(timespec="seconds") if key.revoked_at else "",
        )
    console.print(table)


@keys_app.command("revoke")
def keys_revoke(
    key: Annotated[str, typer.Argument(help="The key, or its first 12 characters")],
    client: ClientSlugOption,
) -> None:
    """Revoke a key: requests with it get 401 from then on."""
    count = for_client(client, lambda conn, found: revoke_api_key(conn, found.id, key))
    if count == 0:
        fail(f"no live key of {client} starts with {key[:12]!r}")
    console.print(f"revoked {count} key(s)")


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
    console.print(f"stored {template_id} version {outcome} for {client}")


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
        "country": "GB", "source": "website", "utm_source": "newsletter", "utm_medium": "email",
        "utm_campaign": "spring_launch", "utm_term": "lead scoring", "utm_content": "header_link",
        "custom": {}, "consent_status": "granted", "consent_source": "website form",
        "consent_at": datetime(2026, 3, 2, 9, 58, tzinfo=UTC),
        "received_at": datetime(2026, 3, 2, 10, 0, tzinfo=UTC),
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
