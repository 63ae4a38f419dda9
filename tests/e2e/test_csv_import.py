"""``lqs leads import``: streaming, rejects file, idempotent re-runs."""

from __future__ import annotations

import csv
from pathlib import Path

import psycopg

from tests.e2e.conftest import run_lqs


def _client(url: str, slug: str = "importer") -> None:
    result = run_lqs(url, "clients", "create", "Importer", "--slug", slug, "--region", "GB")
    assert result.returncode == 0, result.stderr


def _count(url: str, sql: str) -> int:
    with psycopg.connect(url) as conn:
        row = conn.execute(sql.encode()).fetchone()
    assert row is not None
    return int(row[0])


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
    rejects = list(csv.reader((tmp_path / "leads.csv.rejects.csv").open()))
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
