"""SQL for the leads table family: intake (insert or merge), the processor's claim, results.

Every statement is set-based: a batch of leads is one statement, not one per lead.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, fields
from datetime import datetime
from typing import Any
from uuid import UUID

from psycopg import AsyncConnection, DataError, errors, sql
from psycopg.rows import dict_row
from psycopg.types.json import Jsonb

from lqs.db.connection import notify
from lqs.db.consent import ConsentChange, record_consent_changes
from lqs.domain.erasure import placeholder_email
from lqs.domain.leads import CONSENT_FIELDS, LEAD_FIELDS, NewLead
from lqs.domain.vocabulary import ConsentStatus, LeadStatus

LEADS_QUEUED_CHANNEL = "lqs_leads_queued"
"""NOTIFY channel: a lead was queued; processors waiting on it wake at once."""


@dataclass(frozen=True)
class StoredLead:
    """What intake reports for each submitted lead, in submission order."""

    id: UUID
    status: str
    duplicate: bool


_NEW_LEAD_FIELDS = tuple(f.name for f in fields(NewLead) if f.name != "consent_proof")
"""What a lead's row holds: the consent proof goes to the consent history instead."""


def _row(lead: NewLead) -> dict[str, Any]:
    # Not dataclasses.asdict: it deep-copies every value, a third of a batch's cost.
    row = {name: getattr(lead, name) for name in _NEW_LEAD_FIELDS}
    row["consent_status"] = lead.consent_status.value
    row["consent_at"] = lead.consent_at.isoformat() if lead.consent_at else None
    row["custom"] = dict(lead.custom)
    row["dedupe_key"] = lead.dedupe_key
    return row


def merge_within_batch(leads: Sequence[NewLead]) -> tuple[list[NewLead], list[int]]:
    """Fold leads that share a dedupe key into one (later non-empty values win).

    Returns the distinct leads and, for each submitted lead, the index of its distinct lead.
    An ``INSERT ... ON CONFLICT`` cannot touch one row twice, so the batch must be distinct.
    """
    distinct: list[NewLead] = []
    where: dict[str, int] = {}
    positions: list[int] = []
    for lead in leads:
        index = where.get(lead.dedupe_key)
        if index is None:
            where[lead.dedupe_key] = len(distinct)
            positions.append(len(distinct))
            distinct.append(lead)
            continue
        earlier = {name: getattr(distinct[index], name) for name in _NEW_LEAD_FIELDS}
        later = {name: getattr(lead, name) for name in _NEW_LEAD_FIELDS}
        merged = {k: (later[k] if later[k] is not None else earlier[k]) for k in earlier}
        merged["custom"] = {**earlier["custom"], **later["custom"]}
        proof = lead.consent_proof
        if lead.consent_status == "unknown":
            # As the database merges: an unknown status keeps the earlier consent whole.
            merged.update({name: earlier[name] for name in CONSENT_FIELDS})
            proof = distinct[index].consent_proof
        distinct[index] = NewLead(**merged, consent_proof=proof)
        positions.append(index)
    return distinct, positions


_COLUMNS: tuple[str, ...] = (*LEAD_FIELDS, "custom", "dedupe_key")
"""The leads columns intake writes, in the order of the staging table and its COPY."""


def _column_list() -> sql.Composable:
    return sql.SQL(", ").join(sql.Identifier(c) for c in _COLUMNS)


def _merged(column: str) -> sql.Composable:
    """``column``'s value when a submission merges into a stored lead."""
    name = sql.Identifier(column)
    if column == "custom":
        return sql.SQL("l.custom || EXCLUDED.custom")
    if column in CONSENT_FIELDS:
        # Consent moves as a whole: an ``unknown`` status says nothing about source or time.
        return sql.SQL(
            "CASE WHEN EXCLUDED.consent_status = 'unknown' THEN l.{0} ELSE EXCLUDED.{0} END"
        ).format(name)
    # A submitted value replaces the stored one; an absent one keeps it.
    return sql.SQL("coalesce(EXCLUDED.{0}, l.{0})").format(name)


_INSERT_FROM = sql.SQL(
    """
INSERT INTO public.leads AS l (client_id, {columns})
SELECT %(client_id)s, {values}
"""
).format(
    columns=_column_list(),
    values=sql.SQL(", ").join(
        sql.SQL("coalesce(r.custom, '{}'::jsonb)")
        if c == "custom"
        else sql.SQL("r.{}").format(sql.Identifier(c))
        for c in _COLUMNS
    ),
)

_MERGE_ON_CONFLICT = sql.SQL(
    """
ON CONFLICT (client_id, dedupe_key)
    WHERE dedupe_key IS NOT NULL AND status IN ('queued', 'qualified', 'nurture')
DO UPDATE SET
    {merged},
    -- The trail: when, and the stored values this submission replaced.
    history = l.history || jsonb_build_array(jsonb_build_object(
        'merged_at', now(),
        'source', EXCLUDED.source,
        'previous', (
            SELECT coalesce(jsonb_object_agg(old.key, old.value), '{{}}'::jsonb)
            FROM jsonb_each(to_jsonb(l)) AS old
            JOIN jsonb_each(jsonb_strip_nulls(to_jsonb(EXCLUDED))) AS new USING (key)
            WHERE old.key <> ALL (ARRAY['id', 'client_id', 'dedupe_key', 'status',
                                        'received_at', 'created_at', 'updated_at', 'history'])
              AND old.value <> 'null'::jsonb
              AND old.value IS DISTINCT FROM new.value
              AND (old.key <> 'custom' OR NOT old.value @> new.value)
        )
    ))
RETURNING l.dedupe_key, l.id, l.status, (l.xmax = 0) AS inserted
"""
).format(
    merged=sql.SQL(",\n    ").join(
        sql.SQL("{} = {}").format(sql.Identifier(c), _merged(c))
        for c in _COLUMNS
        if c != "dedupe_key"
    )
)

# The statements are composed once, here, into plain text: composing the insert-or-merge
# statement at every call cost about 0.2 ms of CPU (timeit), on every intake request.
_INSERT_OR_MERGE_JSON = sql.SQL(
    sql.Composed(
        [
            _INSERT_FROM,
            sql.SQL("FROM jsonb_populate_recordset(NULL::public.leads, %(rows)s) AS r"),
            _MERGE_ON_CONFLICT,
        ]
    ).as_string()
)
_INSERT_OR_MERGE_STAGED = sql.SQL(
    sql.Composed(
        [_INSERT_FROM, sql.SQL("FROM lqs_lead_staging AS r"), _MERGE_ON_CONFLICT]
    ).as_string()
)

# The staging table takes its column types from public.leads itself.
_CREATE_STAGING = sql.SQL(
    sql.SQL(
        "CREATE TEMP TABLE IF NOT EXISTS lqs_lead_staging ON COMMIT DELETE ROWS"
        " AS SELECT {} FROM public.leads WITH NO DATA"
    )
    .format(_column_list())
    .as_string()
)

_COPY_STAGING = sql.SQL(
    sql.SQL("COPY lqs_lead_staging ({}) FROM STDIN").format(_column_list()).as_string()
)


async def insert_or_merge_leads(
    conn: AsyncConnection,
    client_id: UUID,
    leads: Sequence[NewLead],
    *,
    api_key_id: UUID | None = None,
) -> list[StoredLead]:
    """Store a batch in one statement: new leads are queued, duplicates of open leads merge.

    A lead is open while queued, qualified or in nurture; the match is the client plus
    :attr:`NewLead.dedupe_key`. Sends a NOTIFY on :data:`LEADS_QUEUED_CHANNEL` (delivered
    at commit) when anything was queued. A change of consent is appended to the consent
    history with ``api_key_id`` (:func:`~lqs.db.consent.record_consent_changes`). Must run
    inside the caller's transaction.
    """
    if not leads:
        return []
    distinct, positions = merge_within_batch(leads)
    rows = [_row(lead) for lead in distinct]
    cur = await conn.execute(_INSERT_OR_MERGE_JSON, {"client_id": client_id, "rows": Jsonb(rows)})
    stored_distinct = await _stored_in_order(conn, distinct, await cur.fetchall())
    await record_consent_changes(
        conn,
        client_id,
        _consent_changes(distinct, stored_distinct, "api"),
        api_key_id=api_key_id,
    )
    seen: set[int] = set()
    result = []
    for index in positions:
        stored = stored_distinct[index]
        # A second submission inside the same batch is a duplicate of the first.
        result.append(stored if index not in seen else StoredLead(stored.id, stored.status, True))
        seen.add(index)
    return result


async def _stored_in_order(
    conn: AsyncConnection, distinct: Sequence[NewLead], returned: Sequence[tuple[Any, ...]]
) -> list[StoredLead]:
    # RETURNING order is not guaranteed to follow the input: match on the dedupe key.
    by_key = {key: (lead_id, status, inserted) for key, lead_id, status, inserted in returned}
    stored = []
    for lead in distinct:
        lead_id, status, inserted = by_key[lead.dedupe_key]
        stored.append(StoredLead(lead_id, status, duplicate=not inserted))
    if any(not s.duplicate for s in stored):
        await notify(conn, LEADS_QUEUED_CHANNEL)
    return stored


def _consent_changes(
    distinct: Sequence[NewLead], stored: Sequence[StoredLead], default_source: str
) -> list[ConsentChange]:
    """The consent each stored lead was submitted with, when it says something (a status
    other than ``unknown``), recorded on the lead's email address (else its phone)."""
    changes = []
    for lead, found in zip(distinct, stored, strict=True):
        if lead.consent_status is ConsentStatus.UNKNOWN:
            continue
        channel, recipient = ("email", lead.email) if lead.email else ("sms", lead.phone)
        assert recipient is not None  # a lead has an email or a phone
        proof = lead.consent_proof
        source = (proof.source if proof else None) or lead.consent_source or default_source
        changes.append(
            ConsentChange(found.id, channel, recipient, lead.consent_status, source, proof)
        )
    return changes


@dataclass(frozen=True)
class RefusedRow:
    """A row of an import batch the database refused: its position in the batch, and why."""

    index: int
    reason: str


@dataclass(frozen=True)
class ImportOutcome:
    """What one import batch did; ``refused`` rows were not stored."""

    created: int
    merged: int
    already_imported: int
    refused: tuple[RefusedRow, ...] = ()


_REFUSED_DATA = (
    DataError,
    errors.CheckViolation,
    errors.NotNullViolation,
    # Text with no UTF-8 form (a lone surrogate) fails in the driver, before the server.
    UnicodeEncodeError,
)
"""What the database (or the driver) raises for a row's content. Other errors, a lost
connection or a missing client, would fail the same way for every row, so they propagate."""


async def import_leads(
    conn: AsyncConnection,
    client_id: UUID,
    rows: Sequence[tuple[bytes, NewLead]],
    *,
    evidence: Mapping[str, str] | None = None,
) -> ImportOutcome:
    """Import a batch of CSV rows (content hash, lead) with COPY into a staging table.

    Rows whose hash this client imported before are skipped, so importing a file again
    imports nothing twice; the rest are inserted or merged like API submissions. Must run
    inside the caller's transaction.

    A batch refused for its data (:data:`_REFUSED_DATA`: text or a value PostgreSQL cannot
    store, a CHECK or NOT NULL constraint) is rolled back to a savepoint and split in
    halves, recursively, so every good row is still stored and each refused one comes back
    in ``refused`` with the database's message: a batch with one bad row costs about
    2 x log2(len(rows)) extra statements.

    A row's consent (a status other than ``unknown``) that changes its lead's is appended
    to the consent history, with source ``csv import`` unless the row names one, and
    ``evidence`` (the file, the operator).
    """
    try:
        async with conn.transaction():  # a savepoint: a refused batch leaves ours usable
            return await _import_batch(conn, client_id, rows, evidence)
    except _REFUSED_DATA as exc:
        if len(rows) <= 1:
            return ImportOutcome(0, 0, 0, (RefusedRow(0, _refusal(exc)),))
    middle = len(rows) // 2
    first = await import_leads(conn, client_id, rows[:middle], evidence=evidence)
    second = await import_leads(conn, client_id, rows[middle:], evidence=evidence)
    return ImportOutcome(
        first.created + second.created,
        first.merged + second.merged,
        first.already_imported + second.already_imported,
        first.refused + tuple(RefusedRow(r.index + middle, r.reason) for r in second.refused),
    )


def _refusal(exc: Exception) -> str:
    """One line: the server's primary message (its CONTEXT would repeat the whole row)."""
    message = exc.diag.message_primary if isinstance(exc, errors.Error) else None
    if not message:
        message = str(exc).strip().partition("\n")[0] or type(exc).__name__
    return f"refused by the database: {message}"


async def _import_batch(
    conn: AsyncConnection,
    client_id: UUID,
    rows: Sequence[tuple[bytes, NewLead]],
    evidence: Mapping[str, str] | None,
) -> ImportOutcome:
    hashes = list({h for h, _ in rows})
    cur = await conn.execute(
        "SELECT row_hash FROM public.lead_import_rows WHERE client_id = %s AND row_hash = ANY(%s)",
        (client_id, hashes),
    )
    seen = {bytes(h) for (h,) in await cur.fetchall()}
    fresh: dict[bytes, NewLead] = {}
    for row_hash, lead in rows:
        if row_hash not in seen:
            fresh.setdefault(row_hash, lead)
    if not fresh:
        return ImportOutcome(0, 0, len(rows))
    fresh_hashes = list(fresh)
    distinct, positions = merge_within_batch([fresh[h] for h in fresh_hashes])

    await conn.execute(_CREATE_STAGING)
    async with conn.cursor() as copy_cur:
        async with copy_cur.copy(_COPY_STAGING) as copy:
            for lead in distinct:
                row = _row(lead)
                row["custom"] = Jsonb(row["custom"])
                await copy.write_row([row[c] for c in _COLUMNS])
        await copy_cur.execute(_INSERT_OR_MERGE_STAGED, {"client_id": client_id})
        returned = await copy_cur.fetchall()
    # ON COMMIT DELETE ROWS empties the staging table only at commit: a split batch stores
    # several parts in one transaction, and a part must not insert the previous one again.
    await conn.execute("DELETE FROM lqs_lead_staging")
    stored = await _stored_in_order(conn, distinct, returned)
    await record_consent_changes(
        conn, client_id, _consent_changes(distinct, stored, "csv import"), evidence=evidence
    )
    await conn.execute(
        "INSERT INTO public.lead_import_rows (client_id, row_hash, lead_id)"
        " SELECT %s, h, l FROM unnest(%s::bytea[], %s::uuid[]) AS t(h, l)"
        " ON CONFLICT DO NOTHING",
        (client_id, fresh_hashes, [stored[p].id for p in positions]),
    )
    created = sum(not s.duplicate for s in stored)
    return ImportOutcome(
        created, len(rows) - created - (len(rows) - len(fresh)), len(rows) - len(fresh)
    )


@dataclass(frozen=True)
class ClaimedLead:
    """A stored lead as the processor reads it: claimed for processing, or read back to
    render its messages again."""

    id: UUID
    client_id: UUID
    received_at: datetime
    submitted: NewLead
    """The lead's fields (merged submissions): what rules score and templates show."""
    processed_before: bool = False
    """Processed (or parked) once already and queued again (``lqs leads reprocess``): its
    communications may be recorded already."""

    @classmethod
    def from_row(cls, row: Mapping[str, Any]) -> ClaimedLead:
        """From a ``public.leads`` row read with ``dict_row`` (every column; a sample row
        without ``processed_at`` is a lead processed for the first time)."""
        values = {name: row[name] for name in _NEW_LEAD_FIELDS}
        values["consent_status"] = ConsentStatus(row["consent_status"])
        return cls(
            row["id"],
            row["client_id"],
            row["received_at"],
            NewLead(**values),
            processed_before=row.get("processed_at") is not None,
        )

    def as_mapping(self) -> dict[str, object]:
        """The lead's fields by name, custom fields under ``custom``: what
        :func:`~lqs.domain.scoring.score_lead` and
        :func:`~lqs.domain.notifications.plan_messages` read."""
        return self.submitted.as_mapping()


_CLAIM_QUEUED = """
SELECT l.*
FROM public.leads AS l
WHERE l.status = 'queued'
ORDER BY l.received_at, l.id
LIMIT %(limit)s
-- SKIP LOCKED: concurrent processors take disjoint batches instead of queueing on locks.
FOR UPDATE SKIP LOCKED
"""


async def claim_queued_leads(conn: AsyncConnection, limit: int) -> list[ClaimedLead]:
    """Lock up to ``limit`` queued leads, oldest first, for this transaction."""
    async with conn.cursor(row_factory=dict_row) as cur:
        await cur.execute(_CLAIM_QUEUED, {"limit": limit})
        return [ClaimedLead.from_row(row) for row in await cur.fetchall()]


async def claim_queued_lead(conn: AsyncConnection, lead_id: UUID) -> ClaimedLead | None:
    """Lock one lead for this transaction if it is still queued and nobody holds it."""
    async with conn.cursor(row_factory=dict_row) as cur:
        await cur.execute(
            "SELECT l.* FROM public.leads AS l WHERE l.id = %s AND l.status = 'queued'"
            " FOR UPDATE SKIP LOCKED",
            (lead_id,),
        )
        row = await cur.fetchone()
    return None if row is None else ClaimedLead.from_row(row)


@dataclass(frozen=True)
class Requeued:
    """What :func:`requeue_leads` did."""

    queued: list[UUID]
    """Put back in the queue now."""
    already_queued: list[UUID]
    """Queued already (never processed, or waiting for another attempt): left alone."""
    blocked: list[tuple[UUID, UUID]]
    """(lead, open lead): leads that cannot be open again while another lead of their
    client with the same email (or phone) is; when any is, nothing was queued."""
    erased: list[UUID] = field(default_factory=list)
    """Leads erased (``lqs leads erase``): never processed again; when any is named,
    nothing was queued."""


_OPEN_STATUSES = ("queued", "qualified", "nurture")
"""The statuses of an open lead: the one a new submission with its email merges into
(``idx_leads_open_dedupe``, a partial unique index, allows one per client and email)."""


async def requeue_leads(conn: AsyncConnection, lead_ids: Sequence[UUID]) -> Requeued:
    """Put leads back in the processor's queue (status ``queued``, no failure counted, no
    error) to be scored and planned again; the processor does not record again a message
    a lead already has (see :func:`lqs.domain.notifications.recorded_before`). The
    previous score stays until then.

    All or nothing: a lead that is not open (``error``, ``disqualified``) cannot be
    reopened while another lead of its client with the same email is open (or is
    reopened in the same call); then nothing changes and ``blocked`` names each pair.
    Sends a NOTIFY on :data:`LEADS_QUEUED_CHANNEL` when any was queued. Must run inside
    the caller's transaction.
    """
    wanted = sorted(set(lead_ids))
    cur = await conn.execute(
        "SELECT id, client_id, dedupe_key, status, email FROM public.leads WHERE id = ANY(%s)"
        " ORDER BY id FOR UPDATE",
        (wanted,),
    )
    found = await cur.fetchall()
    erased = [row[0] for row in found if row[4] == placeholder_email(row[0])]
    rows = [row[:4] for row in found]
    already = [lead_id for lead_id, _, _, status in rows if status == "queued"]
    reopened = [
        (lead_id, client_id, key) for lead_id, client_id, key, status in rows
        if status not in _OPEN_STATUSES
    ]  # fmt: skip
    blocked = await _open_twins(conn, [lead_id for lead_id, _, _ in reopened])
    first_of: dict[tuple[UUID, str], UUID] = {}
    for lead_id, client_id, key in reopened:
        if key is not None:
            first = first_of.setdefault((client_id, key), lead_id)
            if first != lead_id:
                blocked.append((lead_id, first))
    if blocked or erased:
        return Requeued([], already, blocked, erased)
    to_queue = [lead_id for lead_id, _, _, status in rows if status != "queued"]
    try:
        async with conn.transaction():  # a savepoint: a twin that arrived meanwhile
            cur = await conn.execute(
                "UPDATE public.leads SET status = 'queued', processing_failures = 0,"
                " error_message = NULL WHERE id = ANY(%s) RETURNING id",
                (to_queue,),
            )
    except errors.UniqueViolation:
        # A submission with the same email opened a new lead between the check and the
        # update (intake commits it before this statement could go on).
        return Requeued([], already, await _open_twins(conn, [r[0] for r in reopened]))
    queued = [row[0] for row in await cur.fetchall()]
    if queued:
        await notify(conn, LEADS_QUEUED_CHANNEL)
    return Requeued(queued, already, [])


async def _open_twins(conn: AsyncConnection, lead_ids: Sequence[UUID]) -> list[tuple[UUID, UUID]]:
    """(lead, open lead): for each of the leads, another open lead of its client with the
    same dedupe key."""
    if not lead_ids:
        return []
    cur = await conn.execute(
        "SELECT l.id, o.id FROM public.leads AS l"
        " JOIN public.leads AS o ON o.client_id = l.client_id AND o.dedupe_key = l.dedupe_key"
        "  AND o.id <> l.id AND o.status = ANY(%s)"
        " WHERE l.id = ANY(%s) ORDER BY l.id, o.id",
        (list(_OPEN_STATUSES), list(lead_ids)),
    )
    return [(row[0], row[1]) for row in await cur.fetchall()]


@dataclass(frozen=True)
class LeadFailure:
    """Processing one lead failed: why, in words an operator can act on."""

    lead_id: UUID
    reason: str


_RECORD_FAILURES = """
UPDATE public.leads AS l
SET processing_failures = l.processing_failures + 1,
    status = CASE WHEN l.processing_failures + 1 >= %(limit)s THEN 'error' ELSE l.status END,
    error_message = CASE
        WHEN l.processing_failures + 1 >= %(limit)s
        THEN format('parked after %%s failed attempts: %%s', l.processing_failures + 1, f.reason)
        ELSE format('processing attempt %%s failed: %%s', l.processing_failures + 1, f.reason)
    END,
    processed_at = CASE WHEN l.processing_failures + 1 >= %(limit)s THEN now()
                        ELSE l.processed_at END
FROM jsonb_to_recordset(%(failures)s) AS f(lead_id uuid, reason text)
WHERE l.id = f.lead_id AND l.status = 'queued'
RETURNING l.id, l.status
"""


async def record_lead_failures(
    conn: AsyncConnection, failures: Sequence[LeadFailure], *, park_after: int
) -> list[UUID]:
    """Count a failed processing attempt for each lead; a lead that reaches ``park_after``
    failures is parked (status ``error``, the reason in ``error_message``), the others stay
    queued for another attempt. Returns the ids of the leads parked now."""
    if not failures:
        return []
    payload = [{"lead_id": str(f.lead_id), "reason": f.reason[:2000]} for f in failures]
    cur = await conn.execute(_RECORD_FAILURES, {"failures": Jsonb(payload), "limit": park_after})
    return [row[0] for row in await cur.fetchall() if row[1] == "error"]


@dataclass(frozen=True)
class LeadOutcome:
    """The processor's verdict on one lead."""

    lead_id: UUID
    status: LeadStatus
    score: int | None
    grade: str | None
    score_breakdown: list[dict[str, Any]] | None
    error_message: str | None


_RECORD_OUTCOMES = """
UPDATE public.leads AS l
SET status = o.status, score = o.score, grade = o.grade,
    score_breakdown = o.score_breakdown, error_message = o.error_message,
    processed_at = now()
FROM jsonb_to_recordset(%(outcomes)s) AS o(
    lead_id uuid, status text, score integer, grade text, score_breakdown jsonb,
    error_message text
)
WHERE l.id = o.lead_id
"""


async def record_lead_outcomes(conn: AsyncConnection, outcomes: Sequence[LeadOutcome]) -> None:
    """Write every outcome of a batch in one statement."""
    if not outcomes:
        return
    payload = [
        {
            "lead_id": str(o.lead_id),
            "status": o.status.value,
            "score": o.score,
            "grade": o.grade,
            "score_breakdown": o.score_breakdown,
            "error_message": o.error_message,
        }
        for o in outcomes
    ]
    await conn.execute(_RECORD_OUTCOMES, {"outcomes": Jsonb(payload)})


async def find_client_lead(
    conn: AsyncConnection, client_id: UUID, lead_id: UUID | None, email: str | None
) -> tuple[ClaimedLead, LeadOutcome] | None:
    """The client's lead with this id, or its latest lead (by arrival) with this email
    (compared case-insensitively), as a template sees it: its fields and the processor's
    recorded verdict. None when the client has no such lead."""
    async with conn.cursor(row_factory=dict_row) as cur:
        await cur.execute(
            "SELECT l.* FROM public.leads AS l WHERE l.client_id = %(client)s"
            " AND (l.id = %(id)s::uuid OR lower(l.email) = lower(%(email)s::text))"
            " ORDER BY l.received_at DESC, l.id LIMIT 1",
            {"client": client_id, "id": lead_id, "email": email},
        )
        row = await cur.fetchone()
    if row is None:
        return None
    verdict = LeadOutcome(
        row["id"],
        LeadStatus(row["status"]),
        row["score"],
        row["grade"],
        row["score_breakdown"],
        row["error_message"],
    )
    return ClaimedLead.from_row(row), verdict
