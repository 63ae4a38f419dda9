"""Render failed communications again, then queue them again (``lqs comms retry --rerender``).

A communication that failed because its template failed has no content, and retrying it
as it is cannot help. Once the client has fixed the template, this renders each failed
communication again exactly as the processor would have: the same template name, at the
client's current version (or the shipped default), with the lead's current data
(:func:`~lqs.worker.processor.template_for`, :func:`~lqs.worker.processor.template_variables`
and the :class:`~lqs.domain.templates.TemplateRenderer`). Communications that had been
rendered (failed later, at a provider) are rendered again too.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any
from uuid import UUID

from psycopg import AsyncConnection

from lqs.db.clients import Client, get_clients_by_id
from lqs.db.communications import redrive_failed
from lqs.db.leads import ClaimedLead, LeadOutcome
from lqs.db.rerender import (
    FailedCommunication,
    Rerendered,
    leads_by_id,
    lock_failed,
    record_rerender_failures,
    store_rerendered,
)
from lqs.db.templates import StoredTemplate, latest_templates
from lqs.domain.templates import TemplateError, TemplateRenderer
from lqs.domain.vocabulary import LeadStatus
from lqs.worker.processor import template_for, template_variables


@dataclass(frozen=True)
class RerenderReport:
    """What :func:`rerender_failed` did."""

    requeued: list[UUID]
    """Rendered again and queued for delivery."""
    still_failed: list[tuple[UUID, str]]
    """Could not be rendered: still ``failed``, with this reason as ``error_message``."""


async def rerender_failed(
    conn: AsyncConnection,
    ids: Sequence[UUID] | None,
    client_slug: str | None,
    renderer: TemplateRenderer | None = None,
) -> RerenderReport:
    """Render the failed communications among ``ids`` (every one if None) of the client
    ``client_slug`` (any if None) again, store the new subject, content, ``template_id``
    (``name@vN`` or ``name@default``) and ``template_variables``, and queue them again.

    A communication that cannot be rendered (the template still fails, no template of
    that name, no lead, no template recorded) stays ``failed`` with the new reason in
    ``error_message`` and is listed in ``still_failed``. Communications that are not
    ``failed`` are left alone. Must run inside the caller's transaction: the renders, the
    updates and the re-queueing commit together.
    """
    renderer = renderer or TemplateRenderer()
    failed = await lock_failed(conn, ids, client_slug)
    if not failed:
        return RerenderReport([], [])
    clients = await get_clients_by_id(conn, {c.client_id for c in failed})
    templates = await latest_templates(conn, clients)
    leads = {
        lead_id: (ClaimedLead.from_row(row), _outcome(row))
        for lead_id, row in (
            await leads_by_id(conn, {c.lead_id for c in failed if c.lead_id is not None})
        ).items()
    }

    rendered: list[Rerendered] = []
    still_failed: list[tuple[UUID, str]] = []
    for communication in failed:
        outcome = _render(communication, clients, templates, leads, renderer)
        if isinstance(outcome, str):
            still_failed.append((communication.id, outcome))
        else:
            rendered.append(outcome)
    await store_rerendered(conn, rendered)
    await record_rerender_failures(conn, still_failed)
    requeued = await redrive_failed(conn, [r.communication_id for r in rendered], None)
    return RerenderReport(requeued, still_failed)


def _render(
    communication: FailedCommunication,
    clients: Mapping[UUID, Client],
    templates: Mapping[tuple[UUID, str], StoredTemplate],
    leads: Mapping[UUID, tuple[ClaimedLead, LeadOutcome]],
    renderer: TemplateRenderer,
) -> Rerendered | str:
    """The communication rendered again, or why it cannot be."""
    recorded = communication.template_id
    name = recorded.split("@", 1)[0] if recorded else ""
    if not name:
        return "cannot re-render: no template was recorded for this communication"
    found = leads.get(communication.lead_id) if communication.lead_id is not None else None
    if found is None:
        return "cannot re-render: the lead no longer exists"
    client = clients[communication.client_id]
    template, template_ref = template_for(communication.client_id, name, templates)
    if template is None:
        return f"no template {name!r} for this client"
    lead, outcome = found
    variables = template_variables(lead, outcome, client)
    try:
        message = renderer.render(template, variables)
    except TemplateError as exc:
        return str(exc)
    return Rerendered(communication.id, message.subject, message.content, template_ref, variables)


def _outcome(lead: Mapping[str, Any]) -> LeadOutcome:
    """The lead's verdict as the processor recorded it: the template's score, grade,
    outcome and breakdown."""
    return LeadOutcome(
        lead["id"],
        LeadStatus(lead["status"]),
        lead["score"],
        lead["grade"],
        lead["score_breakdown"],
        lead["error_message"],
    )
