"""Delivery webhooks over HTTP: ``POST /webhooks/{provider}/{client}`` of one ``lqs serve``
worker, from a load generator in its own process (bench/http_intake.py's).

- **Resend**: one signed ``email.delivered`` event per request (as Svix sends them), each
  for a different sent email, at fixed concurrency, against a bare Starlette endpoint that
  checks the same signature and, in one transaction, stores the event and marks the email
  delivered (bench/bare_webhooks.py).
- **SendGrid**: ``delivered`` events in batches of :data:`SENDGRID_BATCH` per request (as
  SendGrid posts them), ECDSA-signed, against an absolute goal.
- **The worker's applier**: LQS's receiver only stores the events; after each LQS run the
  worker's applier (:func:`lqs.worker.events.drain_events`, in this process, batches of
  :data:`lqs.db.events.APPLY_BATCH`) drains them, timed: events applied per second, from
  the SendGrid runs, against the same goal (ingestion is only as fast as what follows it).

Every event is signed before the clock starts, with the simulator's signing code (the
providers' own algorithms, byte for byte); each run starts from the same sent emails,
written with SQL, and must leave every one of them ``delivered``.
"""

from __future__ import annotations

import asyncio
import base64
import json
import secrets
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import psycopg
from psycopg.types.json import Jsonb

from bench import dispatch
from bench.common import Row, Section, Series, interleave
from bench.http_intake import (
    Load,
    Server,
    load_table,
    measure_load,
    print_loads,
    serving,
    uvicorn,
)
from lqs.db.events import APPLY_BATCH
from lqs.db.pool import open_pool
from lqs.simulator.signing import (
    new_sendgrid_key,
    sendgrid_public_key,
    sendgrid_signature,
    svix_signature,
)
from lqs.worker.events import drain_events

LQS = "LQS (lqs serve), Resend"
BARE = "bare Starlette+psycopg, Resend"
LQS_SENDGRID = "LQS (lqs serve), SendGrid batches"
APPLIER = "LQS worker's applier"

CONCURRENCY = 32
SENDGRID_BATCH = 1_000
"""Events per SendGrid request: what its Event Webhook posts at most."""
SENDGRID_CONCURRENCY = 4
"""SendGrid requests in flight."""
SENDGRID_GOAL = 5_000.0
"""events/s."""
WARM_UP = 500
"""Resend events sent to each server before the measured repeats."""

_SECRET = "whsec_" + base64.b64encode(b"bench-webhooks-secret-32-bytes!!").decode()
_SENDGRID_KEY = new_sendgrid_key()

# One qualified lead and one email the provider accepted (``sent``, its message id known)
# per event, as the dispatcher leaves them.
_SENT_EMAILS = """
INSERT INTO public.communications (lead_id, client_id, type, recipient, subject, content,
                                   template_id, consent_status, status, provider,
                                   external_id, sent_at)
SELECT l.id, l.client_id, 'email', 'sales@bench.example', 'New qualified lead',
       '<p>' || l.first_name || '</p>', 'lead_qualified', 'granted', 'sent', %(provider)s,
       %(prefix)s || l.id, now()
FROM public.leads AS l
RETURNING external_id
"""


def _client(url: str) -> str:
    delivery = {
        "email": {"primary": "resend", "secondary": "sendgrid"},
        "resend": {"api_key": "re_bench_fake", "from_address": "lqs@bench.example",
                   "webhook_secret": _SECRET},
        "sendgrid": {"api_key": "SG.bench_fake", "from_address": "lqs@bench.example",
                     "webhook_public_key": sendgrid_public_key(_SENDGRID_KEY)},
    }  # fmt: skip
    settings = {"notification_email": "sales@bench.example", "delivery": delivery}
    with psycopg.connect(url) as conn:
        row = conn.execute(
            "INSERT INTO public.clients (name, slug, settings)"
            " VALUES ('Bench webhooks', 'bench-webhooks', %s) RETURNING id",
            (Jsonb(settings),),
        ).fetchone()
    assert row is not None
    return str(row[0])


def _sent_emails(url: str, client: str, n: int, provider: str) -> list[str]:
    """``n`` sent emails through ``provider`` (and nothing else): their message ids."""
    prefix = "sg" if provider == "sendgrid" else "re-"
    with psycopg.connect(url) as conn:
        conn.execute("TRUNCATE public.leads, public.provider_events CASCADE")
        conn.execute(dispatch.QUEUE_LEADS, {"client": client, "n": n})
        found = conn.execute(_SENT_EMAILS, {"provider": provider, "prefix": prefix}).fetchall()
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("ANALYZE public.leads, public.communications, public.provider_events")
    return [row[0] for row in found]


def _iso_now() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _request(path: str, port: int, headers: dict[str, str], body: bytes) -> bytes:
    head = f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n" + "".join(
        f"{name}: {value}\r\n" for name, value in headers.items()
    )
    return f"{head}Content-Length: {len(body)}\r\n\r\n".encode() + body


def _resend_requests(client: str, port: int, external_ids: list[str]) -> list[bytes]:
    """One signed ``email.delivered`` per message, as Resend (Svix) sends them."""
    now, unix = _iso_now(), int(time.time())
    requests = []
    for external_id in external_ids:
        body = json.dumps(
            {
                "type": "email.delivered",
                "created_at": now,
                "data": {"created_at": now, "email_id": external_id,
                         "from": "lqs@bench.example", "to": ["sales@bench.example"],
                         "subject": "New qualified lead"},
            },
            separators=(",", ":"),
        ).encode()  # fmt: skip
        event_id = "msg_" + secrets.token_hex(13)
        headers = {
            "Content-Type": "application/json",
            "User-Agent": "Svix-Webhooks/1.0",
            "svix-id": event_id,
            "svix-timestamp": str(unix),
            "svix-signature": svix_signature(_SECRET, event_id, unix, body),
        }
        requests.append(_request(f"/webhooks/resend/{client}", port, headers, body))
    return requests


def _sendgrid_requests(client: str, port: int, external_ids: list[str]) -> list[bytes]:
    """``delivered`` events, :data:`SENDGRID_BATCH` per signed request, as SendGrid posts."""
    unix = int(time.time())
    requests = []
    for start in range(0, len(external_ids), SENDGRID_BATCH):
        events = [
            {
                "email": "sales@bench.example",
                "timestamp": unix,
                "smtp-id": f"<{x_message_id}@ismtpd-bench.sendgrid.net>",
                "event": "delivered",
                "category": ["lqs"],
                "sg_event_id": base64.urlsafe_b64encode(secrets.token_bytes(16)).decode(),
                "sg_message_id": f"{x_message_id}.filterdrecv-bench-1-0.0",
                "response": "250 OK",
            }
            for x_message_id in external_ids[start : start + SENDGRID_BATCH]
        ]
        body = json.dumps(events, separators=(",", ":")).encode()
        headers = {
            "Content-Type": "application/json",
            "User-Agent": "SendGrid Event API",
            "X-Twilio-Email-Event-Webhook-Timestamp": str(unix),
            "X-Twilio-Email-Event-Webhook-Signature": sendgrid_signature(_SENDGRID_KEY, unix, body),
        }
        requests.append(_request(f"/webhooks/sendgrid/{client}", port, headers, body))
    return requests


def apply_pending(url: str) -> tuple[int, float]:
    """Drain the pending events as the worker does: (events applied, seconds)."""

    async def drain() -> tuple[int, float]:
        pool = await open_pool(url, min_size=1, max_size=2, worker=True)
        try:
            started = time.perf_counter()
            done = await drain_events(pool)
            return done.applied, time.perf_counter() - started
        finally:
            await pool.close()

    return asyncio.run(drain())


def _check_delivered(url: str, n: int) -> None:
    with psycopg.connect(url) as conn:
        row = conn.execute(
            "SELECT count(*) FILTER (WHERE status = 'delivered'),"
            " (SELECT count(*) FROM public.provider_events WHERE applied_at IS NOT NULL)"
            " FROM public.communications"
        ).fetchone()
    if row != (n, n):
        raise RuntimeError(f"{n} events left (delivered, applied events) = {row}")


def run(url: str, *, events: int, sendgrid_events: int, repeats: int) -> Section:
    """Resend events/s, LQS against the bare endpoint; SendGrid batches' events/s."""
    client = _client(url)
    bare_env = {"BARE_WEBHOOKS_DATABASE_URL": url, "BARE_WEBHOOKS_SECRET": _SECRET}
    loads: dict[str, list[Load]] = {LQS: [], BARE: [], LQS_SENDGRID: []}
    applier = Series(APPLIER)

    def measure(
        name: str,
        server: Server,
        count: int,
        provider: str,
        encode: Callable[[str, int, list[str]], list[bytes]],
        concurrency: int,
    ) -> float:
        external_ids = _sent_emails(url, client, count, provider)
        requests = encode(client, server.port, external_ids)
        load = measure_load(url, server, requests, concurrency, status=200)
        if name != BARE:
            # LQS stored the events; the worker's applier applies them.
            applied, seconds = apply_pending(url)
            if name == LQS_SENDGRID:
                applier.values.append(applied / seconds)
                print(f"  {APPLIER}: {applied / seconds:,.0f} events/s", flush=True)
        _check_delivered(url, count)
        # Per event, not per request (a SendGrid request carries many).
        per = len(requests) / count
        load = Load(
            count,
            load.seconds,
            load.p50_ms,
            load.p99_ms,
            load.generator_cpu_ms * per,
            load.server_cpu_ms * per,
            None if load.postgres_cpu_ms is None else load.postgres_cpu_ms * per,
        )
        loads[name].append(load)
        return load.rate

    print(
        f"webhooks: {events:,} Resend events at concurrency {CONCURRENCY}, "
        f"{sendgrid_events:,} SendGrid events in batches of {SENDGRID_BATCH:,} at "
        f"concurrency {SENDGRID_CONCURRENCY}, {repeats} repeats"
    )
    with tempfile.TemporaryDirectory() as tmp:
        logs = Path(tmp)
        with (
            serving("LQS", [sys.executable, "-m", "lqs", "serve"],
                    {"LQS_DATABASE_URL": url}, logs / "lqs.log") as lqs,
            serving(BARE, uvicorn("bench.bare_webhooks:app"), bare_env,
                    logs / "bare.log") as bare,
        ):  # fmt: skip
            configs: dict[str, Callable[[], float]] = {
                LQS: lambda: measure(LQS, lqs, events, "resend", _resend_requests, CONCURRENCY),
                BARE: lambda: measure(
                    BARE, bare, events, "resend", _resend_requests, CONCURRENCY
                ),
                LQS_SENDGRID: lambda: measure(
                    LQS_SENDGRID, lqs, sendgrid_events, "sendgrid", _sendgrid_requests,
                    SENDGRID_CONCURRENCY,
                ),
            }  # fmt: skip
            # Warm-up, not counted: the pools grow to their size, the processes warm up.
            for name, server in ((LQS, lqs), (BARE, bare)):
                measure(name, server, min(events, WARM_UP), "resend", _resend_requests,
                        CONCURRENCY)  # fmt: skip
                loads[name].clear()
            series = interleave(repeats, configs)
    print_loads(loads, "event")
    series[APPLIER] = applier
    return _section(series, loads, events, sendgrid_events)


def _section(
    series: dict[str, Series], loads: dict[str, list[Load]], events: int, sendgrid_events: int
) -> Section:
    table = [
        f"Resend: {events:,} signed `email.delivered` events per repeat, one per request, "
        f"each for a different sent email, over {CONCURRENCY} keep-alive connections. "
        f"SendGrid: {sendgrid_events:,} signed `delivered` events per repeat, "
        f"{SENDGRID_BATCH:,} per request, {SENDGRID_CONCURRENCY} requests in flight. A load "
        "generator in its own process; one uvicorn worker per server. Latency is per "
        "request; each cell is the median of the repeats (min–max). LQS's receiver only "
        "stores the events (one statement per request); after each LQS run the worker's "
        f"applier drains them in batches of {APPLY_BATCH}, timed in the bench's process "
        f"(*{APPLIER}*, from the SendGrid runs: {sendgrid_events:,} pending events).",
        "",
        *load_table(series, loads, "events/s", "event"),
        "",
        f"*{BARE}* (bench/bare_webhooks.py) checks the Svix signature as LQS does (by hand: "
        "HMAC-SHA256, timestamp within 5 minutes) and in one transaction stores the "
        "`provider_events` row, matched to the email by its message id, and marks the "
        "email delivered (a pool of 5 connections, like `lqs serve`'s webhook pool). It "
        "leaves out FastAPI, looking up the client's secret, the storability checks, the "
        "advisory lock shared with the dispatcher and the transition rules; LQS's "
        "receiver leaves the matching and the update to the worker's applier (its own row).",
    ]
    rows = [
        Row(f"delivery webhooks: Resend, one event per request (concurrency {CONCURRENCY})",
            series[LQS], series[BARE], "events/s", 0.60),
        Row(f"delivery webhooks: SendGrid, {SENDGRID_BATCH:,} events per request "
            f"(concurrency {SENDGRID_CONCURRENCY})",
            series[LQS_SENDGRID], None, "events/s", SENDGRID_GOAL),
        Row(f"delivery events applied by the worker ({sendgrid_events:,} pending, "
            f"batches of {APPLY_BATCH})",
            series[APPLIER], None, "events/s", SENDGRID_GOAL),
    ]  # fmt: skip
    return Section("Delivery webhooks over HTTP", rows=rows, markdown=table)
