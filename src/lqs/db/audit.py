"""SQL for the audit log: what a client's admins did through the tenant API.

Entries are appended by the service role (:func:`lqs.db.pool.as_service_role`), in the
transaction of the action they record; users read their client's entries under row-level
security. Details never hold a secret.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from uuid import UUID

from psycopg import AsyncConnection
from psycopg.rows import args_row
from psycopg.types.json import Jsonb


@dataclass(frozen=True)
class AuditEntry:
    id: int
    client_id: UUID
    user_id: UUID | None
    action: str
    """``communication.retry``, ``suppression.delete``, ``api_key.create``, ``api_key.revoke``."""
    target_id: UUID | None
    detail: dict[str, Any]
    created_at: datetime


async def record_audit(
    conn: AsyncConnection,
    client_id: UUID,
    user_id: UUID | None,
    action: str,
    target_id: UUID | None,
    detail: Mapping[str, Any] | None = None,
) -> AuditEntry:
    """Append one entry (run as the service role, in the action's transaction)."""
    async with conn.cursor(row_factory=args_row(AuditEntry)) as cur:
        await cur.execute(
            "INSERT INTO public.audit_log (client_id, user_id, action, target_id, detail)"
            " VALUES (%s, %s, %s, %s, %s)"
            " RETURNING id, client_id, user_id, action, target_id, detail, created_at",
            (client_id, user_id, action, target_id, Jsonb(dict(detail or {}))),
        )
        entry = await cur.fetchone()
    assert entry is not None
    return entry


async def audit_entries(
    conn: AsyncConnection, client_id: UUID, *, limit: int = 100
) -> list[AuditEntry]:
    """The client's latest entries, newest first."""
    async with conn.cursor(row_factory=args_row(AuditEntry)) as cur:
        await cur.execute(
            "SELECT id, client_id, user_id, action, target_id, detail, created_at"
            " FROM public.audit_log WHERE client_id = %s"
            " ORDER BY created_at DESC, id DESC LIMIT %s",
            (client_id, limit),
        )
        return await cur.fetchall()
