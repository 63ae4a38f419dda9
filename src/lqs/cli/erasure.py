"""``lqs leads erase``: erase people's personal data (GDPR Art. 17), by address or lead id.

One person (``--email``, ``--phone``, ``--lead``) or many (``--from-file``: one address
per line), in batches (one short transaction each), with progress for a file. Rerunning
the same command is harmless: what was erased stays erased, and the rest is done.
"""

from __future__ import annotations

import asyncio
import getpass
import os
from pathlib import Path
from typing import Annotated
from uuid import UUID

import typer

from lqs.cli._common import (
    ClientSlugOption,
    IdleRatioOption,
    console,
    database_url,
    fail,
    parse_id,
    settings,
)
from lqs.db.clients import get_client
from lqs.db.erasure import ErasureTally, erase
from lqs.db.pool import open_pool
from lqs.domain.erasure import (
    IDLE_RATIO,
    ErasureRequestError,
    Subject,
    checked_reason,
    email_subject,
    phone_subject,
    subjects_of_lines,
)


def _operator() -> str:
    """Who asked, as the erasures record keeps it: the login name."""
    try:
        return getpass.getuser()
    except (KeyError, OSError):  # no login name and no passwd entry (a bare container)
        return f"uid {os.getuid()}"


def _named(
    email: str | None, phone: str | None, lead: str | None, from_file: Path | None
) -> tuple[list[UUID], list[Subject]]:
    given = [name for name in (email, phone, lead, from_file) if name is not None]
    if len(given) != 1:
        fail("give exactly one of --email, --phone, --lead or --from-file")
    try:
        if email is not None:
            return [], [email_subject(email)]
        if phone is not None:
            return [], [phone_subject(phone)]
        if lead is not None:
            return [parse_id(lead, "--lead")], []
        assert from_file is not None
        with from_file.open(encoding="utf-8-sig") as lines:
            subjects = subjects_of_lines(lines)
    except ErasureRequestError as exc:
        fail(f"{from_file}: {exc}" if from_file is not None else str(exc))
    except (OSError, UnicodeDecodeError) as exc:
        fail(f"cannot read {from_file}: {getattr(exc, 'strerror', None) or exc}")
    if not subjects:
        fail(f"{from_file} names nobody: give one email address or phone number per line")
    return [], subjects


def leads_erase(
    client: ClientSlugOption,
    reason: Annotated[str, typer.Option(help="Why (kept in the record; name no person)")],
    email: Annotated[str | None, typer.Option(help="Erase every lead with this email")] = None,
    phone: Annotated[str | None, typer.Option(help="... with this E.164 phone number")] = None,
    lead: Annotated[str | None, typer.Option(help="Erase this lead (its id)")] = None,
    from_file: Annotated[
        Path | None, typer.Option(help="One email address or phone number per line")
    ] = None,
    idle_ratio: IdleRatioOption = IDLE_RATIO,
) -> None:
    """Erase people's personal data everywhere LQS keeps it, and keep them suppressed.

    Their leads, messages, delivery events, consent history details and stored answers
    are anonymised (ids, statuses and timestamps stay); pending messages are cancelled;
    the addresses stay suppressed by a keyed hash until the person gives consent again.
    CSV reject files written by ``lqs leads import`` are yours to delete. Many people
    (--from-file) are erased 200 at a time, each batch followed by a pause (--idle-ratio)
    so that sending and processing keep their pace.
    """
    try:
        why = checked_reason(reason)
    except ErasureRequestError as exc:
        fail(str(exc))
    lead_ids, subjects = _named(email, phone, lead, from_file)
    total = len(lead_ids) + len(subjects)
    show_progress = from_file is not None

    def progress(done: int, of: int) -> None:
        if show_progress:
            typer.echo(f"erased {done}/{of}", err=True)

    async def run(url: str) -> tuple[UUID, ErasureTally]:
        pool = await open_pool(url, min_size=1, max_size=2, name="lqs-erase")
        try:
            async with pool.connection() as conn:
                found = await get_client(conn, client)
            return await erase(
                pool,
                found.id,
                f"operator:{_operator()}",
                why,
                lead_ids=lead_ids,
                subjects=subjects,
                idle_ratio=idle_ratio,
                on_progress=progress,
            )
        finally:
            await pool.close()

    with database_url(settings()) as url:
        erasure_id, tally = asyncio.run(run(url))
    counts = tally.counts
    if counts["leads"] == 0 and not tally.in_flight:
        if lead_ids:
            fail(f"no lead {lead_ids[0]} of {client} is left to erase (erasure {erasure_id})")
        console().print(
            f"nothing to erase: no lead of {client} matches (the {total} address(es) are "
            f"suppressed); erasure {erasure_id}"
        )
        return
    console().print(
        f"erasure {erasure_id}: {counts['leads']} lead(s) erased"
        f" (longest transaction {tally.longest_batch * 1000:.0f} ms)"
    )
    for table in sorted(counts):
        if table != "leads" and counts[table]:
            console().print(f"  {table}: {counts[table]}")
    if tally.in_flight:
        fail(
            f"{len(tally.in_flight)} lead(s) still have a message being sent; run the same "
            "command again to finish them"
        )
