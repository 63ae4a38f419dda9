"""``lqs suppressions ...``: the recipients a client must not contact again."""

from __future__ import annotations

from typing import Annotated

import typer
from email_validator import EmailNotValidError, validate_email
from rich.table import Table

from lqs.cli._common import ClientSlugOption, console, fail, for_client
from lqs.cli.output import JsonOption, print_json_lines
from lqs.db.suppressions import list_suppressions, suppress, unsuppress
from lqs.domain.erasure import ERASED_LABEL
from lqs.domain.notifications import normalise_recipient

app = typer.Typer(help="List, add and remove suppressed recipients.", no_args_is_help=True)

CHANNELS = ("email", "sms", "push", "webhook")

_RecipientArgument = Annotated[str, typer.Argument(help="Email address, E.164 number, ...")]
_ChannelOption = Annotated[str, typer.Option(help="email, sms, push or webhook")]


def _channel(value: str) -> str:
    if value not in CHANNELS:
        fail(f"--channel must be one of {', '.join(CHANNELS)}, not {value!r}")
    return value


def _recipient(channel: str, value: str) -> str:
    value = value.strip()
    if channel == "email":
        try:
            return validate_email(value, check_deliverability=False).normalized.lower()
        except EmailNotValidError as exc:
            fail(f"RECIPIENT is not a valid email address: {exc}")
    if channel == "sms" and not (
        value.startswith("+") and value[1:].isascii() and value[1:].isdigit()
    ):
        fail("RECIPIENT must be an E.164 phone number (+ and digits) for --channel sms")
    return normalise_recipient(channel, value)


@app.command("list")
def suppressions_list(
    client: ClientSlugOption,
    channel: Annotated[str | None, typer.Option(help="Only this channel")] = None,
    limit: Annotated[int, typer.Option(min=1, max=100_000)] = 1000,
    as_json: JsonOption = False,
) -> None:
    """The client's suppression list, newest first."""
    wanted = None if channel is None else _channel(channel)
    rows = for_client(
        client,
        lambda conn, found: list_suppressions(conn, found.id, channel=wanted, limit=limit),
    )
    if as_json:
        print_json_lines(rows)
        return
    table = Table("channel", "recipient", "reason", "since", "source")
    for row in rows:
        table.add_row(
            row.channel, row.recipient or ERASED_LABEL, row.reason,
            f"{row.created_at:%Y-%m-%d %H:%M}",
            row.source or "",
        )  # fmt: skip
    console().print(table)
    console().print(f"{len(rows)} suppressed recipient(s)")


@app.command("add")
def suppressions_add(
    recipient: _RecipientArgument,
    client: ClientSlugOption,
    channel: _ChannelOption = "email",
    note: Annotated[str | None, typer.Option(help="Why (kept as the source)")] = None,
) -> None:
    """Suppress a recipient by hand (reason ``manual``)."""
    chosen = _channel(channel)
    address = _recipient(chosen, recipient)
    added = for_client(
        client,
        lambda conn, found: suppress(
            conn, found.id, chosen, address, "manual", note or "lqs suppressions add"
        ),
    )
    console().print(f"{'suppressed' if added else 'already suppressed'}: {chosen} {address}")


@app.command("remove")
def suppressions_remove(
    recipient: _RecipientArgument,
    client: ClientSlugOption,
    channel: _ChannelOption = "email",
) -> None:
    """Take a recipient off the list (their consent history is kept)."""
    chosen = _channel(channel)
    address = _recipient(chosen, recipient)
    removed = for_client(client, lambda conn, found: unsuppress(conn, found.id, chosen, address))
    if not removed:
        fail(f"{chosen} {address} is not on {client}'s suppression list")
    console().print(f"removed: {chosen} {address}")
