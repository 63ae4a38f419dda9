"""SQL for clients (tenants) and their API keys."""

from __future__ import annotations

import hashlib
import secrets
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from uuid import UUID

from psycopg import AsyncConnection, errors
from psycopg.types.json import Jsonb

from lqs.db.errors import DatabaseError
from lqs.domain.delivery import DeliverySettings, DeliverySettingsError, parse_delivery_settings

API_KEY_PREFIX = "lqs_"


class ClientNotFound(DatabaseError):
    """Raised when no client has the given slug."""


class ClientExists(DatabaseError):
    """Raised when creating a client whose slug is taken."""


@dataclass(frozen=True)
class Client:
    id: UUID
    name: str
    slug: str
    settings: dict[str, Any]


@dataclass(frozen=True)
class ApiKey:
    """A stored key: never the key itself, only how to recognise it."""

    id: UUID
    client_id: UUID
    name: str
    prefix: str
    rate_limit_per_minute: int
    created_at: datetime
    revoked_at: datetime | None


@dataclass(frozen=True)
class ApiPrincipal:
    """Who a valid key speaks for."""

    key_id: UUID
    client_id: UUID
    client_slug: str
    rate_limit_per_minute: int
    settings: dict[str, Any]


async def create_client(
    conn: AsyncConnection, name: str, slug: str, settings: Mapping[str, Any]
) -> Client:
    """Insert a client.

    Raises:
        ClientExists: the slug is taken.
    """
    try:
        cur = await conn.execute(
            "INSERT INTO public.clients (name, slug, settings) VALUES (%s, %s, %s)"
            " RETURNING id, name, slug, settings",
            (name, slug, Jsonb(dict(settings))),
        )
    except errors.UniqueViolation as exc:
        raise ClientExists(f"a client with slug {slug!r} already exists") from exc
    row = await cur.fetchone()
    assert row is not None
    return Client(*row)


async def get_client(conn: AsyncConnection, slug: str) -> Client:
    """The client with this slug.

    Raises:
        ClientNotFound: no such client (the message says how to list or create one).
    """
    cur = await conn.execute(
        "SELECT id, name, slug, settings FROM public.clients WHERE slug = %s", (slug,)
    )
    row = await cur.fetchone()
    if row is None:
        raise ClientNotFound(
            f"no client with slug {slug!r}; create it with `lqs clients create` "
            "or list clients with `lqs clients list`"
        )
    return Client(*row)


async def delete_clients(conn: AsyncConnection, slugs: Iterable[str]) -> int:
    """Delete the clients with these slugs and everything of theirs; return how many."""
    cur = await conn.execute("DELETE FROM public.clients WHERE slug = ANY(%s)", (list(slugs),))
    return cur.rowcount


async def list_clients(conn: AsyncConnection) -> list[Client]:
    cur = await conn.execute("SELECT id, name, slug, settings FROM public.clients ORDER BY slug")
    return [Client(*row) for row in await cur.fetchall()]


async def get_clients_by_id(conn: AsyncConnection, ids: Iterable[UUID]) -> dict[UUID, Client]:
    cur = await conn.execute(
        "SELECT id, name, slug, settings FROM public.clients WHERE id = ANY(%s)", (list(ids),)
    )
    return {row[0]: Client(*row) for row in await cur.fetchall()}


async def update_client_settings(
    conn: AsyncConnection, client_id: UUID, patch: Mapping[str, Any]
) -> dict[str, Any]:
    """Merge ``patch`` into the client's settings (top-level keys replace); return the result."""
    cur = await conn.execute(
        "UPDATE public.clients SET settings = settings || %s WHERE id = %s RETURNING settings",
        (Jsonb(dict(patch)), client_id),
    )
    row = await cur.fetchone()
    if row is None:
        raise ClientNotFound(f"client {client_id} no longer exists")
    return dict(row[0])


def hash_api_key(key: str) -> bytes:
    return hashlib.sha256(key.encode()).digest()


async def create_api_key(
    conn: AsyncConnection, client_id: UUID, name: str, rate_limit_per_minute: int
) -> tuple[ApiKey, str]:
    """Create a key for the client; return it stored and the plaintext (shown once)."""
    plaintext = API_KEY_PREFIX + secrets.token_urlsafe(32)
    cur = await conn.execute(
        "INSERT INTO public.api_keys (client_id, name, prefix, key_hash, rate_limit_per_minute)"
        " VALUES (%s, %s, %s, %s, %s)"
        " RETURNING id, client_id, name, prefix, rate_limit_per_minute, created_at, revoked_at",
        (client_id, name, plaintext[:12], hash_api_key(plaintext), rate_limit_per_minute),
    )
    row = await cur.fetchone()
    assert row is not None
    return ApiKey(*row), plaintext


async def list_api_keys(conn: AsyncConnection, client_id: UUID) -> list[ApiKey]:
    cur = await conn.execute(
        "SELECT id, client_id, name, prefix, rate_limit_per_minute, created_at, revoked_at"
        " FROM public.api_keys WHERE client_id = %s ORDER BY created_at",
        (client_id,),
    )
    return [ApiKey(*row) for row in await cur.fetchall()]


async def revoke_api_key(
    conn: AsyncConnection, client_id: UUID, prefix: str, *, key_id: UUID | None = None
) -> int:
    """Revoke the client's live keys starting with ``prefix`` (only the key ``key_id``,
    if given); return how many."""
    cur = await conn.execute(
        "UPDATE public.api_keys SET revoked_at = now()"
        " WHERE client_id = %s AND prefix = left(%s, 12) AND revoked_at IS NULL"
        "   AND (%s::uuid IS NULL OR id = %s::uuid)",
        (client_id, prefix, key_id, key_id),
    )
    return cur.rowcount


async def authenticate_api_key(conn: AsyncConnection, key: str) -> ApiPrincipal | None:
    """The principal for a live key, or None for an unknown or revoked one."""
    if not key.startswith(API_KEY_PREFIX) or len(key) > 100:
        return None
    cur = await conn.execute(
        "SELECT k.id, k.client_id, c.slug, k.rate_limit_per_minute, c.settings"
        " FROM public.api_keys k JOIN public.clients c ON c.id = k.client_id"
        " WHERE k.key_hash = %s AND k.revoked_at IS NULL",
        (hash_api_key(key),),
    )
    row = await cur.fetchone()
    return ApiPrincipal(*row) if row else None


@dataclass(frozen=True)
class WebhookCandidate:
    """A client whose delivery settings configure a provider, as a webhook may be its."""

    client_id: UUID
    delivery: DeliverySettings


async def webhook_candidates(
    conn: AsyncConnection, provider: str, client_id: UUID | None
) -> list[WebhookCandidate]:
    """The clients that configure ``provider`` (only ``client_id`` if given), oldest first;
    a client whose delivery settings do not validate is left out."""
    cur = await conn.execute(
        "SELECT id, settings -> 'delivery' FROM public.clients"
        " WHERE (%(id)s::uuid IS NULL OR id = %(id)s::uuid)"
        "   AND settings -> 'delivery' -> %(provider)s IS NOT NULL"
        " ORDER BY created_at, id",
        {"id": client_id, "provider": provider},
    )
    found = []
    for cid, data in await cur.fetchall():
        try:
            found.append(WebhookCandidate(cid, parse_delivery_settings(data)))
        except DeliverySettingsError:
            continue
    return found
