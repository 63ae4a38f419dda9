"""``lqs leads import`` on spreadsheets as people export them: column names that are not
field names, blank cells, consent words, semicolons and tabs, broken headers, a dry run,
rejects files kept, and the summary of what the import did."""

from __future__ import annotations

import csv
import io
import random
import re
import shutil
from pathlib import Path

import psycopg
import pytest

from tests.e2e.conftest import run_lqs

EXAMPLE = Path(__file__).parents[2] / "docs" / "examples" / "leads.csv"


def _client(url: str) -> None:
    result = run_lqs(url, "clients", "create", "Acme Inc", "--slug", "acme")
    assert result.returncode == 0, result.stderr


def _rows(url: str, query: str) -> list[tuple[object, ...]]:
    with psycopg.connect(url) as conn:
        return [tuple(row) for row in conn.execute(query.encode()).fetchall()]


def _count(url: str, table: str) -> int:
    (row,) = _rows(url, f"SELECT count(*) FROM public.{table}")
    return int(str(row[0]))


def _summary(stdout: str) -> dict[str, int]:
    """The summary table's rows: label -> count."""
    found = re.findall(r"│ ([a-z][a-z ,]+?) +│ +([\d,]+) │", stdout)
    return {label: int(count.replace(",", "")) for label, count in found}


def _reasons(stdout: str) -> dict[str, int]:
    """The rejected-rows-by-reason table: first words of each reason -> rows."""
    table = stdout.partition("Rejected rows by reason")[2]
    found = re.findall(r"│ +([\d,]+) │ (.+?) +│ +\d+ │", table)
    return {reason: int(count.replace(",", "")) for count, reason in found}


def _read_rejects(path: Path, delimiter: str = ",") -> list[list[str]]:
    # UTF-8 with a byte-order mark, in the input's delimiter.
    with path.open(newline="", encoding="utf-8-sig") as handle:
        return list(csv.reader(handle, delimiter=delimiter))


def _write(path: Path, rows: list[list[str]], *, delimiter: str = ",", head: str = "") -> None:
    buffer = io.StringIO()
    csv.writer(buffer, delimiter=delimiter).writerows(rows)
    path.write_text(head + buffer.getvalue(), encoding="utf-8", newline="")


def _import(
    url: str, path: Path | str, *extra: str, cwd: Path | None = None
) -> tuple[int, str, str]:
    result = run_lqs(url, "leads", "import", str(path), "--client", "acme", *extra, cwd=cwd)
    assert "Traceback" not in result.stderr
    return result.returncode, result.stdout, result.stderr


def test_the_example_spreadsheet_imports_without_any_map(pipeline_db: str, tmp_path: Path) -> None:
    _client(pipeline_db)
    (tmp_path / "docs" / "examples").mkdir(parents=True)
    shutil.copy(EXAMPLE, tmp_path / "docs" / "examples" / "leads.csv")

    # As the README writes it, from the repository's root.
    code, out, err = _import(pipeline_db, "docs/examples/leads.csv", cwd=tmp_path)

    assert code == 0, err
    assert err == ""  # every column is a lead field: no warning
    assert _summary(out) == {
        "read": 20,
        "new leads": 17,
        "merged into existing leads": 1,
        "already imported": 0,
        "rejected": 2,
    }
    assert _count(pipeline_db, "leads") == 17
    assert _rows(
        pipeline_db,
        "SELECT first_name, company_name, company_domain, job_title, phone, consent_status,"
        " source, company_size, country FROM public.leads"
        " WHERE lower(email) = 'ann.lee@northwind.example'",
    ) == [
        (
            "Ann",
            "Northwind Traders",
            "northwind.example",
            "Chief Technology Officer",  # the second row merged into the first
            "+14155550132",
            "granted",  # a blank Consent cell keeps the consent given before
            "Website",
            1200,
            "US",
        )
    ]
    consent = dict(_rows(pipeline_db, "SELECT email, consent_status FROM public.leads"))
    assert consent["siobhan@brightpath.example"] == "unknown"  # blank Consent cell
    assert consent["marco.rossi@vialattea.example"] == "denied"  # no
    assert consent["diego@andes.example"] == "denied"  # opt-out
    assert consent["k.sato@fujimoto.example"] == "granted"  # 1
    rejects = _read_rejects(tmp_path / "docs" / "examples" / "leads.csv.rejects.csv")
    assert [row[0] for row in rejects[1:]] == ["17", "18"]
    assert "email" in rejects[1][1]
    assert "a lead needs an email or a phone" in rejects[2][1]

    again = _import(pipeline_db, "docs/examples/leads.csv", cwd=tmp_path)

    assert again[0] == 0, again[2]
    assert _summary(again[1])["already imported"] == 18
    assert _count(pipeline_db, "leads") == 17


def test_a_dry_run_shows_mapping_parsed_rows_and_rejects_and_stores_nothing(
    pipeline_db: str, tmp_path: Path
) -> None:
    _client(pipeline_db)
    source = tmp_path / "leads.csv"
    shutil.copy(EXAMPLE, source)

    result = run_lqs(
        pipeline_db, "leads", "import", str(source), "--client", "acme", "--dry-run",
        COLUMNS="200",
    )  # fmt: skip
    code, out, err = result.returncode, result.stdout, result.stderr

    assert code == 0, err
    mapping = out.partition("Columns")[2].partition("The first")[0]
    for column, field, by in [
        ("E-mail", "email", "its name"),
        ("Website", "company_domain", "alias"),
        ("Employees", "company_size", "alias"),
        ("Consent", "consent_status", "alias"),
        ("Phone Number", "phone", "alias"),
    ]:
        assert re.search(rf"│ {re.escape(column)} +│ {field} +│ {by} +│", mapping), column
    parsed = out.partition("The first 5 rows, parsed")[2]
    assert "line 2" in parsed
    assert "line 6" in parsed
    assert "line 7" not in parsed
    assert "northwind.examp" in parsed
    assert _summary(out) == {"read": 20, "would be imported": 18, "rejected": 2}
    assert sum(_reasons(out).values()) == 2
    assert "dry run: nothing was stored" in out
    assert _count(pipeline_db, "leads") == 0
    assert _count(pipeline_db, "lead_import_rows") == 0
    assert list(tmp_path.iterdir()) == [source]  # no rejects file


def test_a_dry_run_lists_the_columns_that_go_to_custom_and_counts_rejects_over_the_whole_file(
    pipeline_db: str, tmp_path: Path
) -> None:
    _client(pipeline_db)
    source = tmp_path / "leads.csv"
    rows = [[f"p{i}@corp.example", "maybe" if i % 400 == 7 else "yes", "10k"] for i in range(2000)]
    _write(source, [["Email", "Consent", "Budget"], *rows])

    code, out, err = _import(pipeline_db, source, "--dry-run")

    assert code == 0, err
    assert re.search(r"│ Budget +│ custom.budget +│ no lead field: custom +│", out)
    assert "custom.budget" in err  # the warning
    assert _reasons(out) == {"consent_status: expected yes/no, y/n, true/false, 1/0,": 5}
    assert "first line" in out
    assert _count(pipeline_db, "leads") == 0


def test_two_thousand_rows_with_blank_consent_cells_import_without_a_reject(
    pipeline_db: str, tmp_path: Path
) -> None:
    _client(pipeline_db)
    rng = random.Random(14)
    header = [
        "First Name", "Last Name", "E-mail", "Company", "Website", "Title", "Phone Number",
        "Consent", "Lead Source", "Employees", "Country",
    ]  # fmt: skip
    consents = ["Yes", "yes ", "No", "", "", " ", "Opt-in", "opt-out", "TRUE", "0", "Y"]
    rows = []
    for i in range(2000):
        rows.append(
            [
                rng.choice(["Ann", "Jürgen", "Siobhán", "Li", " Marco "]),
                rng.choice(["Lee", "Müller", "O'Connor", ""]),
                f"lead{i}@company{i % 97}.example",
                rng.choice(["Acme, Inc", "Beta GmbH", "", "Gamma Ltd"]),
                rng.choice(["https://www.acme.example/", "beta.example", ""]),
                rng.choice(["CTO", "VP Sales", "", "Analyst"]),
                rng.choice(["", "+44 20 7946 0958", "(415) 555-0132", " "]),
                consents[i % len(consents)],
                rng.choice(["Webinar", "Referral", ""]),
                rng.choice(["", "12", "1,200", " 85 "]),
                rng.choice(["US", "gb", "", "DE"]),
            ]
        )
    source = tmp_path / "export.csv"
    _write(source, [header, *rows])
    blank = sum(1 for i in range(2000) if not consents[i % len(consents)].strip())

    code, out, err = _import(pipeline_db, source)

    assert code == 0, err
    assert _summary(out)["rejected"] == 0
    assert _summary(out)["new leads"] == 2000
    assert not (tmp_path / "export.csv.rejects.csv").exists()
    by_status = dict(
        _rows(pipeline_db, "SELECT consent_status, count(*) FROM public.leads GROUP BY 1")
    )
    assert by_status["unknown"] == blank
    assert set(by_status) == {"granted", "denied", "unknown"}
    assert "rows/s" in out
    assert "ETA" in out


@pytest.mark.parametrize(
    ("kind", "content", "extra", "says"),
    [
        # Excel's CSV where the decimal separator is a comma; quoted cells hold commas.
        (
            "semicolon",
            'Name, first;E-Mail;Company\r\nAnn;ann@corp.example;"Acme, Inc, Berlin"\r\n'
            'Bo;not-an-email;"Beta; Co"\r\nCy;cy@corp.example;Gamma\r\n',
            [],
            "delimiter: semicolon (detected)",
        ),
        # Excel's "sep=" first line names the delimiter; line numbers still count it.
        (
            "sep-line",
            'sep=;\r\nName, first;E-Mail;Company\r\nAnn;ann@corp.example;"Acme, Inc, Berlin"\r\n'
            'Bo;not-an-email;"Beta; Co"\r\nCy;cy@corp.example;Gamma\r\n',
            [],
            "delimiter: semicolon (the file's sep= line)",
        ),
        (
            "tab",
            "Name, first\tE-Mail\tCompany\nAnn\tann@corp.example\tAcme, Inc, Berlin\n"
            "Bo\tnot-an-email\tBeta; Co\nCy\tcy@corp.example\tGamma\n",
            [],
            "delimiter: tab (detected)",
        ),
        (
            "pipe-forced",
            'Name, first|E-Mail|Company\nAnn|ann@corp.example|"Acme, Inc, Berlin"\n'
            "Bo|not-an-email|Beta; Co\nCy|cy@corp.example|Gamma\n",
            ["--delimiter", "|"],
            None,
        ),
        (
            "semicolon-forced",
            'Name, first;E-Mail;Company\nAnn;ann@corp.example;"Acme, Inc, Berlin"\n'
            'Bo;not-an-email;"Beta; Co"\nCy;cy@corp.example;Gamma\n',
            ["--delimiter", "semicolon"],
            None,
        ),
    ],
    ids=["semicolon", "sep-line", "tab", "pipe-forced", "semicolon-forced"],
)
def test_semicolon_tab_and_forced_delimiters(
    pipeline_db: str, tmp_path: Path, kind: str, content: str, extra: list[str], says: str | None
) -> None:
    _client(pipeline_db)
    source = tmp_path / "export.csv"
    source.write_bytes(content.encode("cp1252"))

    code, out, err = _import(pipeline_db, source, *extra)

    assert code == 0, err
    if says:
        assert says in out
    else:
        assert "delimiter:" not in out
    assert _rows(pipeline_db, "SELECT email, company_name FROM public.leads ORDER BY 1") == [
        ("ann@corp.example", "Acme, Inc, Berlin"),
        ("cy@corp.example", "Gamma"),
    ]
    assert 'warning: 1 column goes to custom fields, not lead fields: "Name, first"' in err
    delimiter = {"pipe-forced": "|", "tab": "\t"}.get(kind, ";")
    rejects = _read_rejects(tmp_path / "export.csv.rejects.csv", delimiter)
    line = 4 if kind == "sep-line" else 3
    assert rejects[1][0] == str(line)
    assert rejects[1][1].startswith("email: ")
    assert rejects[1][2:] == ["Bo", "not-an-email", "Beta; Co"]


@pytest.mark.parametrize("value", ["x", "::", "space"])
def test_a_bad_delimiter_option_is_refused(pipeline_db: str, tmp_path: Path, value: str) -> None:
    source = tmp_path / "leads.csv"
    source.write_text("email\na@corp.example\n")

    code, _, err = _import(pipeline_db, source, "--delimiter", value)

    assert code == 1
    assert err == f"error: --delimiter {value!r}: expected one of , ; | tab\n"


@pytest.mark.parametrize(
    ("header", "message"),
    [
        (
            "First Name,Email,Phone,Notes,Email",
            'the header repeats "Email" in columns 2 and 5; give every column its own name '
            "in the header row",
        ),
        ("First Name,Email,Phone,,Notes", "column 4 has no name"),
        (
            "Email,Company,E-mail",
            'columns 1 ("Email") and 3 ("E-mail") both fill email; rename one, or send one '
            "elsewhere with --map, e.g. --map 'E-mail=custom.e_mail'",
        ),
        ("Name,Company", "no column holds an email or a phone"),
    ],
    ids=["repeated", "unnamed", "two-for-one-field", "no-contact"],
)
def test_headers_that_cannot_be_imported_are_refused_with_column_numbers(
    pipeline_db: str, tmp_path: Path, header: str, message: str
) -> None:
    _client(pipeline_db)
    source = tmp_path / "leads.csv"
    source.write_text(f"{header}\nAnn,a@corp.example,,x,b@corp.example\n")

    for extra in ([], ["--dry-run"]):
        code, _, err = _import(pipeline_db, source, *extra)

        assert code == 1
        assert err.startswith(f"error: {source}: {message}")
        assert len(err.splitlines()) == 1
    assert _count(pipeline_db, "leads") == 0
    assert not list(tmp_path.glob("*.rejects*"))


def test_map_resolves_two_columns_for_one_field(pipeline_db: str, tmp_path: Path) -> None:
    _client(pipeline_db)
    source = tmp_path / "leads.csv"
    _write(source, [["Email", "E-mail"], ["old@corp.example", "new@corp.example"]])

    code, _, err = _import(pipeline_db, source, "--map", "E-mail=email")

    assert code == 0, err
    assert _rows(pipeline_db, "SELECT email, custom ->> 'email' FROM public.leads") == [
        ("new@corp.example", "old@corp.example")
    ]
    assert (
        'warning: 1 column goes to custom fields, not lead fields: "Email" -> custom.email' in err
    )


def test_unnamed_trailing_columns_are_ignored_unless_a_row_fills_one(
    pipeline_db: str, tmp_path: Path
) -> None:
    _client(pipeline_db)
    source = tmp_path / "leads.csv"
    _write(
        source,
        [
            ["Email", "Company", "", ""],
            ["a@corp.example", "Acme", "", ""],
            ["b@corp.example", "Beta"],  # a writer that trims empty cells
            ["c@corp.example", "Gamma", "", "stray"],
            [",", "", "", ""],  # not blank: a comma is a value
            ["", "", "", ""],  # a formatted empty row: skipped
        ],
    )

    code, out, err = _import(pipeline_db, source)

    assert code == 0, err
    assert _summary(out) == {
        "read": 5,
        "new leads": 2,
        "merged into existing leads": 0,
        "already imported": 0,
        "blank, skipped": 1,
        "rejected": 2,
    }
    reasons = {row[0]: row[1] for row in _read_rejects(tmp_path / "leads.csv.rejects.csv")[1:]}
    assert reasons["4"] == "column 4 has no name in the header but holds 'stray' in this row"


def test_an_earlier_rejects_file_is_kept_unless_overwrite_is_asked_for(
    pipeline_db: str, tmp_path: Path
) -> None:
    _client(pipeline_db)
    source = tmp_path / "leads.csv"
    earlier = tmp_path / "leads.csv.rejects.csv"

    _write(source, [["email"], ["one-not-an-email"]])
    first = _import(pipeline_db, source)
    _write(source, [["email"], ["two-not-an-email"]])
    second = _import(pipeline_db, source)
    third = _import(pipeline_db, source)

    assert [r[0] for r in (first, second, third)] == [1, 1, 1]  # every row rejected
    assert _read_rejects(earlier)[1][2] == "one-not-an-email"
    assert _read_rejects(tmp_path / "leads.csv.rejects-2.csv")[1][2] == "two-not-an-email"
    assert (tmp_path / "leads.csv.rejects-3.csv").exists()
    assert f"see {tmp_path / 'leads.csv.rejects-2.csv'}" in second[2]
    assert "rejected rows and reasons: " + str(tmp_path / "leads.csv.rejects-2.csv") in second[1]
    assert "leads.csv.rejects.csv, from an earlier import, is kept" in second[1]

    overwritten = _import(pipeline_db, source, "--overwrite-rejects")

    assert f"see {earlier}" in overwritten[2]
    assert _read_rejects(earlier)[1][2] == "two-not-an-email"
    assert len(list(tmp_path.glob("leads.csv.rejects*"))) == 3


def test_an_unwritable_rejects_file_stops_the_import_with_one_line(
    pipeline_db: str, tmp_path: Path
) -> None:
    _client(pipeline_db)
    source = tmp_path / "leads.csv"
    _write(source, [["email"], ["good@corp.example"], ["not-an-email"]])
    (tmp_path / "leads.csv.rejects.csv").mkdir()  # in the way, and not a file to overwrite

    code, _, err = _import(pipeline_db, source, "--overwrite-rejects")

    assert code == 1
    assert err.startswith(f"error: cannot write rejected rows to {tmp_path}/leads.csv.rejects.csv")
    assert err.rstrip().endswith("nothing was imported")
    assert len(err.splitlines()) == 1
    assert _count(pipeline_db, "leads") == 0


def test_the_summary_tells_new_merged_and_already_imported_rows_apart(
    pipeline_db: str, tmp_path: Path
) -> None:
    _client(pipeline_db)
    first = tmp_path / "first.csv"
    _write(first, [["Email", "Title"], ["a@corp.example", "CTO"], ["b@corp.example", "CEO"]])
    assert _import(pipeline_db, first)[0] == 0
    second = tmp_path / "second.csv"
    _write(
        second,
        [
            ["Email", "Title"],
            ["A@corp.example", "Chief Technology Officer"],  # merges into a@
            ["c@corp.example", "CFO"],  # new
            ["c@corp.example", "Finance"],  # merges into the row above
            ["b@corp.example", "CEO"],  # a row imported before
            ["bad", ""],
        ],
    )

    code, out, err = _import(pipeline_db, second)
    again = _import(pipeline_db, second)

    assert code == 0, err
    assert _summary(out) == {
        "read": 5,
        "new leads": 1,
        "merged into existing leads": 2,
        "already imported": 1,
        "rejected": 1,
    }
    assert _summary(again[1]) == {
        "read": 5,
        "new leads": 0,
        "merged into existing leads": 0,
        "already imported": 4,
        "rejected": 1,
    }
    assert _rows(pipeline_db, "SELECT email, job_title FROM public.leads ORDER BY 1") == [
        ("A@corp.example", "Chief Technology Officer"),  # the later address as written
        ("b@corp.example", "CEO"),
        ("c@corp.example", "Finance"),
    ]


def test_a_dry_run_of_a_file_whose_every_row_is_rejected_fails(
    pipeline_db: str, tmp_path: Path
) -> None:
    _client(pipeline_db)
    source = tmp_path / "leads.csv"
    _write(source, [["E-mail", "Consent"], ["a@corp.example", "perhaps"], ["not-an-email", ""]])

    code, out, err = _import(pipeline_db, source, "--dry-run")

    assert code == 1
    assert err == f"error: every row of {source} would be rejected\n"
    assert _summary(out) == {"read": 2, "would be imported": 0, "rejected": 2}
    assert list(tmp_path.iterdir()) == [source]


def test_a_map_option_naming_a_column_the_file_lacks_is_refused(
    pipeline_db: str, tmp_path: Path
) -> None:
    _client(pipeline_db)
    source = tmp_path / "leads.csv"
    _write(source, [["Email", "Notes"], ["a@corp.example", "x"]])

    code, _, err = _import(pipeline_db, source, "--map", "Mobile=phone")

    assert code == 1
    assert err == (
        f"error: {source}: --map Mobile=phone: the file has no column 'Mobile' "
        "(its columns: 'Email', 'Notes')\n"
    )
    assert _count(pipeline_db, "leads") == 0
