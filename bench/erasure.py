"""The erasure stage: 10,000 people erased in one call while a worker keeps sending.

A database of about a million communications: ``n_people`` people (a lead, three sent
emails with two delivery events each, and a consent history entry apiece) to erase, and
enough other leads, each with three sent emails and one pending, to bring the total near
``total``. ``lqs worker --only dispatch`` sends the pending ones to the simulator in a
process of its own, and its throughput (the queue's rows leaving per second) is measured
over a window before the erasure and over the erasure itself; then ``lqs leads erase
--from-file`` erases the people in one call (in a process of its own too). Reported: the
erasure's total time, its longest transaction (the longest any of its locks is held), and
the dispatch throughput during the erasure against the throughput before it.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psycopg
from psycopg.types.json import Jsonb

from bench.common import ROOT, Row, Section, Series
from bench.dispatch import _simulator, _with_latency
from lqs.domain.erasure import IDLE_RATIO
from lqs.simulator import SimulatorControl

WARM_UP = 3.0
"""Seconds the worker runs before its rate is measured."""

_PEOPLE = """
INSERT INTO public.leads (client_id, email, first_name, last_name, job_title, company_name,
                          consent_status, dedupe_key, status)
SELECT %(client)s, 'person' || i || '@home' || (i %% 97) || '.example', 'First' || i,
       'Last' || i, 'CEO', 'Company ' || (i %% 997), 'granted',
       'email:person' || i || '@home' || (i %% 97) || '.example', 'qualified'
FROM generate_series(1, %(n)s) AS i
"""
_OTHERS = """
INSERT INTO public.leads (client_id, email, first_name, job_title, company_name,
                          consent_status, dedupe_key, status)
SELECT %(client)s, 'lead' || i || '@company' || (i %% 997) || '.example', 'First' || i,
       'CEO', 'Company ' || (i %% 997), 'granted',
       'email:lead' || i || '@company' || (i %% 997) || '.example', 'qualified'
FROM generate_series(1, %(n)s) AS i
"""
# Three sent emails per lead, to the lead, with content.
_SENT = """
INSERT INTO public.communications (lead_id, client_id, type, recipient, subject, content,
                                   status, provider, external_id, template_id,
                                   consent_status, sent_at, created_at)
SELECT l.id, l.client_id, 'email', lower(l.email), 'Hello ' || l.first_name,
       '<p>Dear ' || l.first_name || ', thank you.</p>' || repeat('<p>More text.</p>', 10),
       'sent', 'resend', 're-' || l.id || '-' || k, 'lead_acknowledgement', 'granted',
       now() - make_interval(days => k), now() - make_interval(days => k)
FROM public.leads AS l, generate_series(1, 3) AS k
WHERE l.client_id = %(client)s AND l.email LIKE %(like)s
"""
_EVENTS = """
INSERT INTO public.provider_events (client_id, provider, event_id, communication_id,
                                    external_id, event_type, kind, recipient, payload)
SELECT c.client_id, 'resend', c.external_id || '-' || e, c.id, c.external_id,
       'email.delivered', 'delivered', c.recipient,
       jsonb_build_object('type', 'email.delivered', 'data', jsonb_build_object(
           'email_id', c.external_id, 'to', jsonb_build_array(c.recipient)))
FROM public.communications AS c, generate_series(1, 2) AS e
WHERE c.client_id = %(client)s AND c.recipient LIKE 'person%%'
"""
_CONSENT = """
INSERT INTO public.consent_history (client_id, lead_id, channel, recipient, consent_status,
                                    source, ip, user_agent)
SELECT l.client_id, l.id, 'email', lower(l.email), 'granted', 'signup form',
       '203.0.113.7', 'Mozilla/5.0'
FROM public.leads AS l WHERE l.client_id = %(client)s AND l.email LIKE 'person%%'
"""
# One pending email per other lead (to the client's sales address), queued.
_PENDING = """
WITH made AS (
    INSERT INTO public.communications (lead_id, client_id, type, recipient, subject, content,
                                       template_id, consent_status)
    SELECT l.id, l.client_id, 'email', 'sales@bench.example', 'New lead: ' || l.first_name,
           '<p>' || l.first_name || ' at ' || l.company_name || '</p>', 'lead_qualified',
           'granted'
    FROM public.leads AS l WHERE l.client_id = %(client)s AND l.email LIKE 'lead%%'
    RETURNING id, client_id
)
INSERT INTO public.delivery_queue (communication_id, client_id, priority)
SELECT id, client_id, 5 FROM made
"""


def _fill(url: str, simulator: str, n_people: int, total: int) -> int:
    """The client, its people and other leads; the number of communications."""
    others = max(0, (total - 3 * n_people) // 4)
    delivery = {
        "email": {"primary": "resend"},
        "resend": {"api_key": "re_bench_fake", "from_address": "lqs@bench.example",
                   "base_url": simulator},
    }  # fmt: skip
    settings = {"notification_email": "sales@bench.example", "delivery": delivery}
    with psycopg.connect(url) as conn:
        row = conn.execute(
            "INSERT INTO public.clients (name, slug, settings) VALUES ('Bench', 'bench', %s)"
            " RETURNING id",
            (Jsonb(settings),),
        ).fetchone()
        assert row is not None
        client = {"client": row[0]}
        conn.execute(_PEOPLE, {**client, "n": n_people})
        conn.execute(_OTHERS, {**client, "n": others})
        conn.execute(_SENT, {**client, "like": "%"})
        conn.execute(_EVENTS, client)
        conn.execute(_CONSENT, client)
        conn.execute(_PENDING, client)
        counted = conn.execute("SELECT count(*) FROM public.communications").fetchone()
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("VACUUM ANALYZE")
    assert counted is not None
    return int(counted[0])


def _queued(url: str) -> int:
    with psycopg.connect(url) as conn:
        row = conn.execute("SELECT count(*) FROM public.delivery_queue").fetchone()
    assert row is not None
    return int(row[0])


def _env(url: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("LQS_")}
    env["LQS_DATABASE_URL"] = url
    env["COLUMNS"] = "300"  # one line per count: the summary is parsed below
    return env


def run(url: str, *, n_people: int, total: int, window: float = 10.0) -> Section:
    """Erase ``n_people`` among ``total`` communications while a worker sends; its rate
    ``window`` seconds before the erasure is the baseline."""
    with _simulator() as simulator, SimulatorControl(simulator) as control:
        control.configure(_with_latency(0.0))
        control.reset()
        print(f"erasure: filling {total:,} communications, {n_people:,} people", flush=True)
        began = time.monotonic()
        comms = _fill(url, simulator, n_people, total)
        print(f"  {comms:,} communications in {time.monotonic() - began:.0f} s", flush=True)
        with tempfile.TemporaryDirectory() as tmp:
            people = Path(tmp) / "people.txt"
            people.write_text(
                "".join(f"person{i}@home{i % 97}.example\n" for i in range(1, n_people + 1))
            )
            worker = subprocess.Popen(
                [sys.executable, "-m", "lqs", "worker", "--only", "dispatch"],
                env=_env(url), cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            )  # fmt: skip
            try:
                time.sleep(WARM_UP)
                q0, t0 = _queued(url), time.monotonic()
                time.sleep(window)
                q1, t1 = _queued(url), time.monotonic()
                erased = subprocess.run(
                    [sys.executable, "-m", "lqs", "leads", "erase", "--client", "bench",
                     "--from-file", str(people), "--reason", "bench: erasure requests"],
                    env=_env(url), cwd=ROOT, capture_output=True, text=True, check=True,
                )  # fmt: skip
                q2, t2 = _queued(url), time.monotonic()
            finally:
                worker.send_signal(signal.SIGTERM)
                worker.wait(timeout=60)
    before = (q0 - q1) / (t1 - t0)
    during = (q1 - q2) / (t2 - t1)
    seconds = t2 - t1
    found = re.search(
        r"(\d[\d,]*) lead\(s\) erased \(longest transaction (\d+) ms\)", erased.stdout
    )
    assert found is not None, erased.stdout
    leads, longest = int(found.group(1).replace(",", "")), int(found.group(2))
    assert leads == n_people, erased.stdout
    dry = " (the queue ran dry during the erasure: a lower bound)" if q2 == 0 else ""
    print(erased.stdout, f"before {before:,.0f}/s, during {during:,.0f}/s{dry}", flush=True)
    rows = [
        Row(
            f"dispatch during an erasure of {n_people:,} people ({comms:,} communications)",
            Series("during", [during]),
            Series("before the erasure", [before]),
            "comms/s",
            0.80,
        )
    ]
    return Section(
        "Erasure",
        rows,
        [
            f"`lqs leads erase --from-file` of {n_people:,} people (a lead, 3 sent emails, 6"
            f" delivery events and a consent entry each) on a database of {comms:,}"
            f" communications, in batches of 200 people each followed by a pause of"
            f" {IDLE_RATIO:g} times its duration: **{seconds:.1f} s** in all"
            f" ({n_people / seconds:,.0f} people/s), longest transaction **{longest} ms**."
            f" A worker dispatching"
            f" meanwhile sent {during:,.0f} comms/s against {before:,.0f} comms/s in the"
            f" {window:.0f} s before ({during / before:.0%}){dry}.",
            "",
            "```",
            erased.stdout.strip(),
            "```",
        ],
    )
