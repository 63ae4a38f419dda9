"""``lqs clients ...`` and ``lqs keys ...``: tenant administration."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, NoReturn

import psycopg
import typer
import yaml
from pydantic import ValidationError
from rich.table import Table

from lqs.cli import client_view
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
from lqs.db.templates import latest_templates
from lqs.domain.clients import (
    MAX_KEY_NAME,
    MAX_NAME,
    MAX_RATE_LIMIT,
    MAX_SLUG,
    OUTCOMES,
    ClientSettings,
    NotificationRule,
    Outcome,
    name_problem,
    parse_client_settings,
    rate_limit_problem,
    region_problem,
    slug_problem,
)
from lqs.domain.delivery import DeliverySettingsError, parse_delivery_settings, provider_for
from lqs.domain.leads import normalise_email, normalise_phone
from lqs.domain.notifications import staff_channel_problems, staff_rules
from lqs.domain.send_rules import SendRules
from lqs.domain.vocabulary import Channel

clients_app = typer.Typer(help="Create and configure clients (tenants).", no_args_is_help=True)
keys_app = typer.Typer(help="Create, list and revoke a client's API keys.", no_args_is_help=True)


_OPTION_OF_SETTING = {
    "default_region": "--region",
    "notification_email": "--notification-email",
    "notification_phone": "--notification-phone",
    "time_zone": "--time-zone",
}


def _refuse(problems: list[str]) -> NoReturn:
    """Exit 1 naming every problem, one line each; nothing was stored."""
    if len(problems) == 1:
        fail(f"{problems[0]}; nothing was stored")
    for problem in problems:
        typer.echo(problem, err=True)
    fail(f"{len(problems)} problems listed above; nothing was stored")


def _settings_patch(
    current: dict[str, Any],
    *,
    notification_email: str | None = None,
    notification_phone: str | None = None,
    region: str | None = None,
    time_zone: str | None = None,
) -> tuple[dict[str, Any], list[str]]:
    """The settings the options set, normalised (an address as email-validator writes it, a
    phone number in E.164), and every problem with them or with the settings they make."""
    patch: dict[str, Any] = {}
    problems: list[str] = []
    if region is not None:
        problem = region_problem(region.strip().upper())
        if problem is None:
            patch["default_region"] = region.strip().upper()
        else:
            problems.append(f"--region {region!r}: {problem}")
    if notification_email is not None:
        # The same check as a lead's email (intake and CSV import).
        try:
            patch["notification_email"] = normalise_email(notification_email.strip())
        except ValueError as exc:
            problems.append(f"--notification-email {notification_email!r}: {exc}")
    if notification_phone is not None:
        # The same check as a lead's phone; a number without + is read in the client's region.
        phone_region = patch.get("default_region") or current.get("default_region") or "US"
        try:
            patch["notification_phone"] = normalise_phone(notification_phone, str(phone_region))
        except ValueError as exc:
            problems.append(
                f"--notification-phone {notification_phone!r}: {exc}; write it in E.164, "
                "such as +14155550100"
            )
    if time_zone is not None:
        patch["time_zone"] = time_zone
    try:
        parse_client_settings({**current, **patch})
    except ValidationError as exc:
        for error in exc.errors():
            key = ".".join(str(p) for p in error["loc"])
            problems.append(f"{_OPTION_OF_SETTING.get(key, key)}: {error['msg']}")
    return patch, problems


@clients_app.command("create")
def clients_create(
    name: Annotated[str, typer.Argument(help=f"The client's display name (up to {MAX_NAME})")],
    slug: Annotated[
        str,
        typer.Option(help=f"Short unique id: 1-{MAX_SLUG} lowercase letters, digits, dashes"),
    ],
    notification_email: Annotated[
        str | None, typer.Option(metavar="EMAIL", help="Where qualified-lead emails go")
    ] = None,
    region: Annotated[
        str, typer.Option(help="Default phone region: an ISO 3166 country code")
    ] = "US",
) -> None:
    """Create a client. Every problem with the options is listed; a bad one stores nothing."""
    problems = []
    problem = name_problem(name.strip())
    if problem is not None:
        problems.append(f"NAME {name[:40]!r}: {problem}")
    problem = slug_problem(slug)
    if problem is not None:
        problems.append(f"--slug {slug[:80]!r}: {problem}")
    initial, more = _settings_patch({}, notification_email=notification_email, region=region)
    problems += more
    if problems:
        _refuse(problems)
    client = in_transaction(lambda conn: create_client(conn, name.strip(), slug, initial))
    console().print(f"created client {client.slug} ({client.id})")


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
    console().print(table)


clients_app.command("show")(client_view.clients_show)


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
    console().print(f"stored {len(rules.rules)} scoring rules for {slug}")


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
    console().print(f"stored delivery settings for {slug}: {', '.join(channels) or 'no channel'}")


_SEND_RULE_KEYS = ("send_window", "frequency_cap")


@clients_app.command("set-send-rules")
def clients_set_send_rules(
    slug: ClientSlugArgument,
    rules_file: Annotated[
        Path, typer.Argument(help="YAML: send_window and frequency_cap (docs/COMPLIANCE.md)")
    ],
) -> None:
    """Store a client's quiet hours (send windows) and frequency caps, replacing both; every
    problem is listed, one line each, and a bad file stores nothing."""
    spec = _load_yaml(rules_file)
    if not isinstance(spec, dict):
        fail(f"{rules_file}: expected a mapping with send_window and frequency_cap")
    problems = [
        f"{key}: unknown key; expected one of {', '.join(_SEND_RULE_KEYS)}"
        for key in spec
        if key not in _SEND_RULE_KEYS
    ]
    try:
        rules = SendRules.model_validate(spec)
    except ValidationError as exc:
        problems += [
            f"{'.'.join(str(p) for p in e['loc'])}: {e['msg'].removeprefix('Value error, ')}"
            for e in exc.errors()
        ]
    if problems:
        for problem in problems:
            typer.echo(problem, err=True)
        fail(f"{rules_file}: {len(problems)} problem(s) listed above; nothing was stored")
    patch = {key: spec.get(key) or {} for key in _SEND_RULE_KEYS}
    for_client(slug, lambda conn, found: update_client_settings(conn, found.id, patch))
    windows = [
        f"{channel} {window.start}-{window.end}"
        for channel, window in rules.send_window.items()
        if window is not None
    ]
    caps = [
        f"{channel} {cap.max} per 24 h ({cap.action})"
        for channel, cap in rules.frequency_cap.items()
        if cap is not None
    ]
    console().print(
        f"stored send rules for {slug}: windows: {', '.join(windows) or 'none'};"
        f" caps: {', '.join(caps) or 'none'}"
    )


@clients_app.command("configure")
def clients_configure(
    slug: ClientSlugArgument,
    notification_email: Annotated[
        str | None, typer.Option(metavar="EMAIL", help="Where qualified-lead emails go")
    ] = None,
    notification_phone: Annotated[
        str | None,
        typer.Option(metavar="PHONE", help="The staff's phone for SMS, E.164 (+14155550100)"),
    ] = None,
    region: Annotated[
        str | None, typer.Option(help="Default phone region: an ISO 3166 country code")
    ] = None,
    time_zone: Annotated[
        str | None, typer.Option(metavar="ZONE", help="An IANA time zone (Europe/Berlin)")
    ] = None,
    acknowledge_leads: Annotated[
        bool | None,
        typer.Option(help="Also email qualified leads an acknowledgement (needs their consent)"),
    ] = None,
) -> None:
    """Change a client's notification settings. Every problem with the options is listed;
    a bad one stores nothing."""

    async def store(conn: psycopg.AsyncConnection, client: Client) -> None:
        patch, problems = _settings_patch(
            client.settings,
            notification_email=notification_email,
            notification_phone=notification_phone,
            region=region,
            time_zone=time_zone,
        )
        if problems:
            _refuse(problems)  # inside the transaction: it rolls back
        if acknowledge_leads is not None:
            current = parse_client_settings(client.settings)
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
        await update_client_settings(conn, client.id, patch)

    for_client(slug, store)
    console().print(f"updated {slug}")


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
        console().print(f"{slug} has no notification rules: no outcome sends anything")
        return
    table = Table(title=f"Notifications of {slug}")
    for heading in ("outcome", "to", "channel", "template", "priority", "recipient"):
        table.add_column(heading, overflow="fold")  # a URL or template cut short is no use
    for row in rows:
        table.add_row(*(str(row[key]) for key in ("outcome", "to", "channel", "template",
                                                  "priority", "recipient")))  # fmt: skip
    console().print(table)


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
    name: Annotated[
        str, typer.Option(help=f"What the key is for (up to {MAX_KEY_NAME} characters)")
    ] = "default",
    rate_limit: Annotated[
        int, typer.Option(metavar="N", help=f"Requests per minute, 1 to {MAX_RATE_LIMIT:,}")
    ] = 600,
) -> None:
    """Create an API key and print it once: only its hash is stored."""
    problems = []
    problem = name_problem(name.strip(), limit=MAX_KEY_NAME)
    if problem is not None:
        problems.append(f"--name {name[:40]!r}: {problem}")
    problem = rate_limit_problem(rate_limit)
    if problem is not None:
        problems.append(f"--rate-limit {rate_limit}: {problem}")
    if problems:
        _refuse(problems)

    async def create(conn: psycopg.AsyncConnection, found: Client) -> str:
        _, plaintext = await create_api_key(conn, found.id, name.strip(), rate_limit)
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
    console().print(table)


@keys_app.command("revoke")
def keys_revoke(
    key: Annotated[str, typer.Argument(help="The key, or its first 12 characters")],
    client: ClientSlugOption,
) -> None:
    """Revoke a key: requests with it get 401 from then on."""
    count = for_client(client, lambda conn, found: revoke_api_key(conn, found.id, key))
    if count == 0:
        fail(f"no live key of {client} starts with {key[:12]!r}")
    console().print(f"revoked {count} key(s)")
