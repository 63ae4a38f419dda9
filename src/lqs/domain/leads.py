"""A lead as submitted (API or CSV), validated and normalised; and how duplicates are keyed.

Both entry points go through :func:`parse_lead`, so an address accepted over HTTP is
accepted from a CSV file and normalised the same way, and text PostgreSQL cannot store
(NUL, lone surrogates, non-finite numbers, custom fields nested too deeply) is refused the
same way, naming the field (:func:`unstorable_values`).
"""

from __future__ import annotations

import hashlib
import json
import math
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

from lqs.domain.consent import ConsentProof, ConsentRecord, proof_of, record_problems, utc
from lqs.domain.send_rules import zone_problem
from lqs.domain.text import blank_is_missing, first_unstorable
from lqs.domain.vocabulary import ConsentStatus
from lqs.errors import InputError

MAX_CUSTOM_FIELDS = 50
MAX_CUSTOM_BYTES = 16_384
MAX_CUSTOM_KEY = 64
MAX_CUSTOM_NESTING = 3
"""How deep a custom field's value may nest: ``{"a": [{"b": 1}]}`` is 3 levels. Scoring
reads custom fields by key and matches only ``exists`` on containers, so deeper data is
never used; the bound keeps every later walk over it (JSON encoding, jsonb) shallow."""
MAX_NUMBER_DIGITS = 100
"""The longest integer kept: jsonb stores far more, but Python refuses to print more than
4,300 digits and converting long digit strings costs quadratic time."""

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
    time_zone: _Text | None = None
    """The lead's own IANA time zone (quiet hours are read on its clock)."""
    source: _Text | None = _bounded(100)
    utm_source: _Text | None = _bounded(255)
    utm_medium: _Text | None = _bounded(255)
    utm_campaign: _Text | None = _bounded(255)
    utm_term: _Text | None = _bounded(255)
    utm_content: _Text | None = _bounded(255)
    consent_status: ConsentStatus = ConsentStatus.UNKNOWN
    consent_source: _Text | None = _bounded(255)
    consent_at: datetime | None = None
    consent: ConsentRecord | None = None
    """Proof of consent: kept in the consent history, not on the lead (whose consent
    fields it fills when they are not given, and must agree with when they are)."""
    custom: dict[str, Any] = Field(default_factory=dict)

    @field_validator("*", mode="before")
    @classmethod
    def _blank_is_missing(cls, value: object) -> object:
        return blank_is_missing(value)

    @field_validator("country")
    @classmethod
    def _country_code(cls, value: str | None) -> str | None:
        if value is not None and not (len(value) == 2 and value.isascii() and value.isalpha()):
            raise ValueError("must be a two-letter ISO 3166 country code, such as US or DE")
        return value.upper() if value else value

    @field_validator("time_zone")
    @classmethod
    def _iana_zone(cls, value: str | None) -> str | None:
        problem = zone_problem(value) if value is not None else None
        if problem is not None:
            raise ValueError(problem)
        return value

    @field_validator("consent_status", mode="before")
    @classmethod
    def _consent_default(cls, value: object) -> object:
        if value is None or (isinstance(value, str) and not value.strip()):
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


class LeadValidationError(InputError, ValueError):
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
    time_zone: str | None
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
    consent_proof: ConsentProof | None = None
    """The submission's consent record (its status is ``consent_status``), or None."""

    def content_hash(self) -> bytes:
        """SHA-256 of every field of the lead's row: equal for two submissions carrying the
        same data. Not the consent proof, which CSV rows never carry: the hashes of rows
        imported before it existed stay what they were."""
        values = {f.name: getattr(self, f.name) for f in fields(self) if f.name != "consent_proof"}
        # Fields added since hashes were first stored count only when given.
        for name in _HASHED_WHEN_GIVEN:
            if values.get(name) is None:
                del values[name]
        canonical = json.dumps(values, sort_keys=True, default=str)
        return hashlib.sha256(canonical.encode()).digest()

    def as_mapping(self) -> dict[str, object]:
        """The lead's fields by name (enums as their values), custom fields under
        ``custom``: what :func:`~lqs.domain.scoring.score_lead` reads."""
        found: dict[str, object] = {name: getattr(self, name) for name in LEAD_FIELDS}
        found["consent_status"] = self.consent_status.value
        found["custom"] = self.custom
        return found

    @property
    def dedupe_key(self) -> str:
        """Client-scoped identity: the lower-cased email, else the E.164 phone."""
        if self.email:
            return f"email:{self.email.lower()}"
        return f"phone:{self.phone}"


_HASHED_WHEN_GIVEN = ("time_zone",)
"""Lead fields added after :meth:`NewLead.content_hash` values were stored (CSV rows in
``lead_import_rows``): left out of the hash when empty, so a row imported before they
existed hashes as it did."""

# The lead's fields are defined once, by LeadSubmission; every other list derives from it
# (NewLead's fields, db/leads.py's columns, scoring's fields, the template variables;
# tests/unit/test_lead_fields.py pins them together).
NOT_LEAD_FIELDS = ("consent", "custom")
"""What a submission holds beside the lead's fields: the consent record (which goes to the
consent history) and the custom fields."""
LEAD_FIELDS: tuple[str, ...] = tuple(
    n for n in LeadSubmission.model_fields if n not in NOT_LEAD_FIELDS
)
"""Every named field of a lead, in declaration order; custom fields are kept apart."""
CONTACT_FIELDS = ("email", "phone")
"""How the lead is reached: a lead needs one of them, and the first given keys duplicates."""
CONSENT_FIELDS = ("consent_status", "consent_source", "consent_at")
"""The lead's consent, replaced together: a submission whose status is ``unknown`` keeps
the stored status, source and time."""
PROFILE_FIELDS: tuple[str, ...] = tuple(
    n for n in LEAD_FIELDS if n not in ("consent_source", "consent_at")
)
"""What describes the lead, the fields rules may score and templates may show: every lead
field but where and when consent was recorded (kept for audits only)."""
_LEAD_FIELD_NAMES = frozenset(LeadSubmission.model_fields)


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


# ------------------------------------------------------------------ storable text

_NUMBER_BOUND = 10**MAX_NUMBER_DIGITS


def escaped(text: str, limit: int = 200) -> str:
    """``text`` safe to show anywhere: NUL, other control characters and lone surrogates
    become ``\\u0001``-style escapes (so the result always encodes as UTF-8); cut at ``limit``."""
    head = text[:limit]
    if not head.isprintable():
        head = "".join(c if c.isprintable() else f"\\u{ord(c):04x}" for c in head)
    return head + ("…" if len(text) > limit else "")


def unstorable_text(text: str) -> str | None:
    """Why PostgreSQL cannot store ``text`` in a ``text`` or ``jsonb`` column, or None.

    A text value cannot hold NUL (jsonb refuses ``\\u0000`` too), and a lone surrogate
    (``"\\ud800"`` in JSON) is not Unicode: it has no UTF-8 form to send at all.
    """
    found = first_unstorable(text)
    if found is None:
        return None
    char = found[1]
    if char == "\x00":
        return "contains the NUL character (\\u0000), which cannot be stored"
    return f"contains a lone surrogate (\\u{ord(char):04x}), which is not valid Unicode"


def unstorable_values(value: object, path: str, *, max_nesting: int) -> list[FieldError]:
    """Every part of a JSON-like ``value`` that PostgreSQL's ``jsonb`` cannot hold, each
    named by its path from ``path`` (``custom.tags[2]``, ``data.subject``).

    Refused: strings (values and keys) :func:`unstorable_text` refuses, non-finite floats
    (NaN, infinities), integers over :data:`MAX_NUMBER_DIGITS` digits, and containers
    nested more than ``max_nesting`` levels (``[[1]]`` is 2; a scalar 0). Walks without
    recursion, so any depth is safe. Keys in the paths are shown :func:`escaped`.
    """
    return _walk(path, [((), value, None)], max_nesting, 0)


def _walk(
    path: str,
    stack: list[tuple[tuple[str | int, ...], object, str | None]],
    max_nesting: int,
    offset: int,
) -> list[FieldError]:
    """:func:`unstorable_values` from ``stack``: (path as keys and indices, value, why its
    key cannot be stored); a value's nesting is its path's length less ``offset``. Paths
    are only spelled out for a problem, and problems come in document order."""
    problems: list[FieldError] = []
    while stack:
        parts, item, bad_key = stack.pop()
        problem: str | None = None
        if bad_key is not None:
            problems.append(FieldError(_spelled(path, parts), f"the field name {bad_key}"))
        if isinstance(item, str):
            problem = unstorable_text(item)
        elif isinstance(item, float):
            problem = None if math.isfinite(item) else "must be a finite number"
        elif isinstance(item, int) and not isinstance(item, bool):
            if abs(item) >= _NUMBER_BOUND:
                problem = f"numbers have at most {MAX_NUMBER_DIGITS} digits"
        elif isinstance(item, Mapping | list | tuple):
            if len(parts) - offset >= max_nesting:
                problem = f"nests deeper than {max_nesting} levels"
            elif isinstance(item, Mapping):
                stack.extend(
                    reversed(
                        [
                            (
                                (*parts, str(k)),
                                v,
                                unstorable_text(k) if isinstance(k, str) else None,
                            )
                            for k, v in item.items()
                        ]
                    )
                )
            else:
                stack.extend(reversed([((*parts, i), v, None) for i, v in enumerate(item)]))
        if problem is not None:
            problems.append(FieldError(_spelled(path, parts), problem))
    return problems


def _spelled(path: str, parts: tuple[str | int, ...]) -> str:
    return path + "".join(
        f"[{p}]" if isinstance(p, int) else f".{escaped(p, MAX_CUSTOM_KEY)}" for p in parts
    )


def _pydantic_errors(exc: ValidationError) -> list[FieldError]:
    errors = []
    for err in exc.errors():
        location = ".".join(str(p) for p in err["loc"]) or "body"
        errors.append(FieldError(location, err["msg"].removeprefix("Value error, ")))
    return errors


def _storable_part(data: Mapping[str, object]) -> tuple[dict[str, object], list[FieldError]]:
    """``data`` without the fields (and custom fields) PostgreSQL cannot store, and the
    problems, named as the API reports them (``first_name``, ``custom.<key>``)."""
    if _plainly_storable(data):
        return dict(data), []
    kept: dict[str, object] = {}
    problems: list[FieldError] = []
    for key, value in data.items():
        if key == "custom" and isinstance(value, Mapping):
            custom: dict[object, object] = {}
            for name, item in value.items():
                found = _custom_field_problems(name, item)
                problems += found
                if not found:
                    custom[name] = item
            kept[key] = custom
            continue
        if key == "consent" and isinstance(value, Mapping):
            # A flat object: the model refuses nesting and types; text is checked here.
            found = unstorable_values(value, "consent", max_nesting=2)
        elif key in _LEAD_FIELD_NAMES:
            # A lead field holds one value; anything else is the model's to refuse.
            reason = unstorable_text(value) if isinstance(value, str) else None
            found = [FieldError(key, reason)] if reason is not None else []
        else:  # an unknown field, kept in custom
            found = _custom_field_problems(key, value)
        problems += found
        if not found:
            kept[key] = value
    return kept, problems


def _plainly_storable(data: Mapping[str, object]) -> bool:
    """The common case, quickly: True when :func:`_storable_part` would find nothing.

    Keys and text values are checked joined, in one pass; only containers are walked.
    """
    texts: list[str] = []
    custom = data.get("custom")
    fields = (data.items(), custom.items() if isinstance(custom, Mapping) else ())
    for top_level, items in zip((True, False), fields, strict=True):
        for key, value in items:
            if type(key) is not str:
                return False
            texts.append(key)
            if type(value) is str:
                texts.append(value)
            elif top_level and key == "consent" and type(value) is dict:
                if unstorable_values(value, "consent", max_nesting=2):
                    return False
            elif top_level and key in _LEAD_FIELD_NAMES:
                continue  # the model refuses what is not its type; custom is walked here
            elif value is None or type(value) is bool:
                continue
            elif type(value) is int:
                if not -_NUMBER_BOUND < value < _NUMBER_BOUND:
                    return False
            elif type(value) is list and all(type(v) is str for v in value):
                texts += value  # a list of tags
            elif _custom_field_problems(key, value):
                return False
    joined = "".join(texts)
    return "\x00" not in joined and (joined.isascii() or unstorable_text(joined) is None)


def _custom_field_problems(name: object, value: object) -> list[FieldError]:
    bad_name = unstorable_text(name) if isinstance(name, str) else None
    return _walk("custom", [((str(name),), value, bad_name)], MAX_CUSTOM_NESTING, 1)


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


def parse_lead(
    data: Mapping[str, object], *, default_region: str = "US", now: datetime | None = None
) -> NewLead:
    """Validate and normalise one submitted lead; ``now`` (default: the clock) bounds a
    consent record's ``captured_at``.

    A consent record fills the lead's flat consent fields; given both, they must agree
    (``consent_status`` with ``consent.status``, ``consent_source`` with
    ``consent.source``, ``consent_at`` with ``consent.captured_at``), else the flat field
    is named.

    Raises:
        LeadValidationError: listing every bad field (nothing is partially accepted).
    """
    # Text PostgreSQL cannot store is refused first, and the fields holding it are left out
    # of the checks below: their messages (email-validator's) could quote the bad text.
    data, errors = _storable_part(data)
    try:
        submission: LeadSubmission | None = LeadSubmission.model_validate(data)
    except ValidationError as exc:
        submission = None
        errors += _pydantic_errors(exc)
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
        if submission.consent is not None:
            errors += _consent_problems(submission, now or datetime.now(UTC))
    if errors or submission is None:
        raise LeadValidationError(_dedupe(errors))

    # PostgreSQL refuses offsets beyond ±15:59 that ISO 8601 allows: store UTC.
    consent_at = utc(submission.consent_at)
    values: dict[str, Any] = {name: getattr(submission, name) for name in LEAD_FIELDS}
    values.update(
        email=email,
        phone=phone,
        company_domain=values["company_domain"].lower() if values["company_domain"] else None,
        consent_at=consent_at,
    )
    proof = None
    if submission.consent is not None:
        proof = proof_of(submission.consent)
        values.update(
            consent_status=submission.consent.status,
            consent_source=submission.consent_source or proof.source,
            consent_at=consent_at or proof.captured_at,
        )
    return NewLead(**values, custom=dict(submission.custom), consent_proof=proof)


def _consent_problems(submission: LeadSubmission, now: datetime) -> list[FieldError]:
    """The consent record's own problems, and the flat consent fields that disagree
    with it."""
    record = submission.consent
    assert record is not None
    problems = [FieldError(name, message) for name, message in record_problems(record, now)]
    given = submission.model_fields_set
    if (
        "consent_status" in given
        and submission.consent_status is not ConsentStatus.UNKNOWN
        and submission.consent_status is not record.status
    ):
        problems.append(FieldError("consent_status", "disagrees with consent.status"))
    if submission.consent_source and record.source and submission.consent_source != record.source:
        problems.append(FieldError("consent_source", "disagrees with consent.source"))
    flat_at, record_at = utc(submission.consent_at), utc(record.captured_at)
    if flat_at and record_at and flat_at != record_at:
        problems.append(FieldError("consent_at", "disagrees with consent.captured_at"))
    return problems
