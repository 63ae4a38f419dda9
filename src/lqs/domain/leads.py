"""A lead as submitted (API or CSV), validated and normalised; and how duplicates are keyed.

Both entry points go through :func:`parse_lead`, so an address accepted over HTTP is
accepted from a CSV file and normalised the same way.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from datetime import UTC, datetime
from functools import lru_cache
from typing import Annotated, Any

import phonenumbers
from email_validator import EmailNotValidError, validate_email
from email_validator.rfc_constants import CASE_INSENSITIVE_MAILBOX_NAMES, EMAIL_MAX_LENGTH
from email_validator.syntax import validate_email_local_part
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    ValidationError,
    field_validator,
    model_validator,
)

from lqs.domain.vocabulary import ConsentStatus

MAX_CUSTOM_FIELDS = 50
MAX_CUSTOM_BYTES = 16_384
MAX_CUSTOM_KEY = 64

_Text = Annotated[str, StringConstraints(strip_whitespace=True)]


def _bounded(limit: int) -> Any:
    return Field(default=None, max_length=limit)


class LeadSubmission(BaseModel):
    """The shape of a submitted lead. Fields it does not name are kept in ``custom``."""

    model_config = ConfigDict(extra="allow", str_strip_whitespace=True)

    email: _Text | None = _bounded(320)
    phone: _Text | None = _bounded(40)
    first_name: _Text | None = _bounded(100)
    last_name: _Text | None = _bounded(100)
    job_title: _Text | None = _bounded(200)
    company_name: _Text | None = _bounded(200)
    company_domain: _Text | None = _bounded(255)
    company_size: int | None = Field(default=None, ge=0, le=10_000_000)
    industry: _Text | None = _bounded(100)
    country: _Text | None = None
    source: _Text | None = _bounded(100)
    utm_source: _Text | None = _bounded(255)
    utm_medium: _Text | None = _bounded(255)
    utm_campaign: _Text | None = _bounded(255)
    utm_term: _Text | None = _bounded(255)
    utm_content: _Text | None = _bounded(255)
    consent_status: ConsentStatus = ConsentStatus.UNKNOWN
    consent_source: _Text | None = _bounded(255)
    consent_at: datetime | None = None
    custom: dict[str, Any] = Field(default_factory=dict)

    @field_validator("*", mode="before")
    @classmethod
    def _blank_is_missing(cls, value: object) -> object:
        # CSV cells and sloppy forms send "" for "not given".
        if isinstance(value, str) and not value.strip():
            return None
        return value

    @field_validator("country")
    @classmethod
    def _country_code(cls, value: str | None) -> str | None:
        if value is not None and not (len(value) == 2 and value.isascii() and value.isalpha()):
            raise ValueError("must be a two-letter ISO 3166 country code, such as US or DE")
        return value.upper() if value else value

    @field_validator("consent_status", mode="before")
    @classmethod
    def _consent_default(cls, value: object) -> object:
        if value is None:
            return ConsentStatus.UNKNOWN
        return value.lower() if isinstance(value, str) else value

    @field_validator("custom", mode="before")
    @classmethod
    def _custom_default(cls, value: object) -> object:
        return {} if value is None else value

    @model_validator(mode="after")
    def _fold_extras_into_custom(self) -> LeadSubmission:
        extras = dict(self.__pydantic_extra__ or {})
        if extras:
            self.custom = {**self.custom, **{k: v for k, v in extras.items() if v is not None}}
            self.__pydantic_extra__ = {}
        return self


@dataclass(frozen=True)
class FieldError:
    """One problem with one field: what the API's 422 and a CSV rejects file report."""

    field: str
    message: str


class LeadValidationError(ValueError):
    """Raised when a submission is not a valid lead; ``errors`` names every bad field."""

    def __init__(self, errors: list[FieldError]) -> None:
        self.errors = errors
        super().__init__("; ".join(f"{e.field}: {e.message}" for e in errors))


@dataclass(frozen=True)
class NewLead:
    """A validated, normalised lead ready to be stored."""

    email: str | None
    phone: str | None
    first_name: str | None
    last_name: str | None
    job_title: str | None
    company_name: str | None
    company_domain: str | None
    company_size: int | None
    industry: str | None
    country: str | None
    source: str | None
    utm_source: str | None
    utm_medium: str | None
    utm_campaign: str | None
    utm_term: str | None
    utm_content: str | None
    consent_status: ConsentStatus
    consent_source: str | None
    consent_at: datetime | None
    custom: Mapping[str, object] = field(default_factory=dict)

    def content_hash(self) -> bytes:
        """SHA-256 of every field: equal for two submissions carrying the same data."""
        values = {f.name: getattr(self, f.name) for f in fields(self)}
        canonical = json.dumps(values, sort_keys=True, default=str)
        return hashlib.sha256(canonical.encode()).digest()

    @property
    def dedupe_key(self) -> str:
        """Client-scoped identity: the lower-cased email, else the E.164 phone."""
        if self.email:
            return f"email:{self.email.lower()}"
        return f"phone:{self.phone}"


CONTACT_FIELDS = ("email", "phone")
LEAD_FIELDS: tuple[str, ...] = tuple(n for n in LeadSubmission.model_fields if n != "custom")


# Plain ASCII addresses, by far the most common, take a fast path that validates each
# domain once; anything else goes to email-validator whole. Both give the same answer
# (property-tested against email-validator in tests/unit/test_leads.py).
_PLAIN_ADDRESS = re.compile(r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~.-]{1,64}@[A-Za-z0-9.-]{1,253}")


@lru_cache(maxsize=8192)
def _normalised_domain(domain: str) -> str | None:
    try:
        return validate_email("postmaster@" + domain, check_deliverability=False).domain
    except EmailNotValidError:
        return None


def _plain_address(raw: str) -> str | None:
    if not _PLAIN_ADDRESS.fullmatch(raw):
        return None
    local, _, domain = raw.partition("@")
    normalised_domain = _normalised_domain(domain)
    if normalised_domain is None:
        return None
    try:
        local = validate_email_local_part(local)["local_part"]
    except EmailNotValidError:
        return None
    if local.lower() in CASE_INSENSITIVE_MAILBOX_NAMES:
        local = local.lower()
    address = f"{local}@{normalised_domain}"
    return address if len(address) <= EMAIL_MAX_LENGTH else None


def normalise_email(raw: str) -> str:
    """The address as email-validator normalises it (domain lower-cased, IDNA); no DNS.

    Raises:
        ValueError: the address is not valid, with email-validator's reason.
    """
    plain = _plain_address(raw)
    if plain is not None:
        return plain
    try:
        return validate_email(raw, check_deliverability=False).normalized
    except EmailNotValidError as exc:
        raise ValueError(str(exc)) from exc


def normalise_phone(raw: str, default_region: str) -> str:
    """The number in E.164 form; numbers without ``+`` are read in ``default_region``.

    Raises:
        ValueError: not a possible, valid number.
    """
    try:
        number = phonenumbers.parse(raw, default_region.upper())
    except phonenumbers.NumberParseException as exc:
        raise ValueError(f"not a phone number: {exc}") from exc
    if not phonenumbers.is_valid_number(number):
        raise ValueError(f"not a valid phone number for region {default_region.upper()}")
    return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)


def _pydantic_errors(exc: ValidationError) -> list[FieldError]:
    errors = []
    for err in exc.errors():
        location = ".".join(str(p) for p in err["loc"]) or "body"
        errors.append(FieldError(location, err["msg"].removeprefix("Value error, ")))
    return errors


def _check_custom(custom: Mapping[str, object]) -> list[FieldError]:
    errors = []
    if len(custom) > MAX_CUSTOM_FIELDS:
        errors.append(FieldError("custom", f"at most {MAX_CUSTOM_FIELDS} custom fields"))
    errors.extend(
        FieldError(
            f"custom.{key[:MAX_CUSTOM_KEY]}", f"field names are at most {MAX_CUSTOM_KEY} characters"
        )
        for key in custom
        if len(key) > MAX_CUSTOM_KEY
    )
    if custom and len(json.dumps(custom, default=str)) > MAX_CUSTOM_BYTES:
        errors.append(FieldError("custom", f"custom fields exceed {MAX_CUSTOM_BYTES} bytes"))
    return errors


def _text_or_none(value: object) -> str | None:
    if isinstance(value, str) and value.strip() and len(value) <= 320:
        return value.strip()
    return None


def _dedupe(errors: list[FieldError]) -> list[FieldError]:
    seen: dict[str, FieldError] = {}
    for error in errors:
        seen.setdefault(error.field, error)
    return list(seen.values())


def parse_lead(data: Mapping[str, object], *, default_region: str = "US") -> NewLead:
    """Validate and normalise one submitted lead.

    Raises:
        LeadValidationError: listing every bad field (nothing is partially accepted).
    """
    errors: list[FieldError] = []
    try:
        submission: LeadSubmission | None = LeadSubmission.model_validate(data)
    except ValidationError as exc:
        submission = None
        errors = _pydantic_errors(exc)
    # Check the contact fields even when others failed, so one response names every problem.
    raw_email = submission.email if submission else _text_or_none(data.get("email"))
    raw_phone = submission.phone if submission else _text_or_none(data.get("phone"))
    email = phone = None
    if raw_email is not None:
        try:
            email = normalise_email(raw_email)
        except ValueError as exc:
            errors.append(FieldError("email", str(exc)))
    if raw_phone is not None:
        try:
            phone = normalise_phone(raw_phone, default_region)
        except ValueError as exc:
            errors.append(FieldError("phone", str(exc)))
    if (
        raw_email is None
        and raw_phone is None
        and not any(e.field in CONTACT_FIELDS for e in errors)
    ):
        errors.append(FieldError("email", "a lead needs an email or a phone"))
    if submission is not None:
        errors += _check_custom(submission.custom)
    if errors or submission is None:
        raise LeadValidationError(_dedupe(errors))

    consent_at = submission.consent_at
    if consent_at is not None and consent_at.tzinfo is None:
        consent_at = consent_at.replace(tzinfo=UTC)
    return NewLead(
        email=email,
        phone=phone,
        first_name=submission.first_name,
        last_name=submission.last_name,
        job_title=submission.job_title,
        company_name=submission.company_name,
        company_domain=submission.company_domain.lower() if submission.company_domain else None,
        company_size=submission.company_size,
        industry=submission.industry,
        country=submission.country,
        source=submission.source,
        utm_source=submission.utm_source,
        utm_medium=submission.utm_medium,
        utm_campaign=submission.utm_campaign,
        utm_term=submission.utm_term,
        utm_content=submission.utm_content,
        consent_status=submission.consent_status,
        consent_source=submission.consent_source,
        consent_at=consent_at,
        custom=dict(submission.custom),
    )
