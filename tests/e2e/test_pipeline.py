"""The seed's flow end to end: leads over HTTP, ``lqs worker``, scored leads and outbox rows."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import psycopg
from psycopg.rows import dict_row

from tests.e2e.conftest import Server, lqs_env, run_lqs

RULES = """
thresholds: {qualified: 40, nurture: 15}
rules:
  - id: no-disposable
    field: email
    when: {email_domain_type: disposable}
    disqualify: true
    reason: Disposable address
  - id: corporate
    field: email
    when: {email_domain_type: corporate}
    points: 25
  - id: senior
    field: job_title
    when: {regex: "\\\\b(ceo|cto|vp|head|director)\\\\b"}
    points: 20
  - id: mid-size
    field: company_size
    when: {between: [50, 5000]}
    points: 10
"""


def _setup_client(url: str, slug: str, tmp_path: Path, *, rules: bool) -> str:
    created = run_lqs(
        url, "clients", "create", slug.title(), "--slug", slug,
        "--notification-email", f"sales@{slug}.example",
    )  # fmt: skip
    assert created.returncode == 0, created.stderr
    configured = run_lqs(url, "clients", "configure", slug, "--acknowledge-leads")
    assert configured.returncode == 0, configured.stderr
    if rules:
        rules_file = tmp_path / f"{slug}.yaml"
        rules_file.write_text(RULES)
        stored = run_lqs(url, "clients", "set-rules", slug, str(rules_file))
        assert stored.returncode == 0, stored.stderr
    key = run_lqs(url, "keys", "create", "--client", slug)
    assert key.returncode == 0, key.stderr
    return key.stdout.strip()


def _rows(url: str, sql: str, *params: Any) -> list[dict[str, Any]]:
    with psycopg.connect(url, row_factory=dict_row) as conn:
        return conn.execute(sql.encode(), params).fetchall()


def test_leads_posted_over_http_are_scored_and_their_communications_recorded(
    api_server: Server, pipeline_db: str, tmp_path: Path
) -> None:
    acme_key = _setup_client(pipeline_db, "acme", tmp_path, rules=True)
    globex_key = _setup_client(pipeline_db, "globex", tmp_path, rules=False)
    acme_leads = [
        {"email": "ceo@bigco.example", "first_name": "Ada", "last_name": "King",
         "job_title": "CEO", "company_size": 400, "consent_status": "granted"},
        {"email": "dev@bigco.example", "first_name": "Bob", "job_title": "Developer",
         "company_size": 10},
        {"email": "x@mailinator.com", "first_name": "Spam", "job_title": "CTO"},
        {"email": "vp@other.example", "first_name": "Cy", "job_title": "VP Sales",
         "company_size": 100, "consent_status": "denied"},
    ]  # fmt: skip
    with httpx.Client(base_url=api_server.base_url, timeout=10) as http:
        for lead in acme_leads:
            response = http.post(
                "/v1/leads", json=lead, headers={"Authorization": f"Bearer {acme_key}"}
            )
            assert response.status_code == 201, response.text
        batch = http.post(
            "/v1/leads/batch",
            json={"leads": [{"email": f"p{i}@globex-customer.example", "job_title": "Head of IT",
                             "company_size": 200, "phone": "+12015550123"} for i in range(20)]},
            headers={"Authorization": f"Bearer {globex_key}"},
        )  # fmt: skip
        assert batch.status_code == 200, batch.text

    # The processing half of `lqs worker --once`: these clients configured no provider, so
    # the dispatcher would fail their messages; sending is tests/e2e/test_sending.py's.
    worker = run_lqs(pipeline_db, "worker", "--once", "--only", "process")
    assert worker.returncode == 0, worker.stderr
    assert "processed 24 lead(s)" in worker.stdout

    leads = _rows(
        pipeline_db,
        "SELECT l.*, c.slug FROM public.leads l JOIN public.clients c ON c.id = l.client_id",
    )
    assert len(leads) == 24
    for lead in leads:
        assert lead["status"] in ("qualified", "nurture", "disqualified")
        assert lead["processed_at"] is not None
        assert lead["score"] == sum(entry["points"] for entry in lead["score_breakdown"])
    by_email = {lead["email"]: lead for lead in leads}
    assert by_email["ceo@bigco.example"]["status"] == "qualified"
    assert {e["rule_id"] for e in by_email["ceo@bigco.example"]["score_breakdown"]} == {
        "corporate", "senior", "mid-size",
    }  # fmt: skip
    assert by_email["x@mailinator.com"]["status"] == "disqualified"
    assert by_email["x@mailinator.com"]["score_breakdown"][0]["rule_id"] == "no-disposable"
    assert by_email["dev@bigco.example"]["status"] == "nurture"

    comms = _rows(
        pipeline_db,
        "SELECT m.*, l.email AS lead_email, q.communication_id AS queued"
        " FROM public.communications m JOIN public.leads l ON l.id = m.lead_id"
        " LEFT JOIN public.delivery_queue q ON q.communication_id = m.id",
    )
    qualified = [lead for lead in leads if lead["status"] == "qualified"]
    to_client = [c for c in comms if c["recipient"].startswith("sales@")]
    assert len(to_client) == len(qualified)
    for comm in to_client:
        assert comm["status"] == "pending"
        assert comm["type"] == "email"
        assert comm["subject"]
        assert comm["content"]
        assert comm["template_id"] == "lead_qualified@default"
        assert comm["queued"] is not None
        assert comm["priority"] == 2
    ada = next(c for c in to_client if c["lead_email"] == "ceo@bigco.example")
    assert "Ada" in ada["subject"]
    assert "King" in ada["content"]
    assert ada["template_variables"]["score"] == by_email["ceo@bigco.example"]["score"]

    acknowledgements = {c["lead_email"]: c for c in comms if c["recipient"] == c["lead_email"]}
    assert acknowledgements["ceo@bigco.example"]["status"] == "pending"
    assert acknowledgements["ceo@bigco.example"]["consent_status"] == "granted"
    denied = acknowledgements["vp@other.example"]
    assert denied["status"] == "rejected"
    assert denied["consent_status"] == "denied"
    assert "consent" in denied["compliance_notes"]
    assert denied["queued"] is None
    assert denied["content"] is None


def test_daemon_processes_a_lead_within_a_second_and_stops_on_sigterm(
    api_server: Server, pipeline_db: str, tmp_path: Path
) -> None:
    key = _setup_client(pipeline_db, "initech", tmp_path, rules=False)
    worker = subprocess.Popen(
        [sys.executable, "-m", "lqs", "worker", "--poll-interval", "30"],
        env=lqs_env(pipeline_db),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        # Wait until the worker listens, then queue a lead: only NOTIFY can wake it in time.
        deadline = time.monotonic() + 30
        while not _rows(
            pipeline_db,
            "SELECT 1 FROM pg_stat_activity"
            " WHERE query ILIKE 'LISTEN%%' AND datname = current_database()",
        ):
            assert worker.poll() is None, worker.communicate()
            assert time.monotonic() < deadline, "worker never started listening"
            time.sleep(0.05)
        response = httpx.post(
            f"{api_server.base_url}/v1/leads",
            json={"email": "fast@initech.example", "first_name": "Peter"},
            headers={"Authorization": f"Bearer {key}"},
        )
        assert response.status_code == 201
        lead_id = response.json()["id"]

        deadline = time.monotonic() + 10
        while True:
            [lead] = _rows(pipeline_db, "SELECT * FROM public.leads WHERE id = %s", lead_id)
            if lead["processed_at"] is not None or time.monotonic() > deadline:
                break
            time.sleep(0.02)
        assert lead["processed_at"] is not None
        assert (lead["processed_at"] - lead["received_at"]).total_seconds() < 1.0
    finally:
        worker.send_signal(signal.SIGTERM)
        out, err = worker.communicate(timeout=30)
    assert worker.returncode == 0, err
    assert "processed 1 lead(s)" in out
