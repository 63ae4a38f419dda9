"""The lead processor: claim queued leads, score them, record their communications.

One batch is one transaction: the claim (``FOR UPDATE SKIP LOCKED``), the leads' new
status, score and breakdown, and every communication with its delivery-queue row. A crash
anywhere rolls the batch back and its leads are claimed again; nothing is half-done.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from uuid import UUID

import structlog
from psycopg_pool import AsyncConnectionPool

from lqs.db.clients import Client, get_clients_by_id
from lqs.db.leads import LeadOutcome, claim_queued_leads, record_lead_outcomes
from lqs.db.outbox import (
    NewCommunication,
    StoredTemplate,
    latest_templates,
    record_communications,
    suppressed_recipients,
)
from lqs.db.push import live_push_subscriptions
from lqs.domain.clients import ClientSettings, parse_client_settings
from lqs.domain.default_rules import default_rules
from lqs.domain.default_templates import DEFAULT_TEMPLATES
from lqs.domain.notifications import PlannedMessage, normalise_recipient, plan_messages
from lqs.domain.scoring import RulesError, RuleSet, breakdown_to_json, parse_rules, score_lead
from lqs.domain.templates import MessageTemplate, TemplateError, TemplateRenderer
from lqs.domain.vocabulary import CommunicationStatus, CommunicationType, LeadStatus

log = structlog.get_logger(__name__)

# Lead columns a template may use; bookkeeping columns stay out of template variables.
_TEMPLATE_LEAD_FIELDS = (
    "id", "email", "phone", "first_name", "last_name", "job_title", "company_name",
    "company_domain", "company_size", "industry", "country", "source", "utm_source",
    "utm_medium", "utm_campaign", "utm_term", "utm_content", "custom", "consent_status",
    "received_at",
)  # fmt: skip


@dataclass(frozen=True)
class BatchResult:
    """What one batch did."""

    leads: int
    communications: int
    queued: int


@dataclass(frozen=True)
class _ClientContext:
    client: Client
    settings: ClientSettings
    rules: RuleSet | None
    rules_error: str | None

    @property
    def sends_push(self) -> bool:
        return any(
            rule.channel is CommunicationType.PUSH
            for rules in self.settings.notifications.values()
            for rule in rules
        )


class LeadProcessor:
    """Processes queued leads in batches; any number may run against one database."""

    def __init__(
        self,
        pool: AsyncConnectionPool,
        *,
        batch_size: int = 100,
        in_flight: int = 1,
        renderer: TemplateRenderer | None = None,
    ) -> None:
        """``in_flight`` batches are processed at once, each in its own transaction on its
        own pooled connection: while one batch's statements run on the server, the next
        is scored and rendered here. The pool must hold at least that many connections.

        Raises ValueError if ``batch_size`` or ``in_flight`` is below 1.
        """
        if batch_size < 1 or in_flight < 1:
            raise ValueError("batch_size and in_flight must be 1 or more")
        self._pool = pool
        self.batch_size = batch_size
        self.in_flight = in_flight
        self._renderer = renderer or TemplateRenderer()
        # Parsed rule sets by their JSON text: parsing once per distinct rule set.
        self._rules_cache: dict[str, RuleSet] = {}

    async def process_batch(self) -> BatchResult:
        """Claim up to ``batch_size`` queued leads and process them in one transaction."""
        async with self._pool.connection() as conn, conn.transaction():
            rows = await claim_queued_leads(conn, self.batch_size)
            if not rows:
                return BatchResult(0, 0, 0)
            client_ids = {row["client_id"] for row in rows}
            contexts = {
                cid: self._context(client)
                for cid, client in (await get_clients_by_id(conn, client_ids)).items()
            }
            templates = await latest_templates(conn, client_ids)

            scored = [(row, self._score(row, contexts[row["client_id"]])) for row in rows]
            pushing = [cid for cid, c in contexts.items() if c.sends_push]
            push = await live_push_subscriptions(conn, pushing) if pushing else {}
            candidates = {
                (
                    row["client_id"],
                    message.channel.value,
                    normalise_recipient(message.channel, message.recipient),
                )
                for row, outcome in scored
                for message in self._plan(
                    row, outcome, contexts[row["client_id"]], frozenset(), push
                )
                if message.recipient is not None
            }
            suppressed: dict[UUID, set[tuple[str, str]]] = {cid: set() for cid in client_ids}
            for cid, channel, recipient in await suppressed_recipients(conn, candidates):
                suppressed[cid].add((channel, recipient))

            communications: list[NewCommunication] = []
            for row, outcome in scored:
                context = contexts[row["client_id"]]
                client_suppressed = frozenset(suppressed[row["client_id"]])
                for message in self._plan(row, outcome, context, client_suppressed, push):
                    communications.append(
                        self._communication(row, outcome, message, context, templates)
                    )
            await record_lead_outcomes(conn, [outcome for _, outcome in scored])
            queued = await record_communications(conn, communications)
        log.info(
            "lead_batch_processed",
            leads=len(rows),
            communications=len(communications),
            queued=queued,
        )
        return BatchResult(len(rows), len(communications), queued)

    async def drain(self, stop: asyncio.Event | None = None) -> int:
        """Process batches until no queued lead is left (or ``stop`` is set after a batch);
        return how many leads were processed."""

        async def lane() -> int:
            processed = 0
            while stop is None or not stop.is_set():
                result = await self.process_batch()
                processed += result.leads
                if result.leads < self.batch_size:
                    break
            return processed

        if self.in_flight == 1:
            return await lane()
        # SKIP LOCKED gives each lane its own leads; a lane stops at the first short batch.
        return sum(await asyncio.gather(*(lane() for _ in range(self.in_flight))))

    def _context(self, client: Client) -> _ClientContext:
        settings = parse_client_settings(client.settings)
        if settings.scoring_rules is None:
            return _ClientContext(client, settings, default_rules(), None)
        key = json.dumps(settings.scoring_rules, sort_keys=True)
        rules = self._rules_cache.get(key)
        if rules is None:
            try:
                rules = parse_rules(settings.scoring_rules)
            except RulesError as exc:
                return _ClientContext(client, settings, None, f"invalid scoring rules: {exc}")
            self._rules_cache[key] = rules
        return _ClientContext(client, settings, rules, None)

    def _score(self, row: Mapping[str, Any], context: _ClientContext) -> LeadOutcome:
        if context.rules is None:
            return LeadOutcome(row["id"], LeadStatus.ERROR, None, None, None, context.rules_error)
        result = score_lead(row, context.rules)
        return LeadOutcome(
            row["id"],
            result.outcome.value,
            result.score,
            result.grade,
            breakdown_to_json(result.breakdown),
            None,
        )

    @staticmethod
    def _plan(
        row: Mapping[str, Any],
        outcome: LeadOutcome,
        context: _ClientContext,
        suppressed: frozenset[tuple[str, str]],
        push: Mapping[UUID, list[str]],
    ) -> list[PlannedMessage]:
        return plan_messages(
            LeadStatus(outcome.status),
            context.settings,
            row,
            suppressed,
            push.get(row["client_id"], ()),
        )

    def _communication(
        self,
        row: Mapping[str, Any],
        outcome: LeadOutcome,
        message: PlannedMessage,
        context: _ClientContext,
        templates: Mapping[tuple[UUID, str], StoredTemplate],
    ) -> NewCommunication:
        assert message.recipient is not None
        template, template_ref = template_for(context.client.id, message.template_id, templates)
        variables = template_variables(row, outcome, context.client)
        base = {
            "lead_id": row["id"],
            "client_id": row["client_id"],
            "type": message.channel.value,
            "recipient": message.recipient,
            "template_id": template_ref,
            "template_variables": variables,
            "priority": message.priority,
            "campaign_id": message.campaign_id,
            "consent_status": message.consent_status.value,
            "to_lead": message.to_lead,
        }
        if message.rejection is not None:
            return NewCommunication(
                **base,
                subject=None,
                content=None,
                status=CommunicationStatus.REJECTED,
                compliance_notes=message.rejection,
                error_message=None,
            )
        if template is None:
            return NewCommunication(
                **base,
                subject=None,
                content=None,
                status=CommunicationStatus.FAILED,
                compliance_notes=None,
                error_message=f"no template {message.template_id!r} for this client",
            )
        try:
            rendered = self._renderer.render(template, variables)
        except TemplateError as exc:
            return NewCommunication(
                **base,
                subject=None,
                content=None,
                status=CommunicationStatus.FAILED,
                compliance_notes=None,
                error_message=str(exc),
            )
        return NewCommunication(
            **base,
            subject=rendered.subject,
            content=rendered.content,
            status=CommunicationStatus.PENDING,
            compliance_notes=None,
            error_message=None,
        )


def _json_safe(value: object) -> object:
    # Variables are stored as jsonb: ids and times become text; everything else is JSON.
    if isinstance(value, UUID):
        return str(value)
    if isinstance(value, datetime):
        return value.isoformat()
    return value


def template_for(
    client_id: UUID, template_id: str, stored: Mapping[tuple[UUID, str], StoredTemplate]
) -> tuple[MessageTemplate | None, str]:
    own = stored.get((client_id, template_id))
    if own is not None:
        return (
            MessageTemplate(
                template_id=own.template_id,
                version=own.version,
                channel=CommunicationType(own.channel),
                subject=own.subject,
                body=own.body,
                body_format="html" if own.body_format == "html" else "text",
            ),
            f"{template_id}@v{own.version}",
        )
    default = DEFAULT_TEMPLATES.get(template_id)
    return default, f"{template_id}@default"


def template_variables(
    row: Mapping[str, Any], outcome: LeadOutcome, client: Client
) -> dict[str, Any]:
    lead = {k: _json_safe(row.get(k)) for k in _TEMPLATE_LEAD_FIELDS}
    return {
        "lead": lead,
        "client": {"name": client.name, "slug": client.slug},
        "score": outcome.score,
        "grade": outcome.grade,
        "outcome": outcome.status,
        "breakdown": outcome.score_breakdown or [],
    }
