"""The lead processor: claim queued leads, score them, record their communications.

One batch is one transaction: the claim (``FOR UPDATE SKIP LOCKED``), the leads' new
status, score and breakdown, and every communication with its delivery-queue row. A crash
anywhere rolls the batch back and its leads are claimed again; nothing is half-done.

One lead cannot fail the others. An exception while scoring, planning or rendering one
lead fails that lead alone. A statement that fails for the batch's data (not for a lost
connection, see :func:`lqs.db.errors.is_transient`) rolls the batch back, and its leads
are then processed one per transaction, so only the lead that causes it fails. A failed
lead counts a failure and stays queued; after ``park_after`` failures it is parked
(status ``error``, the reason in ``error_message``) instead of being retried forever.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from uuid import UUID

import structlog
from psycopg import AsyncConnection
from psycopg_pool import AsyncConnectionPool

from lqs.db.clients import Client, get_clients_by_id
from lqs.db.communications import (
    NewCommunication,
    record_communications,
    recorded_messages,
)
from lqs.db.consent import relied_entries
from lqs.db.errors import is_transient
from lqs.db.leads import (
    ClaimedLead,
    LeadFailure,
    LeadOutcome,
    claim_queued_lead,
    claim_queued_leads,
    record_lead_failures,
    record_lead_outcomes,
)
from lqs.db.push import live_push_subscriptions
from lqs.db.suppressions import suppressed_recipients
from lqs.db.templates import StoredTemplate, latest_templates
from lqs.domain.clients import ClientSettings, parse_client_settings
from lqs.domain.consent import ReliedEntry, consent_note
from lqs.domain.default_rules import default_rules
from lqs.domain.default_templates import DEFAULT_TEMPLATES
from lqs.domain.leads import PROFILE_FIELDS
from lqs.domain.notifications import (
    PlannedMessage,
    normalise_recipient,
    plan_messages,
    recorded_before,
    reject_suppressed,
)
from lqs.domain.scoring import RulesError, RuleSet, breakdown_to_json, parse_rules, score_lead
from lqs.domain.templates import MessageTemplate, TemplateError, TemplateRenderer
from lqs.domain.text import describe_error
from lqs.domain.vocabulary import Channel, CommunicationStatus, ConsentStatus, LeadStatus

log = structlog.get_logger(__name__)

# Lead columns a template may use; bookkeeping columns stay out of template variables.
_TEMPLATE_LEAD_FIELDS = ("id", *PROFILE_FIELDS, "custom", "received_at")


@dataclass(frozen=True)
class BatchResult:
    """What one batch did."""

    leads: int
    communications: int
    queued: int
    failed: int = 0
    """Leads whose processing failed this time (each counted; parked at the limit)."""


@dataclass(frozen=True)
class _ClientContext:
    client: Client
    settings: ClientSettings
    rules: RuleSet | None
    rules_error: str | None

    @property
    def sends_push(self) -> bool:
        return any(
            rule.channel is Channel.PUSH
            for rules in self.settings.notifications.values()
            for rule in rules
        )


class LeadProcessor:
    """Processes queued leads in batches; any number may run against one database."""

    def __init__(
        self,
        pool: AsyncConnectionPool,
        *,
        batch_size: int,
        in_flight: int,
        park_after: int,
        renderer: TemplateRenderer | None = None,
    ) -> None:
        """``in_flight`` batches are processed at once, each in its own transaction on its
        own pooled connection: while one batch's statements run on the server, the next
        is scored and rendered here. The pool must hold at least that many connections.

        ``park_after``: failed attempts after which a lead is parked (status ``error``).

        Raises ValueError if ``batch_size``, ``in_flight`` or ``park_after`` is below 1.
        """
        if batch_size < 1 or in_flight < 1 or park_after < 1:
            raise ValueError("batch_size, in_flight and park_after must be 1 or more")
        self.park_after = park_after
        self._pool = pool
        self.batch_size = batch_size
        self.in_flight = in_flight
        self._renderer = renderer or TemplateRenderer()
        # Parsed rule sets by their JSON text: parsing once per distinct rule set.
        self._rules_cache: dict[str, RuleSet] = {}

    async def process_batch(self) -> BatchResult:
        """Claim up to ``batch_size`` queued leads and process them in one transaction.

        Raises:
            Exception: a transient database error (see :func:`lqs.db.errors.is_transient`);
                the batch is rolled back and its leads stay queued. Other errors fail
                the leads that cause them, not the call.
        """
        claimed: list[UUID] = []
        try:
            async with self._pool.connection() as conn, conn.transaction():
                leads = await claim_queued_leads(conn, self.batch_size)
                claimed = [lead.id for lead in leads]
                result = await self._process_leads(conn, leads)
        except Exception as exc:
            if is_transient(exc) or not claimed:
                raise
            log.warning(
                "lead_batch_failed_retrying_one_by_one",
                leads=len(claimed),
                error=describe_error(exc),
            )
            return await self._process_one_by_one(claimed)
        if result.leads:
            log.info(
                "lead_batch_processed",
                leads=result.leads,
                communications=result.communications,
                queued=result.queued,
                failed=result.failed,
            )
        return result

    async def _process_one_by_one(self, lead_ids: list[UUID]) -> BatchResult:
        """Process each lead in its own transaction; a lead whose statements still fail
        has the failure recorded in a transaction of its own."""
        totals = BatchResult(0, 0, 0)
        for lead_id in lead_ids:
            try:
                async with self._pool.connection() as conn, conn.transaction():
                    lead = await claim_queued_lead(conn, lead_id)
                    result = await self._process_leads(conn, [lead] if lead else [])
            except Exception as exc:
                if is_transient(exc):
                    raise
                await self._record_failures([LeadFailure(lead_id, describe_error(exc))])
                result = BatchResult(1, 0, 0, failed=1)
            totals = BatchResult(
                totals.leads + result.leads,
                totals.communications + result.communications,
                totals.queued + result.queued,
                totals.failed + result.failed,
            )
        return totals

    async def _record_failures(self, failures: list[LeadFailure]) -> None:
        async with self._pool.connection() as conn, conn.transaction():
            await self._count_failures(conn, failures)

    async def _count_failures(self, conn: AsyncConnection, failures: list[LeadFailure]) -> None:
        """Count each failure in ``conn``'s transaction (parking at the limit), and log it."""
        parked = await record_lead_failures(conn, failures, park_after=self.park_after)
        for failure in failures:
            log.warning(
                "lead_processing_failed",
                lead_id=str(failure.lead_id),
                reason=failure.reason,
                parked=failure.lead_id in parked,
            )

    async def _process_leads(self, conn: AsyncConnection, leads: list[ClaimedLead]) -> BatchResult:
        if not leads:
            return BatchResult(0, 0, 0)
        client_ids = {lead.client_id for lead in leads}
        contexts = {
            cid: self._context(client)
            for cid, client in (await get_clients_by_id(conn, client_ids)).items()
        }
        templates = await latest_templates(conn, client_ids)
        pushing = [cid for cid, c in contexts.items() if c.sends_push]
        push = await live_push_subscriptions(conn, pushing) if pushing else {}

        failures: list[LeadFailure] = []
        scored: list[tuple[ClaimedLead, LeadOutcome, list[PlannedMessage]]] = []
        for lead in leads:
            try:
                fields = lead.as_mapping()
                outcome = self._score(lead.id, fields, contexts[lead.client_id])
                # Planned once, before the suppressions are known; they are applied below.
                planned = plan_messages(
                    outcome.status,
                    contexts[lead.client_id].settings,
                    fields,
                    frozenset(),
                    push.get(lead.client_id, ()),
                )
            except Exception as exc:  # one lead's data or its client's rules: that lead only
                failures.append(LeadFailure(lead.id, describe_error(exc)))
                continue
            scored.append((lead, outcome, planned))

        candidates = {
            (
                lead.client_id,
                message.channel.value,
                normalise_recipient(message.channel, message.recipient),
            )
            for lead, _, planned in scored
            for message in planned
            if message.recipient is not None
        }
        suppressed: dict[UUID, set[tuple[str, str]]] = {cid: set() for cid in client_ids}
        for cid, channel, recipient in await suppressed_recipients(conn, candidates):
            suppressed[cid].add((channel, recipient))

        # The consent history entry behind each refusal for consent, for its note.
        refused = [
            lead.id
            for lead, _, planned in scored
            if any(m.to_lead and m.consent_status is not ConsentStatus.GRANTED for m in planned)
        ]
        relied = await relied_entries(conn, refused) if refused else {}

        # A lead queued again (lqs leads reprocess) may have its messages already.
        again = [lead.id for lead, _, _ in scored if lead.processed_before]
        recorded = await recorded_messages(conn, again) if again else {}

        outcomes: list[LeadOutcome] = []
        communications: list[NewCommunication] = []
        for lead, outcome, planned in scored:
            context = contexts[lead.client_id]
            client_suppressed = frozenset(suppressed[lead.client_id])
            earlier = recorded.get(lead.id, {})
            try:
                lead_messages = [
                    self._communication(
                        lead, outcome, message, context, templates, relied.get(lead.id)
                    )
                    for message in reject_suppressed(planned, client_suppressed)
                    if not recorded_before(message, earlier)
                ]
            except Exception as exc:
                failures.append(LeadFailure(lead.id, describe_error(exc)))
                continue
            outcomes.append(outcome)
            communications.extend(lead_messages)
        await record_lead_outcomes(conn, outcomes)
        queued = await record_communications(conn, communications)
        if failures:
            await self._count_failures(conn, failures)
        return BatchResult(len(leads), len(communications), queued, failed=len(failures))

    async def drain(
        self, stop: asyncio.Event | None = None, *, progress: Callable[[], None] | None = None
    ) -> int:
        """Process batches until no queued lead is left (or ``stop`` is set after a batch);
        return how many leads were processed. ``progress`` is called after each batch.

        Raises:
            Exception: a transient database error (the batches in progress roll back).
        """

        async def lane() -> int:
            processed = 0
            while stop is None or not stop.is_set():
                result = await self.process_batch()
                processed += result.leads
                if progress is not None:
                    progress()
                if result.leads < self.batch_size:
                    break
            return processed

        if self.in_flight == 1:
            return await lane()
        # SKIP LOCKED gives each lane its own leads; a lane stops at the first short batch.
        # A lane that fails (a lost connection) cancels the others, whose transactions roll
        # back: the caller retries a drain that left nothing running behind it.
        try:
            async with asyncio.TaskGroup() as group:
                lanes = [group.create_task(lane()) for _ in range(self.in_flight)]
        except ExceptionGroup as failed:
            raise failed.exceptions[0] from None
        return sum(task.result() for task in lanes)

    def _context(self, client: Client) -> _ClientContext:
        try:
            settings = parse_client_settings(client.settings)
        except Exception as exc:  # stored settings no longer valid: this client's leads only
            return _ClientContext(
                client, ClientSettings(), None, f"invalid client settings: {describe_error(exc)}"
            )
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

    @staticmethod
    def _score(lead_id: UUID, fields: Mapping[str, object], context: _ClientContext) -> LeadOutcome:
        if context.rules is None:
            return LeadOutcome(lead_id, LeadStatus.ERROR, None, None, None, context.rules_error)
        result = score_lead(fields, context.rules)
        return LeadOutcome(
            lead_id,
            result.outcome,
            result.score,
            result.grade,
            breakdown_to_json(result.breakdown),
            None,
        )

    def _communication(
        self,
        lead: ClaimedLead,
        outcome: LeadOutcome,
        message: PlannedMessage,
        context: _ClientContext,
        templates: Mapping[tuple[UUID, str], StoredTemplate],
        relied: ReliedEntry | None,
    ) -> NewCommunication:
        """The communication to record for ``message``; a message to the lead refused for
        its consent names the consent history entry ``relied`` on in its note."""
        assert message.recipient is not None
        template, template_ref = template_for(context.client.id, message.template_id, templates)
        variables = template_variables(lead, outcome, context.client)
        subject: str | None = None
        content: str | None = None
        compliance_notes: str | None = None
        error_message: str | None = None
        if message.rejection is not None:
            status, compliance_notes = CommunicationStatus.REJECTED, message.rejection
            if message.to_lead and message.consent_status is not ConsentStatus.GRANTED:
                compliance_notes = f"{compliance_notes}; {consent_note(relied)}"
        elif template is None:
            status = CommunicationStatus.FAILED
            error_message = f"no template {message.template_id!r} for this client"
        else:
            try:
                rendered = self._renderer.render(template, variables)
            except TemplateError as exc:
                status, error_message = CommunicationStatus.FAILED, str(exc)
            else:
                status, subject, content = (
                    CommunicationStatus.PENDING,
                    rendered.subject,
                    rendered.content,
                )
        return NewCommunication(
            lead_id=lead.id,
            client_id=lead.client_id,
            type=message.channel.value,
            recipient=message.recipient,
            subject=subject,
            content=content,
            status=status,
            template_id=template_ref,
            template_variables=variables,
            priority=message.priority,
            campaign_id=message.campaign_id,
            consent_status=message.consent_status.value,
            compliance_notes=compliance_notes,
            error_message=error_message,
            to_lead=message.to_lead,
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
                template_id=own.name,
                version=own.version,
                channel=Channel(own.channel),
                subject=own.subject,
                body=own.body,
                body_format="html" if own.body_format == "html" else "text",
            ),
            f"{template_id}@v{own.version}",
        )
    default = DEFAULT_TEMPLATES.get(template_id)
    return default, f"{template_id}@default"


def template_variables(lead: ClaimedLead, outcome: LeadOutcome, client: Client) -> dict[str, Any]:
    fields = lead.as_mapping()
    fields["id"] = lead.id
    fields["received_at"] = lead.received_at
    return {
        "lead": {k: _json_safe(fields[k]) for k in _TEMPLATE_LEAD_FIELDS},
        "client": {"name": client.name, "slug": client.slug},
        "score": outcome.score,
        "grade": outcome.grade,
        "outcome": outcome.status.value,
        "breakdown": outcome.score_breakdown or [],
    }
