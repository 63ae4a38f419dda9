"""Subject access's reads of the service's own bookkeeping: tables no user may read
(Idempotency-Key records, the CSV ledger, the frequency caps' counts), run as the service
role or the owner for one client. The tenant's tables are
:func:`lqs.db.tenant_reads.subject_records`'s."""

from __future__ import annotations

import dataclasses
from typing import Any
from uuid import UUID

from psycopg import AsyncConnection

from lqs.domain.subject_access import Subject, SubjectRecords

# An Idempotency-Key record is the first response to a submission: it names the lead it
# created or merged by id. Kept 24 h, so the client's records are few.
_IDEMPOTENCY = """
SELECT coalesce(jsonb_agg(jsonb_build_object(
           'key', k.key, 'status_code', k.status_code, 'response', k.response,
           'created_at', k.created_at) ORDER BY k.created_at, k.key), '[]')
FROM public.idempotency_keys AS k
WHERE k.client_id = %(client)s AND cardinality(%(leads)s::text[]) > 0
  AND k.response::text LIKE ANY(
      SELECT '%%' || id || '%%' FROM unnest(%(leads)s::text[]) AS id)
"""
_IMPORT_ROWS = """
SELECT coalesce(jsonb_agg(jsonb_build_object(
           'row_hash', encode(r.row_hash, 'hex'), 'lead_id', r.lead_id,
           'imported_at', r.imported_at) ORDER BY r.imported_at), '[]')
FROM public.lead_import_rows AS r WHERE r.lead_id = ANY(%(leads)s::uuid[])
"""
_RECIPIENT_SENDS = """
SELECT coalesce(jsonb_agg(to_jsonb(s) ORDER BY s.sent_at), '[]')
FROM public.recipient_sends AS s
WHERE s.client_id = %(client)s AND s.recipient = ANY(%(addresses)s::text[])
"""


async def _json_list(conn: AsyncConnection, query: str, params: dict[str, Any]) -> list[Any]:
    cur = await conn.execute(query.encode(), params)
    row = await cur.fetchone()
    return list(row[0]) if row is not None else []


async def subject_bookkeeping(
    conn: AsyncConnection, client_id: UUID, subject: Subject, records: SubjectRecords
) -> SubjectRecords:
    """``records`` with the client's bookkeeping on the person added: Idempotency-Key
    records whose response names one of their leads, the CSV rows that created them (by
    content hash: the rows themselves are not kept), and the frequency caps' counts of
    their addresses. Run as the service role (or the owner)."""
    leads = [str(i) for i in records.lead_ids]
    params: dict[str, Any] = {"client": client_id, "leads": leads, "addresses": subject.addresses}
    return dataclasses.replace(
        records,
        idempotency_records=await _json_list(conn, _IDEMPOTENCY, params),
        lead_import_rows=await _json_list(conn, _IMPORT_ROWS, params),
        recipient_sends=await _json_list(conn, _RECIPIENT_SENDS, params),
    )
