"""Storage limitation (GDPR Art. 5(1)(e)): how long a client keeps what, and the moments
before which each retention rule applies.

A client's ``retention`` setting (:class:`RetentionSettings`) names up to three ages, in
days; :func:`cutoffs` turns them into moments for one run. What each rule does to the
rows is :mod:`lqs.db.retention`'s; docs/COMPLIANCE.md explains it.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from pydantic import BaseModel, ConfigDict, Field, model_validator

MAX_DAYS = 36_500
"""The longest age a rule may name (100 years): keeps the arithmetic inside datetime."""

MAX_BATCH = 10_000
"""The most rows one retention statement changes or deletes (its own short transaction)."""

IDLE_RATIO = 3.0
"""After each batch, a run waits this many times as long as the batch took: it works at
most a quarter of its time, so processing and sending beside it keep their pace on a small
machine (bench/retention.py measures it)."""


class RetentionSettings(BaseModel):
    """A client's ``retention`` setting; each age is optional (None: kept for ever).

    - ``content_days``: a communication older than this loses its subject, content and
      template variables, and its provider events' payloads and attempts' error texts;
    - ``rows_days``: a communication older than this is deleted, with its attempts and
      events (at least ``content_days`` when both are set);
    - ``leads_days``: a lead received longer ago than this, whose communications are all
      that old too, is deleted with everything it has.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    content_days: int | None = Field(default=None, ge=1, le=MAX_DAYS, strict=True)
    rows_days: int | None = Field(default=None, ge=1, le=MAX_DAYS, strict=True)
    leads_days: int | None = Field(default=None, ge=1, le=MAX_DAYS, strict=True)

    @model_validator(mode="after")
    def _rows_after_content(self) -> RetentionSettings:
        if (
            self.content_days is not None
            and self.rows_days is not None
            and self.rows_days < self.content_days
        ):
            raise ValueError(
                f"rows_days ({self.rows_days}) must be at least content_days"
                f" ({self.content_days}): rows are deleted after their content is cleared"
            )
        return self

    @property
    def is_empty(self) -> bool:
        """No rule is set: a run has nothing to do for this client."""
        return self.content_days is None and self.rows_days is None and self.leads_days is None


@dataclass(frozen=True)
class Cutoffs:
    """The moments a run applies: rows created (leads: received) before each are due."""

    content_before: datetime | None
    rows_before: datetime | None
    leads_before: datetime | None


def cutoffs(settings: RetentionSettings, now: datetime) -> Cutoffs:
    """The moments before which each of ``settings``' rules applies, at ``now``."""

    def before(days: int | None) -> datetime | None:
        return None if days is None else now - timedelta(days=days)

    return Cutoffs(
        before(settings.content_days), before(settings.rows_days), before(settings.leads_days)
    )


def leads_per_batch(batch: int, leads: int, messages: int) -> int:
    """How many leads the next batch takes so that they and their messages (deleted with
    them) come to about ``batch`` rows, judging by the last batch: 1 to ``batch``."""
    return max(1, min(batch, batch * leads // (leads + messages)))
