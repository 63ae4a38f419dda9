"""``lqs push ...``: the browser push subscriptions a client's push messages go to."""

from __future__ import annotations

import base64
import binascii
import re
from typing import Annotated

import typer
from rich.table import Table

from lqs.cli._common import ClientSlugOption, console, fail, for_client, in_transaction, parse_id
from lqs.cli.output import JsonOption, QuietOption, print_json_lines
from lqs.db.push import (
    add_push_subscription,
    list_push_subscriptions,
    remove_push_subscription,
)

app = typer.Typer(help="Manage a client's browser push subscriptions.", no_args_is_help=True)

_ENDPOINT = re.compile(r"https?://[^\s/?#]+(/\S*)?")


def _key_bytes(value: str, name: str) -> bytes:
    try:
        return base64.urlsafe_b64decode(value + "=" * (-len(value) % 4))
    except (binascii.Error, ValueError):
        fail(f"--{name} must be base64url (as PushSubscription.getKey() gives it)")


@app.command("add")
def push_add(
    client: ClientSlugOption,
    endpoint: Annotated[str, typer.Option(help="The subscription's endpoint URL")],
    p256dh: Annotated[str, typer.Option(help="The subscription's p256dh key (base64url)")],
    auth: Annotated[str, typer.Option(help="The subscription's auth secret (base64url)")],
    label: Annotated[str | None, typer.Option(help="Whose browser this is")] = None,
    quiet: QuietOption = False,
) -> None:
    """Register a browser subscription (from ``PushSubscription.toJSON()``) for a client."""
    if not _ENDPOINT.fullmatch(endpoint) or len(endpoint) > 2048:
        fail("--endpoint must be an http(s) URL of at most 2048 characters")
    if len(_key_bytes(p256dh, "p256dh")) != 65:
        fail("--p256dh must be a 65-byte uncompressed P-256 public key")
    if len(_key_bytes(auth, "auth")) != 16:
        fail("--auth must be a 16-byte secret")
    if label is not None and len(label) > 100:
        fail("--label is at most 100 characters")
    subscription = for_client(
        client,
        lambda conn, found: add_push_subscription(conn, found.id, endpoint, p256dh, auth, label),
    )
    if quiet:
        typer.echo(str(subscription.id))
        return
    console().print(f"push subscription {subscription.id} for {client}")


@app.command("list")
def push_list(client: ClientSlugOption, as_json: JsonOption = False) -> None:
    """A client's push subscriptions; gone ones are those the push service refused."""
    rows = for_client(client, lambda conn, found: list_push_subscriptions(conn, found.id))
    if as_json:
        print_json_lines(rows)
        return
    table = Table("id", "label", "endpoint", "created", "gone")
    for row in rows:
        table.add_row(
            str(row.id), row.label or "", row.endpoint[:60], f"{row.created_at:%Y-%m-%d %H:%M}",
            f"{row.gone_at:%Y-%m-%d %H:%M}" if row.gone_at else "",
        )  # fmt: skip
    console().print(table)


@app.command("remove")
def push_remove(
    subscription_id: Annotated[str, typer.Argument(help="The subscription id")],
) -> None:
    """Delete a push subscription."""
    wanted = parse_id(subscription_id, "the subscription id")
    if not in_transaction(lambda conn: remove_push_subscription(conn, wanted)):
        fail(f"no push subscription {wanted}")
    console().print(f"removed push subscription {wanted}")
