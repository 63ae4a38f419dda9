"""``lqs clients ...`` and ``lqs keys ...``: tenant administration."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

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
from lqs.domain.clients import SLUG_PATTERN, NotificationRule, parse_client_settings
from lqs.domain.delivery import DeliverySettingsError, parse_delivery_settings, provider_for
from lqs.domain.vocabulary import Channel

clients_app = typer.Typer(help="Create and configure clients (tenants).", no_args_is_help=True)
keys_app = typer.Typer(help="Create, list and revoke a client's API keys.", no_args_is_help=True)


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
