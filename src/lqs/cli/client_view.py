"""``lqs clients show SLUG``: everything a client is configured with, and what it holds.

Its settings (notification addresses, the messages each outcome sends), its scoring rules
as stored, its delivery settings with every secret masked (``mask_secret``: a format
prefix, ``••••`` and at most the last 4 characters), and counts of its leads by status,
API keys, push subscriptions, templates and suppressions. Settings LQS does not know are
shown masked whole: nothing unknown is assumed not to be secret.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

import psycopg
from pydantic import ValidationError
from rich.table import Table
from rich.text import Text

from lqs.cli._common import ClientSlugArgument, console, for_client
from lqs.cli.output import JsonOption, print_json_lines
from lqs.db.clients import Client
from lqs.db.reports import ClientHoldings, client_holdings
from lqs.domain.clients import ClientSettings, parse_client_settings
from lqs.domain.delivery import (
    DeliverySettingsError,
    mask_unknown,
    masked_delivery,
    parse_delivery_settings,
    provider_for,
)

_KNOWN = frozenset(ClientSettings.model_fields) | {"delivery"}
"""Top-level settings shown as they are (delivery: masked); any other is masked whole."""
_OUTCOMES = ("qualified", "nurture", "disqualified")


def _notifications(raw: Mapping[str, Any], parsed: ClientSettings | None) -> dict[str, Any]:
    if parsed is None:
        found = raw.get("notifications")
        return dict(found) if isinstance(found, Mapping) else {}
    return {
        outcome: [r.model_dump(mode="json") for r in rules]
        for outcome, rules in parsed.notifications.items()
    }


def _acknowledges(notifications: Mapping[str, Any]) -> bool:
    """Whether qualified leads get a message of their own (``clients configure
    --acknowledge-leads``)."""
    rules = notifications.get("qualified") or []
    return any(isinstance(r, Mapping) and r.get("to") == "lead" for r in rules)


def _delivery(raw: object) -> tuple[dict[str, object], dict[str, str], list[str]]:
    """(the delivery settings masked, the provider sending each channel, the problems)."""
    stored = raw if isinstance(raw, Mapping) else {}
    try:
        parsed = parse_delivery_settings(stored)
    except DeliverySettingsError as exc:
        return masked_delivery(stored), {}, exc.problems
    channels = {
        channel: provider
        for channel in ("email", "sms", "push", "webhook")
        if (provider := provider_for(channel, parsed)) is not None
    }
    failover = provider_for("email", parsed, primary_failing=True)
    if "email" in channels and failover not in (None, channels["email"]):
        channels["email"] += (
            f" (then {failover} after {parsed.email.failover_after} transient failures)"
        )
    return masked_delivery(stored), channels, []


def client_view(client: Client, holdings: ClientHoldings) -> dict[str, Any]:
    """What ``lqs clients show`` shows, as plain JSON values, secrets masked."""
    raw = client.settings
    problems: list[str] = []
    try:
        parsed: ClientSettings | None = parse_client_settings(raw)
    except ValidationError as exc:
        parsed = None
        for err in exc.errors():
            where = ".".join(str(p) for p in err["loc"])
            problems.append(f"settings.{where}: {err['msg'].removeprefix('Value error, ')}")
    notifications = _notifications(raw, parsed)
    delivery, channels, delivery_problems = _delivery(raw.get("delivery"))
    return {
        "id": str(client.id),
        "name": client.name,
        "slug": client.slug,
        "created_at": holdings.created_at.isoformat(),
        "settings": {
            "time_zone": parsed.time_zone if parsed else raw.get("time_zone"),
            "default_region": parsed.default_region if parsed else raw.get("default_region"),
            "notification_email": raw.get("notification_email"),
            "notification_phone": raw.get("notification_phone"),
            "acknowledge_leads": _acknowledges(notifications),
            "notifications": notifications,
        },
        "scoring_rules": raw.get("scoring_rules"),
        "delivery": delivery,
        "channels": channels,
        "other_settings": {k: mask_unknown(v) for k, v in raw.items() if k not in _KNOWN},
        "counts": {
            "leads": holdings.leads,
            "live_api_keys": holdings.live_api_keys,
            "revoked_api_keys": holdings.revoked_api_keys,
            "push_subscriptions": holdings.push_subscriptions,
            "templates": holdings.templates,
            "suppressions": holdings.suppressions,
        },
        "problems": problems + delivery_problems,
    }


def _compact(value: object) -> str:
    return json.dumps(value, ensure_ascii=False, separators=(", ", ": "))


def _rules_table(spec: object) -> Table | str:
    """A stored rule set summarised: one row per rule; anything else as JSON."""
    rules = spec.get("rules") if isinstance(spec, Mapping) else None
    if not isinstance(spec, Mapping) or not isinstance(rules, list):
        return f"scoring rules (as stored): {_compact(spec)}"
    table = Table(
        title=Text(
            f"Scoring rules: thresholds {_compact(spec.get('thresholds'))}"
            + (f", grades {_compact(spec['grades'])}" if spec.get("grades") else "")
        )
    )
    for heading in ("id", "v", "field", "when", "points", "reason"):
        table.add_column(heading)
    for rule in rules:
        item = rule if isinstance(rule, Mapping) else {"when": rule}
        points = "disqualify" if item.get("disqualify") else str(item.get("points", ""))
        table.add_row(
            *map(Text, (
                str(item.get("id", "")), str(item.get("version", 1)), str(item.get("field", "")),
                _compact(item.get("when")), points, str(item.get("reason") or ""),
            ))
        )  # fmt: skip
    return table


def _print(view: Mapping[str, Any]) -> None:
    settings = view["settings"]
    lines = [
        ("client", f"{view['slug']} ({view['name']})"),
        ("id", view["id"]),
        ("created", view["created_at"]),
        ("time zone", settings["time_zone"]),
        ("default region", settings["default_region"]),
        ("notification email", settings["notification_email"] or "-"),
        ("notification phone", settings["notification_phone"] or "-"),
        ("acknowledge leads", "yes" if settings["acknowledge_leads"] else "no"),
    ]
    counts = view["counts"]
    leads = ", ".join(f"{n} {status}" for status, n in sorted(counts["leads"].items()))
    lines += [
        ("leads", leads or "none"),
        ("API keys", f"{counts['live_api_keys']} live, {counts['revoked_api_keys']} revoked"),
        ("push subscriptions", str(counts["push_subscriptions"])),
        ("templates stored", str(counts["templates"])),
        ("suppressions", str(counts["suppressions"])),
        ("channels", ", ".join(f"{c}: {p}" for c, p in view["channels"].items()) or "none"),
    ]
    width = max(len(name) for name, _ in lines)
    for name, value in lines:
        console().print(f"{name:<{width}}  {value}", markup=False, highlight=False)
    for problem in view["problems"]:
        console().print(f"problem: {problem}", markup=False, style="red")

    notifications = Table(title="Notifications (what each outcome sends)")
    for heading in ("outcome", "channel", "to", "template", "priority", "campaign"):
        notifications.add_column(heading)
    for outcome in _OUTCOMES:
        rules = settings["notifications"].get(outcome) or []
        rules = rules if isinstance(rules, list) else [rules]
        if not rules:
            notifications.add_row(outcome, "-", "", "", "", "")
        for rule in rules:
            item = rule if isinstance(rule, Mapping) else {"template": _compact(rule)}
            notifications.add_row(
                *map(Text, (
                    outcome, str(item.get("channel", "")), str(item.get("to", "")),
                    str(item.get("template", "")), str(item.get("priority", "")),
                    str(item.get("campaign_id") or ""),
                ))
            )  # fmt: skip
    console().print(notifications)

    spec = view["scoring_rules"]
    default = "scoring rules: the default set (docs/SCORING.md)"
    console().print(_rules_table(spec) if spec is not None else default, markup=False)

    delivery = Table(title="Delivery (secrets masked)")
    for heading in ("provider", "setting", "value"):
        delivery.add_column(heading)
    for provider, values in view["delivery"].items():
        items = values.items() if isinstance(values, Mapping) else [("", values)]
        for key, value in items:
            shown = value if isinstance(value, str) else _compact(value)
            delivery.add_row(Text(provider), Text(str(key)), Text(shown))
    console().print(delivery if view["delivery"] else "delivery: none configured")
    if view["other_settings"]:
        console().print(
            f"other settings (masked): {_compact(view['other_settings'])}", markup=False
        )


def clients_show(slug: ClientSlugArgument, as_json: JsonOption = False) -> None:
    """Show a client: settings, notification rules, scoring rules, delivery settings (every
    secret masked) and counts of its leads, API keys, push subscriptions and templates."""

    async def read(conn: psycopg.AsyncConnection, found: Client) -> dict[str, Any]:
        holdings = await client_holdings(conn, found.id)
        assert holdings is not None  # found in this transaction
        return client_view(found, holdings)

    view = for_client(slug, read)
    if as_json:
        print_json_lines([view])
        return
    _print(view)
