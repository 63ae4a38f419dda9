"""``lqs users ...``: the people who sign in to LQS itself (``POST /auth/login``).

For deployments without Supabase Auth. A user belongs to one client; ``--admin`` makes
them an admin of it (otherwise a member). A password is given on stdin
(``--password-stdin``) or generated and printed once; only its argon2id hash is stored.
"""

from __future__ import annotations

import sys
from datetime import UTC, datetime
from typing import Annotated

import psycopg
import typer
from rich.table import Table

from lqs.cli._common import ClientSlugOption, console, fail, for_client, in_transaction
from lqs.cli.output import JsonOption, print_json_lines
from lqs.db.clients import Client, get_client
from lqs.db.users import UserAccount, add_user, list_users, set_disabled, set_password
from lqs.domain.leads import normalise_email
from lqs.domain.passwords import generate_password, hash_password, password_problem

app = typer.Typer(
    help="Add, list, disable and enable the users who sign in to LQS, and reset their passwords.",
    no_args_is_help=True,
)

_EmailArgument = Annotated[str, typer.Argument(metavar="EMAIL", help="The user's email")]
_PasswordStdinOption = Annotated[
    bool,
    typer.Option(
        "--password-stdin",
        help="Read the password from stdin (its first line) instead of generating one",
    ),
]


def _email(value: str, name: str) -> str:
    """``value`` as email-validator normalises it, or exit with one line."""
    try:
        return normalise_email(value.strip())
    except ValueError as exc:
        fail(f"{name} {value[:80]!r} is not a valid email address: {exc}")


def _new_password(from_stdin: bool) -> tuple[str, bool]:
    """The password to store and whether it was generated (then it is printed once), or
    exit with one line when the one given is too short or too long."""
    if not from_stdin:
        return generate_password(), True
    given = sys.stdin.readline().rstrip("\r\n")
    problem = password_problem(given)
    if problem is not None:
        fail(f"the password from stdin cannot be used: {problem}; nothing was stored")
    return given, False


def _show_generated(password: str) -> None:
    typer.echo(password)
    typer.echo("Store this password now: it cannot be shown again.", err=True)


@app.command("add")
def users_add(
    client: ClientSlugOption,
    email: Annotated[str, typer.Option(metavar="EMAIL", help="The address they sign in with")],
    admin: Annotated[
        bool, typer.Option("--admin", help="An admin of the client (default: a member)")
    ] = False,
    password_stdin: _PasswordStdinOption = False,
) -> None:
    """Add a user to a client: they sign in with their email and password.

    Without --password-stdin a password is generated and printed once (stdout)."""
    address = _email(email, "--email")
    password, generated = _new_password(password_stdin)
    password_hash = hash_password(password)

    async def add(conn: psycopg.AsyncConnection, found: Client) -> UserAccount:
        return await add_user(
            conn, found.id, address, password_hash, "admin" if admin else "member"
        )

    account = for_client(client, add)
    typer.echo(f"added {account.email} to {client} as {account.role} ({account.id})", err=True)
    if generated:
        _show_generated(password)


@app.command("list")
def users_list(
    client: Annotated[
        str | None, typer.Option("--client", metavar="SLUG", help="Only this client's users")
    ] = None,
    as_json: JsonOption = False,
) -> None:
    """List users (never their password hashes), by client then email; --json adds ids."""

    async def listed(conn: psycopg.AsyncConnection) -> list[UserAccount]:
        found = None if client is None else await get_client(conn, client)
        return await list_users(conn, None if found is None else found.id)

    accounts = in_transaction(listed)
    if as_json:
        print_json_lines(accounts)
        return
    table = Table(title="Users" if client is None else f"Users of {client}")
    table.add_column("email", no_wrap=True)  # the one column a reader needs whole
    for heading in ("client", "role", "state", "added"):
        table.add_column(heading)
    now = datetime.now(UTC)
    for account in accounts:
        table.add_row(
            account.email,
            account.client_slug,
            account.role,
            _state(account, now),
            f"{account.created_at:%Y-%m-%d}",
        )
    console().print(table)


def _state(account: UserAccount, now: datetime) -> str:
    if account.disabled_at is not None:
        return "disabled"
    if account.locked_until is not None and account.locked_until > now:
        return f"locked until {account.locked_until.isoformat(timespec='seconds')}"
    return "active"


@app.command("disable")
def users_disable(email: _EmailArgument) -> None:
    """Stop a user signing in (tokens already issued run out on their own, LQS_JWT_TTL)."""
    address = _email(email, "EMAIL")
    account = in_transaction(lambda conn: set_disabled(conn, address, disabled=True))
    typer.echo(f"disabled {account.email}")


@app.command("enable")
def users_enable(email: _EmailArgument) -> None:
    """Let a disabled user sign in again."""
    address = _email(email, "EMAIL")
    account = in_transaction(lambda conn: set_disabled(conn, address, disabled=False))
    typer.echo(f"enabled {account.email}")


@app.command("reset-password")
def users_reset_password(
    email: _EmailArgument, password_stdin: _PasswordStdinOption = False
) -> None:
    """Give a user a new password, and lift any lockout.

    Without --password-stdin one is generated and printed once (stdout)."""
    address = _email(email, "EMAIL")
    password, generated = _new_password(password_stdin)
    password_hash = hash_password(password)
    account = in_transaction(lambda conn: set_password(conn, address, password_hash))
    typer.echo(f"reset the password of {account.email}", err=True)
    if generated:
        _show_generated(password)
