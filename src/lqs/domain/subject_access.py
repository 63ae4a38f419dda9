"""Subject access (GDPR Art. 15): who is asked about, and the document that answers.

The person is named by an email address, a phone number or both (:func:`subject_of`);
the records are read by :func:`lqs.db.tenant_reads.subject_records` and
:func:`lqs.db.subject_access.subject_bookkeeping`, and :func:`subject_document` puts them
in one JSON document, described by docs/subject-access.schema.json.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, fields
from datetime import datetime
from typing import Any
from uuid import UUID

from lqs.domain.leads import FieldError, normalise_email, normalise_phone
from lqs.errors import InputError

SUBJECT_SCHEMA_VERSION = 1
"""The version of the document's shape (docs/subject-access.schema.json); a change that
renames or removes a key raises it."""


class SubjectQueryError(InputError, ValueError):
    """The email address or phone number naming a person cannot be used; ``error`` names
    the field (``email`` or ``phone``) and says why."""

    def __init__(self, error: FieldError) -> None:
        self.error = error
        super().__init__(f"{error.field}: {error.message}")


@dataclass(frozen=True)
class Subject:
    """The person asked about, as LQS stores their addresses: the email lower-cased (as
    suppressions and consent history hold it), the phone in E.164 form."""

    email: str | None
    phone: str | None

    @property
    def addresses(self) -> list[str]:
        """Both addresses, as the recipient columns hold them."""
        return [a for a in (self.email, self.phone) if a is not None]


def subject_of(email: str | None, phone: str | None) -> Subject:
    """The person with this email address and/or phone number (E.164: ``+`` and the
    country code; no default region is guessed).

    Raises:
        SubjectQueryError: neither is given, or one is not a valid address or number.
    """
    email = (email or "").strip() or None
    phone = (phone or "").strip() or None
    if email is None and phone is None:
        raise SubjectQueryError(FieldError("email", "give an email address or a phone number"))
    normal_email = normal_phone = None
    if email is not None:
        try:
            normal_email = normalise_email(email).lower()
        except ValueError as exc:
            raise SubjectQueryError(
                FieldError("email", f"not a valid email address: {exc}")
            ) from None
    if phone is not None:
        if not phone.startswith("+"):
            raise SubjectQueryError(
                FieldError("phone", "must be in E.164 form: + and the country code")
            )
        try:
            normal_phone = normalise_phone(phone, "US")  # the + makes the region unused
        except ValueError as exc:
            raise SubjectQueryError(FieldError("phone", str(exc))) from None
    return Subject(normal_email, normal_phone)


@dataclass(frozen=True)
class SubjectRecords:
    """Every row held on one person in one client, each as a JSON object (every column)."""

    leads: list[dict[str, Any]]
    communications: list[dict[str, Any]]
    delivery_attempts: list[dict[str, Any]]
    provider_events: list[dict[str, Any]]
    consent_history: list[dict[str, Any]]
    suppressions: list[dict[str, Any]]
    audit_log: list[dict[str, Any]]
    idempotency_records: list[dict[str, Any]]
    lead_import_rows: list[dict[str, Any]]
    recipient_sends: list[dict[str, Any]]

    @property
    def lead_ids(self) -> list[UUID]:
        return [UUID(str(lead["id"])) for lead in self.leads]


SUBJECT_TABLES: tuple[str, ...] = tuple(f.name for f in fields(SubjectRecords))
"""The document's lists, in order."""


def subject_document(
    client: Mapping[str, Any], subject: Subject, generated_at: datetime, records: SubjectRecords
) -> dict[str, Any]:
    """The answer to a subject access request: ``schema_version``, the client (id, slug,
    name), when it was made, who was asked about, and a list per table (empty when
    nothing is held: not an error)."""
    return {
        "schema_version": SUBJECT_SCHEMA_VERSION,
        "client": {key: str(client[key]) for key in ("id", "slug", "name")},
        "generated_at": generated_at.isoformat(),
        "subject": {"email": subject.email, "phone": subject.phone},
        **{name: list(getattr(records, name)) for name in SUBJECT_TABLES},
    }
