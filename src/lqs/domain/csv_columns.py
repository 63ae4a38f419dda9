"""A spreadsheet's columns as lead fields: which column holds which field, and each cell as
the value :func:`~lqs.domain.leads.parse_lead` reads.

Pure functions; reading the file is the CLI's job.

**Which field a column holds.** A column's name is compared without case, spaces or
punctuation (:func:`match_key`: ``E-mail``, ``e_mail`` and ``EMAIL`` are the same name).
It holds the lead field it names (``first_name``, ``First Name``) or the field one of its
:data:`FIELD_ALIASES` names (``Company`` is ``company_name``); any other column goes to
``custom.<key>`` (:func:`custom_key`). ``--map COLUMN=FIELD`` overrides all of this, and a
column that would take a field a ``--map`` gives to another column goes to custom instead.

**Headers refused** (:class:`CsvHeaderError`, every problem in one line, columns numbered
from 1 as a spreadsheet shows them): a name repeated; a column without a name before the
last named one; two columns that would fill the same field (``Email`` and ``E-mail``, or
``Notes`` and ``notes`` in custom). Unnamed columns after the last named one are what
spreadsheets export for formatted but empty columns: they are ignored, and a row with a
value in one is rejected (it is data without a name).

**Cells.** Every cell is trimmed, and a blank one is a value not given (a blank Consent cell
leaves the status ``unknown``). Consent words a spreadsheet uses (``yes``, ``opt-out``,
``1``...) become consent statuses (:data:`CONSENT_WORDS`); a website URL in the company
domain column becomes its host without ``www.``; a company size written with thousands
separators (``1,200``) becomes a number. Rows whose every cell is blank are skipped.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from lqs.domain.leads import CONTACT_FIELDS, LEAD_FIELDS, LeadValidationError
from lqs.domain.vocabulary import ConsentStatus
from lqs.errors import InputError

FIELD_ALIASES: Mapping[str, tuple[str, ...]] = {
    "email": ("E-mail", "Email Address", "E-mail Address", "Work Email"),
    "phone": (
        "Phone Number", "Telephone", "Telephone Number", "Tel", "Mobile", "Mobile Phone",
        "Mobile Number", "Cell", "Cell Phone", "Work Phone",
    ),
    "first_name": ("First", "Given Name", "Forename", "First Names"),
    "last_name": ("Last", "Surname", "Family Name"),
    "job_title": ("Title", "Position", "Role", "Job Role"),
    "company_name": (
        "Company", "Organisation", "Organization", "Organisation Name", "Organization Name",
        "Account Name", "Employer",
    ),
    "company_domain": ("Website", "Web Site", "Website URL", "Domain", "Company Website", "URL"),
    "company_size": (
        "Employees", "Number of Employees", "No. of Employees", "Employee Count", "Headcount",
    ),
    "industry": ("Sector", "Vertical"),
    "country": ("Country Code", "Country/Region"),
    "time_zone": ("TZ", "Time Zone Name", "IANA Time Zone"),
    "source": ("Lead Source", "Lead Origin"),
    "utm_campaign": ("Campaign", "Campaign Name"),
    "consent_status": ("Consent", "Marketing Consent", "Email Consent", "Opt In", "GDPR Consent"),
    "consent_source": ("Consent Given Via",),
    "consent_at": ("Consent Date", "Consent Time", "Consent Timestamp", "Opt In Date"),
}  # fmt: skip
"""Other names spreadsheets and CRM exports give a lead field's column, by field. Each is
compared as :func:`match_key` compares names, so one spelling covers ``Phone Number``,
``phone-number`` and ``PHONE_NUMBER``. Left out on purpose: names whose values say the
opposite of the field (``Opt Out``, ``Unsubscribed``: ``yes`` there means consent denied)
and names too vague to guess (``Name``, ``Mail``, ``Size``, ``Account``, ``Channel``); map
those with ``--map``.
"""

CONSENT_WORDS: Mapping[str, ConsentStatus] = {
    **dict.fromkeys(("yes", "y", "true", "1", "optin", "optedin"), ConsentStatus.GRANTED),
    **dict.fromkeys(("no", "n", "false", "0", "optout", "optedout"), ConsentStatus.DENIED),
    **{status.value: status for status in ConsentStatus},
}
"""A consent cell's words, compared as :func:`match_key` compares names (``Opt-In``,
``opt in`` and ``OPTIN`` are one word), and the status each means. Other words go to
:func:`~lqs.domain.leads.parse_lead` as written, which rejects the row naming the
statuses it accepts."""

_CONSENT_HINT = (
    "expected yes/no, y/n, true/false, 1/0, opt-in/opt-out, or granted, denied, unknown, withdrawn"
)

_NOT_ALNUM = re.compile(r"[\W_]+")


def match_key(name: str) -> str:
    """``name`` as column names are compared: case-folded, without spaces or punctuation.

    Upper-cased before case-folding, so a name and its capitals compare equal even where
    case-folding alone would not (the dotless ``ı`` folds to itself, its capital ``I`` to
    ``i``).
    """
    return _NOT_ALNUM.sub("", name.upper().casefold())


def custom_key(name: str) -> str:
    """The custom field a column of this name fills: lower case, words joined with ``_``."""
    return "_".join(name.strip().lower().replace("-", " ").split())


def _by_key() -> dict[str, str]:
    fields = {match_key(name): name for name in LEAD_FIELDS}
    for name, aliases in FIELD_ALIASES.items():
        for alias in aliases:
            fields.setdefault(match_key(alias), name)
    return fields


_FIELD_BY_KEY = _by_key()


def field_for(column: str) -> str | None:
    """The lead field a column of this name holds, by its name or an alias; None if none."""
    return _FIELD_BY_KEY.get(match_key(column))


class CsvHeaderError(InputError):
    """A CSV file's header row cannot be imported as it is, or ``--map`` does not fit it;
    the message names every problem, with column numbers counted from 1."""


How = Literal["name", "alias", "--map", "custom"]


@dataclass(frozen=True)
class Column:
    """One named column of the file: where it is (from 0), its name, and what it fills."""

    index: int
    name: str
    target: str
    """A lead field, or ``custom.<key>``."""
    how: How
    """Why: the column is named like the field, like one of its aliases, ``--map`` said so,
    or it names no field."""

    @property
    def number(self) -> int:
        """The column's number as a spreadsheet counts: from 1."""
        return self.index + 1


@dataclass(frozen=True)
class ColumnMapping:
    """Every named column and its target; ``width`` counts unnamed trailing columns too."""

    columns: tuple[Column, ...]
    width: int

    @property
    def named_width(self) -> int:
        """How many columns there are up to the last one with a name."""
        return self.columns[-1].number if self.columns else 0

    @property
    def to_custom(self) -> tuple[Column, ...]:
        """The columns whose values go to custom fields (``--map`` ones not included)."""
        return tuple(c for c in self.columns if c.how == "custom")


def parse_override(item: str) -> tuple[str, str]:
    """``--map COLUMN=FIELD`` as (column, field).

    Raises:
        CsvHeaderError: not ``COLUMN=FIELD``, or FIELD is no lead field nor ``custom.<key>``.
    """
    column, sep, target = item.partition("=")
    column, target = column.strip(), target.strip()
    if not sep or not column or not target:
        raise CsvHeaderError(f"--map {item!r}: expected COLUMN=FIELD, e.g. --map 'E-mail=email'")
    if target not in LEAD_FIELDS and not (
        target.startswith("custom.") and target.removeprefix("custom.")
    ):
        raise CsvHeaderError(
            f"--map {item!r}: {target!r} is not a lead field ({', '.join(LEAD_FIELDS)}) "
            "nor custom.<key>"
        )
    return column, target


def map_columns(header: Sequence[str], overrides: Sequence[tuple[str, str]] = ()) -> ColumnMapping:
    """Which field each column of ``header`` fills; ``overrides`` from :func:`parse_override`.

    An override names its column exactly or, when no column has that exact name, as
    :func:`match_key` compares names (``--map email=...`` finds ``E-Mail``).

    Raises:
        CsvHeaderError: naming every problem the header has (see the module's docstring),
            or an override's column the header does not have.
    """
    names = [name.strip() for name in header]
    while names and not names[-1]:
        names.pop()
    if not names:
        raise CsvHeaderError("the header row names no columns; expected a row of column names")
    explicit = _overrides(names, overrides)
    problems = _name_problems(names)
    if problems:
        raise CsvHeaderError("; ".join(problems))
    taken = set(explicit.values())
    columns = []
    for index, name in enumerate(names):
        if index in explicit:
            columns.append(Column(index, name, explicit[index], "--map"))
            continue
        target = field_for(name)
        if target is not None and target not in taken:
            how: How = "name" if match_key(name) == match_key(target) else "alias"
            columns.append(Column(index, name, target, how))
        else:
            columns.append(Column(index, name, f"custom.{custom_key(name)}", "custom"))
    _refuse_shared_targets(columns)
    if not any(c.target in CONTACT_FIELDS for c in columns):
        listed = ", ".join(f'"{c.name}"' for c in columns) or "none"
        raise CsvHeaderError(
            f"no column holds an email or a phone, and every lead needs one (the columns: "
            f"{listed}); name the column with --map, e.g. --map 'COLUMN=email'"
        )
    return ColumnMapping(tuple(columns), len(header))


def _overrides(names: list[str], overrides: Sequence[tuple[str, str]]) -> dict[int, str]:
    """Each overridden column's index and target."""
    found: dict[int, str] = {}
    for column, target in overrides:
        matches = [i for i, name in enumerate(names) if name == column]
        if not matches:
            matches = [i for i, name in enumerate(names) if match_key(name) == match_key(column)]
        if not matches:
            raise CsvHeaderError(
                f"--map {column}={target}: the file has no column {column!r} "
                f"(its columns: {', '.join(repr(n) for n in names if n)})"
            )
        if len(matches) > 1:
            listed = " and ".join(f"{i + 1} ({names[i]!r})" for i in matches)
            raise CsvHeaderError(
                f"--map {column}={target}: {column!r} matches columns {listed}; "
                "name the column exactly as the header does"
            )
        found[matches[0]] = target
    return found


def _name_problems(names: list[str]) -> list[str]:
    problems = []
    unnamed = [i + 1 for i, name in enumerate(names) if not name]
    if len(unnamed) == 1:
        problems.append(f"column {unnamed[0]} has no name")
    elif unnamed:
        problems.append(f"columns {_numbers(unnamed)} have no name")
    where: dict[str, list[int]] = {}
    for number, name in enumerate(names, 1):
        if name:
            where.setdefault(name, []).append(number)
    problems.extend(
        f'the header repeats "{name}" in columns {_numbers(numbers)}'
        for name, numbers in where.items()
        if len(numbers) > 1
    )
    if problems:
        problems[-1] += "; give every column its own name in the header row"
    return problems


def _refuse_shared_targets(columns: list[Column]) -> None:
    by_target: dict[str, list[Column]] = {}
    for column in columns:
        by_target.setdefault(column.target, []).append(column)
    problems = []
    hint = None
    for target, sharing in by_target.items():
        if len(sharing) < 2:
            continue
        listed = " and ".join(f'{c.number} ("{c.name}")' for c in sharing)
        problems.append(f"columns {listed} both fill {target}")
        if hint is None:
            # Suggest moving the column an alias (rather than the field's own name) put there.
            movable = [c for c in sharing if c.how != "--map"] or sharing
            other = next((c for c in reversed(movable) if c.how == "alias"), movable[-1])
            key = custom_key(other.name) or "other"
            if key == target.removeprefix("custom."):
                key += "_2"
            hint = (
                f"rename one, or send one elsewhere with --map, "
                f"e.g. --map '{other.name}=custom.{key}'"
            )
    if problems:
        raise CsvHeaderError("; ".join(problems) + f"; {hint}")


def _numbers(numbers: list[int]) -> str:
    if len(numbers) == 1:
        return str(numbers[0])
    return ", ".join(map(str, numbers[:-1])) + f" and {numbers[-1]}"


def is_blank_row(cells: Sequence[str]) -> bool:
    """True when every cell is empty or spaces: a spreadsheet's formatted empty row."""
    return all(not cell or cell.isspace() for cell in cells)


def row_shape_problem(cells: Sequence[str], mapping: ColumnMapping) -> str | None:
    """Why a row's cells do not fit the header, or None.

    A row may stop after the last named column or run to the header's full width, but the
    cells under unnamed columns must be blank.
    """
    count = len(cells)
    if count < mapping.named_width or count > mapping.width:
        return f"row has {count} fields, the header has {mapping.named_width}"
    for index in range(mapping.named_width, count):
        if cells[index] and not cells[index].isspace():
            return (
                f"column {index + 1} has no name in the header but holds {cells[index].strip()!r}"
                " in this row"
            )
    return None


def lead_data(cells: Sequence[str], mapping: ColumnMapping) -> dict[str, Any]:
    """The row as :func:`~lqs.domain.leads.parse_lead` reads it: cells trimmed, blank cells
    left out, consent words, website URLs and grouped numbers translated. The row must fit
    the header (:func:`row_shape_problem`)."""
    data: dict[str, Any] = {}
    custom: dict[str, str] = {}
    for column in mapping.columns:
        value = cells[column.index].strip()
        if not value:
            continue  # a blank cell is a value not given
        if column.target.startswith("custom."):
            custom[column.target.removeprefix("custom.")] = value
        else:
            data[column.target] = _translated(column.target, value)
    data["custom"] = custom
    return data


_GROUPED_NUMBER = re.compile(r"\d{1,3}(?:[,\s\u00a0\u202f']\d{3})+")
_URL_PREFIX = re.compile(r"^[a-z][a-z0-9+.-]*://", re.IGNORECASE)


def _translated(target: str, value: str) -> str:
    if target == "consent_status":
        status = CONSENT_WORDS.get(match_key(value))
        return status.value if status is not None else value
    if target == "company_domain":
        return website_domain(value)
    if target == "company_size" and _GROUPED_NUMBER.fullmatch(value):
        return re.sub(r"\D", "", value)
    return value


def website_domain(value: str) -> str:
    """A website as its domain: ``https://www.Acme.example/about`` is ``Acme.example``.

    The scheme, a leading ``www.``, and any port, path, query or fragment are dropped; a
    value that is already a domain is returned as it is.
    """
    host = _URL_PREFIX.sub("", value.strip())
    host = re.split(r"[/?#]", host, maxsplit=1)[0]
    host = host.split(":", 1)[0]
    if host.lower().startswith("www.") and host.count(".") >= 2:
        host = host[4:]
    return host or value


def rejection_reason(error: LeadValidationError) -> str:
    """Why a row's lead is invalid, in a spreadsheet's words: a consent cell's problem lists
    the words a cell may hold (:data:`CONSENT_WORDS`), not only the statuses."""
    return "; ".join(
        f"{e.field}: {_CONSENT_HINT if e.field == 'consent_status' else e.message}"
        for e in error.errors
    )
