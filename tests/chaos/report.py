"""One run's findings: the invariants it broke, and a Markdown table for docs/RELIABILITY.md."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from tests.chaos.checks import DUPLICATE_BOUND, FINAL_STATUSES, CallbackAudit, MessageAudit
from tests.chaos.fleet import FleetTally
from tests.chaos.intake import IntakeTally


@dataclass
class FaultTally:
    """The faults the schedule injected."""

    worker_kills: int = 0
    termination_rounds: int = 0
    backends_terminated: int = 0
    restarts: list[float] = field(default_factory=list)
    statement_timeout: str = ""
    statements_cancelled: int = 0
    errors: list[str] = field(default_factory=list)


@dataclass
class ChaosReport:
    """Everything measured in one run (filled in by :func:`tests.chaos.harness.run_chaos`)."""

    name: str
    workers: int
    intake: IntakeTally = field(default_factory=IntakeTally)
    faults: FaultTally = field(default_factory=FaultTally)
    fleet: FleetTally = field(default_factory=FleetTally)
    leads_by_status: Counter[str] = field(default_factory=Counter)
    accepted_missing: int = 0
    accepted_queued: int = 0
    comms_by_status: Counter[str] = field(default_factory=Counter)
    failed_reasons: list[tuple[str, int]] = field(default_factory=list)
    delivered_without_external_id: int = 0
    queue_rows_left: int = 0
    messages: MessageAudit = field(default_factory=MessageAudit)
    provider_requests: dict[str, Counter[str]] = field(default_factory=dict)
    callbacks: CallbackAudit = field(default_factory=CallbackAudit)
    heartbeat_rows: int = 0
    settled_after: float | None = None
    unsettled: str = ""
    elapsed: float = 0.0
    setup_error: str = ""

    def violations(self) -> list[str]:
        """Every broken invariant, one line each; empty when the system survived."""
        found: list[str] = []
        if self.setup_error:
            found.append(f"the run did not complete: {self.setup_error}")
        if self.unsettled:
            found.append(f"not quiescent within the wait: {self.unsettled}")
        if self.accepted_missing:
            found.append(f"{self.accepted_missing} lead(s) answered 2xx are not in the database")
        if self.leads_by_status["queued"]:
            found.append(
                f"{self.leads_by_status['queued']} lead(s) left queued "
                f"({self.accepted_queued} of them answered 2xx)"
            )
        if self.leads_by_status["error"]:
            found.append(
                f"{self.leads_by_status['error']} valid lead(s) parked as 'error' by the faults"
            )
        open_ = self.comms_by_status["pending"] + self.comms_by_status["sent"]
        if open_:
            found.append(
                f"{open_} communication(s) not final: {self.comms_by_status['pending']} pending, "
                f"{self.comms_by_status['sent']} sent with no delivery event"
            )
        if self.delivered_without_external_id:
            found.append(
                f"{self.delivered_without_external_id} delivered communication(s) with NULL "
                "external_id"
            )
        resend_twice = self.messages.more_than_once("resend")
        if resend_twice:
            found.append(
                f"Resend accepted {len(resend_twice)} communication(s) more than once "
                f"(e.g. {resend_twice[0]})"
            )
        if self.messages.orphans:
            found.append(
                f"{len(self.messages.orphans)} accepted message(s) without a prior communications "
                f"row (e.g. {self.messages.orphans[0]})"
            )
        if self.messages.sent_but_never_accepted:
            found.append(
                f"{len(self.messages.sent_but_never_accepted)} communication(s) recorded as sent "
                f"that no provider accepted (e.g. {self.messages.sent_but_never_accepted[0]})"
            )
        for line in self.fleet.self_exits:
            found.append(f"process exited by itself: {line}")
        for line in self.fleet.hung:
            found.append(f"worker hung (restarted by hand): {line}")
        if self.fleet.killed_at_teardown:
            found.append(
                "did not stop within 15 s of SIGTERM: " + ", ".join(self.fleet.killed_at_teardown)
            )
        for line in self.intake.unexpected[:5]:
            found.append(f"a valid intake request was refused: {line}")
        for provider, bound in DUPLICATE_BOUND.items():
            if bound is not None and self.messages.duplicates(provider) > bound:
                found.append(
                    f"{provider} duplicates {self.messages.duplicates(provider)} > bound {bound}"
                )
        return found

    def rows(self) -> list[tuple[str, str]]:
        """The table's rows: (measure, value)."""
        i, f, t = self.intake, self.faults, self.fleet
        leads = ", ".join(f"{s} {n}" for s, n in sorted(self.leads_by_status.items())) or "-"
        comms = ", ".join(
            f"{s} {self.comms_by_status[s]}"
            for s in (*FINAL_STATUSES, "sent", "pending")
            if self.comms_by_status[s]
        )
        processed = sum(n for s, n in self.leads_by_status.items() if s != "queued")
        rows: list[tuple[str, str]] = [
            ("Leads posted (requests)", f"{i.leads_posted} ({i.requests})"),
            (
                "Intake answers (all attempts)",
                f"2xx {i.answers_2xx}, 5xx {i.answers_5xx}, 429 {i.answers_429}, "
                f"other 4xx {i.answers_other_4xx}, no answer {i.transport_errors}; "
                f"{i.replayed} idempotent replays",
            ),
            (
                "Leads accepted (2xx) / given up after 5 tries",
                f"{len(i.accepted_ids)} / {i.leads_given_up} ({i.requests_given_up} requests)",
            ),
            ("Leads accepted but missing", str(self.accepted_missing)),
            ("Leads processed", f"{processed} ({leads})"),
            ("Leads stuck (queued)", str(self.leads_by_status["queued"])),
            ("Communications by status", comms or "-"),
            (
                "Failed communications, top reasons",
                "; ".join(f"{n}× {r}" for r, n in self.failed_reasons) or "-",
            ),
            ("Delivered with NULL external_id", str(self.delivered_without_external_id)),
            ("Delivery queue rows left", str(self.queue_rows_left)),
            (
                "Messages accepted by the simulator",
                ", ".join(f"{p} {n}" for p, n in sorted(self.messages.accepted.items())) or "-",
            ),
            ("Accepted without a prior communications row", str(len(self.messages.orphans))),
            ("Recorded sent but never accepted", str(len(self.messages.sent_but_never_accepted))),
            (
                "Accepted, then failed or rejected (undelivered SMS included)",
                ", ".join(
                    f"{s} {n}" for s, n in sorted(self.messages.accepted_but_not_sent.items())
                )
                or "0",
            ),
            (
                "Resend: communications accepted more than once",
                str(len(self.messages.more_than_once("resend"))),
            ),
        ]
        for provider in ("sendgrid", "twilio"):
            bound = DUPLICATE_BOUND[provider]
            rows.append(
                (
                    f"{provider.title()} duplicates (extra messages / communications)",
                    f"{self.messages.duplicates(provider)} / "
                    f"{len(self.messages.more_than_once(provider))} "
                    f"(bound: {'not decided' if bound is None else bound})",
                )
            )
        rows += [
            (
                "Provider requests by outcome",
                "; ".join(
                    f"{p}: " + ", ".join(f"{o} {n}" for o, n in sorted(c.items()))
                    for p, c in sorted(self.provider_requests.items())
                )
                or "-",
            ),
            (
                "Delivery webhooks (events / attempts refused / events given up)",
                f"{self.callbacks.events} / {self.callbacks.refused_attempts} / "
                f"{self.callbacks.given_up}",
            ),
            ("Faults: workers SIGKILLed", str(f.worker_kills)),
            (
                "Faults: backends terminated (rounds)",
                f"{f.backends_terminated} ({f.termination_rounds})",
            ),
            (
                "Faults: PostgreSQL restarts (-m fast)",
                f"{len(f.restarts)} ({', '.join(f'{s:.1f} s' for s in f.restarts)})",
            ),
            ("Faults: statement_timeout window", f.statement_timeout or "-"),
            ("Faults: statements cancelled (server log)", str(f.statements_cancelled)),
            ("Workers restarted by the orchestrator", str(t.orchestrator_restarts)),
            (
                "Processes that exited by themselves (worker / api / simulator)",
                f"{len(t.self_exits_of('worker'))} / {len(t.self_exits_of('api'))} / "
                f"{len(t.self_exits_of('simulator'))}",
            ),
            ("Workers hung (restarted by hand)", str(len(t.hung))),
            ("Processes SIGKILLed at teardown", str(len(t.killed_at_teardown))),
            ("worker_heartbeats rows", str(self.heartbeat_rows)),
            (
                "Quiescent after faults",
                f"{self.settled_after:.1f} s" if self.settled_after is not None else "no",
            ),
            ("Elapsed", f"{self.elapsed:.1f} s"),
        ]
        return rows

    def table(self) -> str:
        """The Markdown table, then the broken invariants (or that there were none)."""
        width = max(len(label) for label, _ in self.rows())
        lines = [
            f"Chaos run '{self.name}' ({self.workers} workers)",
            "",
            f"| {'Measure'.ljust(width)} | Value |",
            f"| {'-' * width} | ----- |",
            *(f"| {label.ljust(width)} | {_cell(value)} |" for label, value in self.rows()),
            "",
        ]
        violations = self.violations()
        if violations:
            lines.append(f"Broken invariants ({len(violations)}):")
            lines += [f"- {line}" for line in violations]
        else:
            lines.append("Every invariant held.")
        return "\n".join(lines)


def _cell(value: Any) -> str:
    return str(value).replace("|", "\\|").replace("\n", " ")
