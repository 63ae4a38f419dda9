"""A spreadsheet's columns as lead fields: names, aliases, header problems, cells."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from lqs.domain.csv_columns import (
    CONSENT_WORDS,
    FIELD_ALIASES,
    CsvHeaderError,
    custom_key,
    field_for,
    is_blank_row,
    lead_data,
    map_columns,
    match_key,
    parse_override,
    rejection_reason,
    row_shape_problem,
    website_domain,
)
from lqs.domain.leads import LEAD_FIELDS, LeadValidationError, parse_lead
from lqs.domain.vocabulary import ConsentStatus


@pytest.mark.parametrize(
    ("column", "field"),
    [
        ("email", "email"),
        ("E-mail", "email"),
        ("EMAIL ", "email"),
        ("Email Address", "email"),
        ("First Name", "first_name"),
        ("first_name", "first_name"),
        ("Given name", "first_name"),
        ("Surname", "last_name"),
        ("Company", "company_name"),
        ("Website", "company_domain"),
        ("Domain", "company_domain"),
        ("Employees", "company_size"),
        ("Company Size", "company_size"),
        ("Consent", "consent_status"),
        ("Lead Source", "source"),
        ("Title", "job_title"),
        ("Mobile", "phone"),
        ("Phone Number", "phone"),
        ("phone-number", "phone"),
        ("Country", "country"),
        ("UTM Campaign", "utm_campaign"),
        ("Opt-In", "consent_status"),
        ("Consent Date", "consent_at"),
    ],
)
def test_columns_are_matched_by_name_or_alias_ignoring_case_spaces_and_punctuation(
    column: str, field: str
) -> None:
    assert field_for(column) == field


@pytest.mark.parametrize("column", ["Name", "Opt Out", "Unsubscribed", "Budget", "Notes", ""])
def test_columns_that_name_no_field_fill_none(column: str) -> None:
    assert field_for(column) is None


def test_every_alias_names_a_lead_field_and_no_alias_is_claimed_twice() -> None:
    seen: dict[str, str] = {match_key(name): name for name in LEAD_FIELDS}
    for name, aliases in FIELD_ALIASES.items():
        assert name in LEAD_FIELDS
        for alias in aliases:
            key = match_key(alias)
            assert key not in seen or seen[key] == name, (alias, seen.get(key))
            seen[key] = name
            assert field_for(alias) == name


@given(st.text())
def test_match_key_is_insensitive_to_case_spaces_and_punctuation(name: str) -> None:
    assert match_key(name) == match_key(f" -{name.upper()}_. ")


def test_a_spreadsheet_header_maps_without_overrides() -> None:
    header = [
        "First Name", "Last Name", "E-mail", "Company", "Website", "Title", "Phone Number",
        "Consent", "Lead Source", "Employees", "Country", "Budget",
    ]  # fmt: skip

    mapping = map_columns(header)

    assert [c.target for c in mapping.columns] == [
        "first_name", "last_name", "email", "company_name", "company_domain", "job_title",
        "phone", "consent_status", "source", "company_size", "country", "custom.budget",
    ]  # fmt: skip
    assert [c.how for c in mapping.columns][:4] == ["name", "name", "name", "alias"]
    assert [c.name for c in mapping.to_custom] == ["Budget"]


@pytest.mark.parametrize(
    ("header", "message"),
    [
        (
            ["First", "Email", "Phone", "Notes", "Email"],
            'the header repeats "Email" in columns 2 and 5; give every column its own name',
        ),
        (["email", "a", "", "b"], "column 3 has no name; give every column"),
        (["email", "", "a", " ", "b"], "columns 2 and 4 have no name"),
        (
            ["Email", "x", "E-mail"],
            'columns 1 ("Email") and 3 ("E-mail") both fill email; rename one, or send one '
            "elsewhere with --map, e.g. --map 'E-mail=custom.e_mail'",
        ),
        (
            ["Phone", "Mobile", "email"],
            """columns 1 ("Phone") and 2 ("Mobile") both fill phone; rename one, or send one """
            "elsewhere with --map, e.g. --map 'Mobile=custom.mobile'",
        ),
        (
            ["email", "Lead Score", "lead-score"],
            'columns 2 ("Lead Score") and 3 ("lead-score") both fill custom.lead_score; '
            "rename one, or send one elsewhere with --map, "
            "e.g. --map 'lead-score=custom.lead_score_2'",
        ),
        (["Name", "Budget"], 'no column holds an email or a phone, and every lead needs one (the columns: "Name", "Budget")'),
        (["", " ", ""], "the header row names no columns"),
    ],
    ids=[
        "repeated", "one-unnamed", "two-unnamed", "two-for-email", "phone-and-mobile",
        "two-for-one-custom-key", "no-contact", "all-unnamed",
    ],
)  # fmt: skip
def test_headers_that_cannot_be_imported_are_refused_naming_the_columns(
    header: list[str], message: str
) -> None:
    with pytest.raises(CsvHeaderError) as raised:
        map_columns(header)
    assert message in str(raised.value)
    assert "\n" not in str(raised.value)


def test_every_problem_of_a_header_is_named_at_once() -> None:
    with pytest.raises(CsvHeaderError) as raised:
        map_columns(["email", "", "x", "x", "y", "y"])
    assert str(raised.value) == (
        'column 2 has no name; the header repeats "x" in columns 3 and 4; '
        'the header repeats "y" in columns 5 and 6; give every column its own name in the '
        "header row"
    )


def test_unnamed_columns_after_the_last_named_one_are_ignored() -> None:
    mapping = map_columns(["email", "name", "", " ", ""])

    assert [c.name for c in mapping.columns] == ["email", "name"]
    assert (mapping.named_width, mapping.width) == (2, 5)


def test_a_map_override_takes_its_field_and_the_column_it_displaces_goes_to_custom() -> None:
    mapping = map_columns(["Email", "E-mail", "Mobile"], [("E-mail", "email")])

    assert [(c.target, c.how) for c in mapping.columns] == [
        ("custom.email", "custom"),
        ("email", "--map"),
        ("phone", "alias"),
    ]


def test_a_map_override_names_its_column_exactly_or_as_names_are_compared() -> None:
    assert map_columns(["E-Mail", "x"], [("email", "email")]).columns[0].how == "--map"
    with pytest.raises(CsvHeaderError, match="the file has no column 'mail'"):
        map_columns(["E-Mail"], [("mail", "email")])
    with pytest.raises(CsvHeaderError, match="matches columns 1 \\('E-Mail'\\) and 2"):
        map_columns(["E-Mail", "e mail"], [("email", "email")])


def test_two_overrides_to_one_field_are_refused() -> None:
    with pytest.raises(CsvHeaderError, match="both fill email"):
        map_columns(["a", "b"], [("a", "email"), ("b", "email")])


@pytest.mark.parametrize(
    ("item", "expected"),
    [("E-mail=email", ("E-mail", "email")), (" Notes = custom.notes ", ("Notes", "custom.notes"))],
)
def test_map_options_are_parsed(item: str, expected: tuple[str, str]) -> None:
    assert parse_override(item) == expected


@pytest.mark.parametrize(
    ("item", "message"),
    [
        ("email", "expected COLUMN=FIELD"),
        ("=email", "expected COLUMN=FIELD"),
        ("mail=emial", "'emial' is not a lead field"),
        ("mail=custom.", "'custom.' is not a lead field"),
    ],
)
def test_bad_map_options_are_refused(item: str, message: str) -> None:
    with pytest.raises(CsvHeaderError, match=message):
        parse_override(item)


@pytest.mark.parametrize(
    ("cell", "status"),
    [
        ("yes", "granted"),
        ("Y", "granted"),
        ("TRUE", "granted"),
        ("1", "granted"),
        ("Opt-In", "granted"),
        ("opted in", "granted"),
        ("no", "denied"),
        ("N", "denied"),
        ("False", "denied"),
        ("0", "denied"),
        ("opt-out", "denied"),
        ("Withdrawn", "withdrawn"),
        ("unknown", "unknown"),
        (" granted ", "granted"),
    ],
)
def test_consent_words_become_consent_statuses(cell: str, status: str) -> None:
    mapping = map_columns(["email", "Consent"])

    lead = parse_lead(lead_data(["a@corp.example", cell], mapping))

    assert lead.consent_status == ConsentStatus(status)


def test_every_consent_status_is_a_consent_word() -> None:
    assert {s.value for s in ConsentStatus} <= set(CONSENT_WORDS)


def test_blank_cells_are_values_not_given_and_every_cell_is_trimmed() -> None:
    mapping = map_columns(["E-mail", "Consent", "Employees", "Country", "Notes", "Extra"])

    data = lead_data(["  a@corp.example ", "  ", "", " gb ", "  keep me  ", " "], mapping)

    assert data == {
        "email": "a@corp.example",
        "country": "gb",
        "custom": {"notes": "keep me"},
    }
    assert parse_lead(data).consent_status == ConsentStatus.UNKNOWN


def test_an_unknown_consent_word_is_rejected_naming_the_words_a_cell_may_hold() -> None:
    mapping = map_columns(["email", "Consent"])

    with pytest.raises(LeadValidationError) as raised:
        parse_lead(lead_data(["a@corp.example", "maybe"], mapping))

    assert rejection_reason(raised.value) == (
        "consent_status: expected yes/no, y/n, true/false, 1/0, opt-in/opt-out, "
        "or granted, denied, unknown, withdrawn"
    )


@pytest.mark.parametrize(
    ("cell", "size"), [("1,200", 1200), ("12 000", 12000), ("1'500", 1500), ("85", 85)]
)
def test_company_sizes_with_thousands_separators_are_numbers(cell: str, size: int) -> None:
    mapping = map_columns(["email", "Employees"])
    assert parse_lead(lead_data(["a@corp.example", cell], mapping)).company_size == size


@pytest.mark.parametrize(
    ("cell", "domain"),
    [
        ("https://www.Acme.example/about?x=1", "Acme.example"),
        ("http://acme.example:8080", "acme.example"),
        ("www.acme.example", "acme.example"),
        ("acme.example", "acme.example"),
        ("shop.acme.example/", "shop.acme.example"),
        ("www.example", "www.example"),
    ],
)
def test_a_website_becomes_its_domain(cell: str, domain: str) -> None:
    assert website_domain(cell) == domain


def test_custom_keys_keep_their_words() -> None:
    assert custom_key(" Lead Score ") == "lead_score"
    assert custom_key("Opt-Out") == "opt_out"


def test_rows_must_fit_the_header_and_leave_unnamed_columns_empty() -> None:
    mapping = map_columns(["email", "name", "", ""])

    assert row_shape_problem(["a", "b"], mapping) is None
    assert row_shape_problem(["a", "b", "", " "], mapping) is None
    assert row_shape_problem(["a"], mapping) == "row has 1 fields, the header has 2"
    assert row_shape_problem(["a", "b", "", "", ""], mapping) == (
        "row has 5 fields, the header has 2"
    )
    assert row_shape_problem(["a", "b", "", "x "], mapping) == (
        "column 4 has no name in the header but holds 'x' in this row"
    )


def test_rows_of_blank_cells_are_blank() -> None:
    assert is_blank_row(["", " ", "\t"])
    assert is_blank_row([])
    assert not is_blank_row(["", "x"])


def test_a_dotless_i_matches_its_capital() -> None:
    assert match_key("Fırst Name") == match_key("FIRST NAME") == match_key("first name")


def test_a_time_zone_column_fills_the_leads_time_zone() -> None:
    for header in ("Time Zone", "time_zone", "TZ", "IANA Time Zone"):
        mapping = map_columns(["Email", header])

        assert [c.target for c in mapping.columns] == ["email", "time_zone"]
        lead = parse_lead(lead_data(["ann@example.com", "Europe/Berlin"], mapping))
        assert lead.time_zone == "Europe/Berlin"
