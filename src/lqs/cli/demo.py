"""``lqs demo``: the seed's whole flow, end to end, on the local machine.

Migrates and verifies the database, creates two demo clients (one sending email through
Resend, one through SendGrid, both SMS through Twilio; the first also texts its staff and
posts them a signed webhook for each qualified lead), starts the provider simulator, the
API and the worker as child processes in one process group, posts a few hundred varied
leads over HTTP (invalid ones, duplicates, leads without consent, addresses the simulator
bounces or reports as complaints), waits until every lead is processed and every
communication has its final status from the simulator's signed delivery webhooks, then
prints what happened and stops everything. Exits 1 if the pipeline did not settle as
expected.

It ends by printing the dashboard's sign-in address and a demo user's credentials (an
admin of the first demo client, with a generated password shown once; a JWT secret is
generated for the run when ``LQS_JWT_SECRET`` is unset). With ``--keep`` everything keeps
running, so the dashboard can be used, until Ctrl-C (SIGINT) or SIGTERM stops it cleanly.
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import random
import secrets
import signal
import socket
import tempfile
import time
from collections.abc import Callable, Sequence
from contextlib import suppress
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Annotated, Any
from uuid import UUID

import httpx
import typer
from psycopg import AsyncConnection

from lqs.api.pages.layout import PAGES_PREFIX
from lqs.cli._common import console, database_url, fail, session_url, settings
from lqs.cli.db import fail_on_drift, print_seed_table
from lqs.cli.lead_views import breakdown_table
from lqs.cli.processes import ProcessGroup
from lqs.cli.simulate import client_callbacks, sendgrid_key_pair
from lqs.cli.stats import gather_report, report_tables
from lqs.cli.stats import table as _table
from lqs.db.clients import create_api_key, create_client, delete_clients, update_client_settings
from lqs.db.communications import communication_timeline
from lqs.db.connection import connect, connect_async
from lqs.db.erasure import erase
from lqs.db.migrate import migrate
from lqs.db.pool import open_pool
from lqs.db.reports import deferred_messages, leads_by_status, sample_delivered_lead, unsettled
from lqs.db.staff_notifications import staff_notification_counts
from lqs.db.users import add_user
from lqs.db.verify import VerifyReport, verify
from lqs.domain.clients import STAFF_PRIORITY
from lqs.domain.delivery import parse_delivery_settings
from lqs.domain.erasure import Subject
from lqs.domain.notifications import shipped_staff_template
from lqs.domain.passwords import generate_password, hash_password
from lqs.domain.send_rules import recipient_zone
from lqs.domain.vocabulary import Channel, LeadStatus

DEMO_SLUGS = ("demo-acme", "demo-globex")
BOUNCE_DOMAIN = "bounce.example"
COMPLAINT_DOMAIN = "complaints.example"
UNDELIVERED_PREFIX = "+1202555019"
STAFF_PHONE = "+14155550142"
DEMO_USER = "demo.admin@demo-acme.example"


@dataclass
class DemoClient:
    slug: str
    name: str
    email_provider: str
    staff_channels: tuple[Channel, ...] = (Channel.EMAIL,)
    """How its staff hear of a qualified lead (``lqs clients notify --via``)."""
    quiet_sms: bool = False
    """Its leads' SMS window is closed now: every SMS to a lead is deferred (quiet hours)."""
    id: UUID | None = None
    api_key: str = ""
    provider_key: str = ""


@dataclass(frozen=True)
class DemoUser:
    """Who signs in to the demo's dashboard: printed once, at the end."""

    email: str
    password: str


@dataclass
class Intake:
    created: int = 0
    duplicates: int = 0
    invalid: int = 0
    failed: list[str] = field(default_factory=list)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def _notifications(staff: Sequence[Channel]) -> dict[str, Any]:
    to_staff = [
        {"channel": channel.value, "to": "client", "priority": STAFF_PRIORITY,
         "template": shipped_staff_template(channel, "qualified")}
        for channel in staff
    ]  # fmt: skip
    return {
        "qualified": [
            *to_staff,
            {"channel": "email", "to": "lead", "template": "lead_acknowledgement", "priority": 3},
            {"channel": "sms", "to": "lead", "template": "lead_qualified_sms", "priority": 3},
        ],
        "nurture": [
            {"channel": "email", "to": "lead", "template": "lead_acknowledgement", "priority": 6}
        ],
        "disqualified": [],
    }


def _leads(count: int, rng: random.Random) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """``count`` varied valid leads (some repeated) and a handful of invalid submissions."""
    first = ["Ada", "Grace", "Alan", "Edsger", "Barbara", "Ken", "Margaret", "Linus", "Radia"]
    titles = ["CEO", "VP Sales", "Head of Operations", "Engineer", "Analyst", "Director of IT"]
    companies = ["initech", "umbrella", "hooli", "vandelay", "stark", "wayne", "tyrell"]
    leads = []
    for i in range(count):
        # The first few are fixed so that even a small demo shows every path: a bounce
        # (to the Resend client), a complaint (SendGrid), no consent, and a webmail lead
        # on the Resend client whose email's unsubscribe link the demo clicks.
        roll = {0: 0.0, 1: 0.07, 4: 0.2}.get(i, rng.random())
        # Lead 3 goes to the second client (SMS in quiet hours): a qualified lead with a
        # phone and consent, so that its SMS is deferred even in a small demo.
        fixed = i == 3
        company = rng.choice(companies)
        if roll < 0.06:
            domain = BOUNCE_DOMAIN
        elif roll < 0.09:
            domain = COMPLAINT_DOMAIN
        elif roll < 0.35:
            domain = "gmail.com"
        else:
            domain = f"{company}.example"
        lead: dict[str, Any] = {
            "email": f"{rng.choice(first).lower()}.{i}@{domain}",
            "first_name": rng.choice(first),
            "job_title": rng.choice(titles),
            "company_name": company.title(),
            "company_domain": f"{company}.example",
            "company_size": rng.choice([5, 40, 120, 800, 5000]),
            "source": rng.choice(["web_form", "webinar", "referral"]),
            "consent_status": "granted" if i != 2 and rng.random() < 0.85 else "unknown",
            "consent_source": "signup form",
        }
        if fixed:
            lead |= {"job_title": "CEO", "company_size": 800, "consent_status": "granted",
                     "phone": "+14155550003", "email": f"ceo.3@{company}.example"}  # fmt: skip
        elif rng.random() < 0.5:
            suffix = f"{i % 100:02d}"
            lead["phone"] = (
                f"{UNDELIVERED_PREFIX}{suffix[-1]}" if rng.random() < 0.1 else f"+1415555{i:04d}"
            )
        leads.append(lead)
    # Duplicates: the same people submitted again (the API merges them).
    leads += [dict(rng.choice(leads)) for _ in range(max(1, count // 20))]
    invalid: list[dict[str, Any]] = [
        {"email": "not-an-email", "first_name": "Broken"},
        {"first_name": "No contact at all"},
        {"email": "someone@example.com", "company_size": -3},
        {"email": "x@y.example", "consent_status": "maybe"},
        {"phone": "12", "first_name": "Short phone"},
    ]
    return leads, invalid


def closed_sms_window(now: datetime | None = None) -> dict[str, str]:
    """A one-hour SMS window six hours from ``now`` on the demo phones' clock (San
    Francisco's +1 415 numbers; Washington's +1 202 ones, three hours later, are outside it
    too): an SMS to a lead due now is deferred to its opening."""
    zone = recipient_zone(None, "+14155550100", None, "UTC")
    opening = (now or datetime.now(UTC)).astimezone(zone) + timedelta(hours=6)
    return {"start": f"{opening.hour:02d}:00", "end": f"{(opening.hour + 1) % 24:02d}:00"}


def local_run_settings(api_base: str) -> dict[str, str]:
    """The settings of a whole flow run on one machine against the simulator: the API's
    public URL, a fresh unsubscribe secret, private webhook addresses allowed, and short
    retries, polls, leases and timeouts so that everything settles in seconds."""
    return {
        "LQS_PUBLIC_BASE_URL": api_base,
        "LQS_UNSUBSCRIBE_SECRET": secrets.token_urlsafe(32),
        "LQS_ALLOW_PRIVATE_WEBHOOKS": "true",
        "LQS_DISPATCH_RETRY_BASE_DELAY": "0.2",
        "LQS_DISPATCH_RETRY_MAX_DELAY": "1",
        "LQS_WORKER_POLL_INTERVAL": "0.5",
        "LQS_DISPATCH_LEASE_SECONDS": "10",
        "LQS_DISPATCH_TIMEOUT": "5",
    }


async def setup_clients(
    conn: AsyncConnection, clients: Sequence[DemoClient], api_base: str, sim_base: str
) -> dict[str, Any]:
    """Create the demo clients afresh; return the simulator's configuration for them."""
    await delete_clients(conn, DEMO_SLUGS)
    sid = "AC" + secrets.token_hex(16)
    token = secrets.token_hex(16)
    sg_private, sg_public = sendgrid_key_pair()
    webhooks: list[dict[str, Any]] = []
    hooks: dict[str, Any] = {}
    for client in clients:
        found = await create_client(conn, client.name, client.slug, {})
        client.id = found.id
        _, client.api_key = await create_api_key(conn, found.id, "demo", 100_000)
        delivery: dict[str, Any] = {
            "email": {"primary": client.email_provider},
            "twilio": {
                "account_sid": sid,
                "auth_token": token,
                "from_number": "+14155550100",
                "status_callback_url": f"{api_base}/webhooks/twilio/{found.id}",
                "base_url": sim_base,
            },
        }
        if client.email_provider == "resend":
            client.provider_key = "re_demo_" + secrets.token_hex(8)
            secret = "whsec_" + base64.b64encode(secrets.token_bytes(24)).decode()
            delivery["resend"] = {
                "api_key": client.provider_key,
                "from_address": f"leads@{client.slug}.example",
                "base_url": sim_base,
                "webhook_secret": secret,
            }
        else:
            client.provider_key = "SG.demo." + secrets.token_hex(8)
            delivery["sendgrid"] = {
                "api_key": client.provider_key,
                "from_address": f"leads@{client.slug}.example",
                "base_url": sim_base,
                "webhook_public_key": sg_public,
            }
        if Channel.WEBHOOK in client.staff_channels:
            # The staff's own receiver: the simulator's sink checks each signature.
            secret = "whsec_" + base64.b64encode(secrets.token_bytes(24)).decode()
            delivery["webhook"] = {"url": f"{sim_base}/hooks/{client.slug}", "secret": secret}
            hooks[client.slug] = {"secret": secret}
        # Created with no settings: the patch is the whole of them.
        await update_client_settings(
            conn,
            found.id,
            {
                "notification_email": f"sales@{client.slug}.example",
                "notification_phone": STAFF_PHONE,
                "notifications": _notifications(client.staff_channels),
                "delivery": delivery,
                **({"send_window": {"sms": closed_sms_window()}} if client.quiet_sms else {}),
            },
        )
        # Wired as `lqs simulate --client` wires a client, from the settings just stored.
        callbacks = client_callbacks(
            found.id,
            parse_delivery_settings(delivery),
            api_base,
            sendgrid_private_key=sg_private,
        )
        webhooks += callbacks.webhooks
    return {
        "seed": 7,
        "resend": {
            "api_keys": [c.provider_key for c in clients if c.email_provider == "resend"],
            "faults": {"error_rates": {"500": 0.03}},
        },
        "sendgrid": {
            "api_keys": [c.provider_key for c in clients if c.email_provider == "sendgrid"]
        },
        "twilio": {"accounts": {sid: token}},
        "sink": {"hooks": hooks},
        "callbacks": {
            "email": {
                "rules": [
                    {"recipient": f"*@{BOUNCE_DOMAIN}", "outcome": "bounced"},
                    {"recipient": f"*@{COMPLAINT_DOMAIN}", "outcome": "complained"},
                ]
            },
            "sms": {"rules": [{"recipient": f"{UNDELIVERED_PREFIX}*", "outcome": "undelivered"}]},
            "delay_seconds": 0.05,
            "jitter_seconds": 0.2,
            "duplicates": 1,
            "webhooks": webhooks,
        },
    }


async def wait_ready(http: httpx.AsyncClient, url: str, procs: ProcessGroup, within: float) -> None:
    deadline = time.monotonic() + within
    while True:
        procs.check()
        try:
            if (await http.get(url)).status_code < 500:
                return
        except httpx.TransportError:
            pass
        if time.monotonic() > deadline:
            raise RuntimeError(f"{url} did not answer within {within:g} s")
        await asyncio.sleep(0.1)


async def _post_leads(
    http: httpx.AsyncClient,
    api_base: str,
    clients: Sequence[DemoClient],
    leads: Sequence[dict[str, Any]],
    invalid: Sequence[dict[str, Any]],
) -> Intake:
    intake = Intake()
    for index, client in enumerate(clients):
        headers = {"Authorization": f"Bearer {client.api_key}"}
        mine = list(leads[index :: len(clients)])
        singles, batched = mine[:20], mine[20:]
        for lead in singles:
            answer = await http.post(f"{api_base}/v1/leads", json=lead, headers=headers)
            if answer.status_code == 201:
                intake.created += 1
            elif answer.status_code == 200:
                intake.duplicates += 1
            else:
                intake.failed.append(f"{answer.status_code} {answer.text[:120]}")
        for start in range(0, len(batched), 50):
            chunk = batched[start : start + 50]
            answer = await http.post(
                f"{api_base}/v1/leads/batch", json={"leads": chunk}, headers=headers
            )
            if answer.status_code != 200:
                intake.failed.append(f"batch: {answer.status_code} {answer.text[:120]}")
                continue
            for item in answer.json()["leads"]:
                if item.get("duplicate"):
                    intake.duplicates += 1
                else:
                    intake.created += 1
        for bad in invalid:
            answer = await http.post(f"{api_base}/v1/leads", json=bad, headers=headers)
            if answer.status_code == 422:
                intake.invalid += 1
            else:
                intake.failed.append(f"invalid lead got {answer.status_code}, not 422")
    return intake


async def _unsubscribe_one(http: httpx.AsyncClient, sim_base: str) -> str | None:
    """Click one-click unsubscribe in one email to a lead, as a mail client does (RFC 8058:
    a POST of ``List-Unsubscribe=One-Click`` to the header's URL)."""
    answer = await http.get(f"{sim_base}/_sim/messages", params={"provider": "resend"})
    for message in answer.json().get("messages", []):
        link = (message.get("headers") or {}).get("List-Unsubscribe")
        recipients = message.get("recipients") or []
        if link and any(r.endswith("@gmail.com") for r in recipients):
            done = await http.post(
                link.strip("<>"),
                content=b"List-Unsubscribe=One-Click",
                headers={"Content-Type": "application/x-www-form-urlencoded"},
            )
            return f"{recipients[0]}: HTTP {done.status_code} {done.json().get('status')}"
    return None


async def _report(conn: AsyncConnection, client_ids: Sequence[UUID]) -> dict[str, int]:
    report = await gather_report(conn, client_ids)
    for found in report_tables(report):
        console().print(found)
    totals: dict[str, int] = {}
    for n in report.communications:
        totals[n.status] = totals.get(n.status, 0) + n.communications
    await _sample(conn, client_ids)
    return totals


async def _staff_report(
    conn: AsyncConnection, http: httpx.AsyncClient, sim_base: str, clients: Sequence[DemoClient]
) -> list[str]:
    """Print what the clients' staff were told, and what the simulator's webhook receiver
    got; return the problems: a qualified lead whose staff did not get a delivered message
    on each of the client's staff channels, or a webhook the simulator did not verify."""
    client_ids = [c.id for c in clients if c.id is not None]
    counts = await staff_notification_counts(conn, client_ids)
    console().print(
        _table(
            "Notifications to client staff (lqs clients notify)",
            ("client", "channel", "recipient", "messages", "delivered", "sent", "not sent"),
            [
                (n.client_slug, n.channel, n.recipient, n.messages, n.delivered, n.sent, n.not_sent)
                for n in counts
            ],
        )
    )
    hooks = (await http.get(f"{sim_base}/_sim/hooks")).json().get("deliveries", [])
    valid = sum(1 for hook in hooks if hook.get("signature_valid"))
    console().print(
        f"webhooks received by the simulator: {len(hooks)}, with a valid signature: {valid}"
        f" (GET {sim_base}/_sim/hooks)"
    )
    qualified = {
        n.client_slug: n.leads for n in await leads_by_status(conn, client_ids)
        if n.status == LeadStatus.QUALIFIED
    }  # fmt: skip
    problems = []
    for client in clients:
        for channel in client.staff_channels:
            delivered = sum(
                n.delivered for n in counts if (n.client_slug, n.channel) == (client.slug, channel)
            )
            if delivered != qualified.get(client.slug, 0):
                problems.append(
                    f"{client.slug}: {qualified.get(client.slug, 0)} qualified lead(s), but "
                    f"{delivered} {channel.value} message(s) delivered to its staff"
                )
    webhooks = sum(n.messages for n in counts if n.channel == Channel.WEBHOOK)
    if valid != len(hooks) or len(hooks) != webhooks:
        problems.append(
            f"{webhooks} webhook(s) to staff, but the simulator received {len(hooks)}"
            f" ({valid} with a valid signature)"
        )
    return problems


async def _deferral_report(conn: AsyncConnection, client_ids: Sequence[UUID]) -> list[str]:
    """Print the messages waiting for their send window (quiet hours); a problem when none
    is (the second client's SMS window is closed during the demo)."""
    deferred = await deferred_messages(conn, client_ids)
    for d in deferred:
        console().print(
            f"quiet hours: {d.messages} {d.channel} message(s) of {d.client_slug} deferred,"
            f" due from {d.due_from:%Y-%m-%d %H:%M %Z} ({d.reason})",
            markup=False,
        )
    if not any(d.channel == Channel.SMS for d in deferred):
        return ["no SMS was deferred for quiet hours"]
    return []


async def _erasure(url: str, conn: AsyncConnection, client_ids: Sequence[UUID]) -> list[str]:
    """Erase the sample lead as its person could ask (``lqs leads erase``) and print what
    became of its first email; a problem when it was not erased."""
    lead = await sample_delivered_lead(conn, client_ids)
    if lead is None:
        return ["no delivered lead to erase"]
    pool = await open_pool(url, min_size=1, max_size=2, name="lqs-demo-erase")
    try:
        erasure_id, tally = await erase(
            pool,
            lead.client_id,
            "operator:demo",
            "the data subject asked (demo)",
            subjects=[Subject(Channel.EMAIL, lead.email)],
        )
    finally:
        await pool.close()
    changed = ", ".join(f"{table} {n}" for table, n in sorted(tally.counts.items()) if n)
    console().print(
        f"\n[bold]Erasure[/bold] {erasure_id} of {lead.email} (lqs leads erase): {changed}",
        highlight=False,
    )
    found = await communication_timeline(conn, lead.communication_id)
    if found is not None:
        fields, _ = found
        console().print(
            f"its first email now: recipient {fields['recipient']!r}, content"
            f" {fields['content']!r}, status {fields['status']}, compliance notes"
            f" {fields['compliance_notes']!r}; the address stays suppressed by its keyed hash",
            markup=False,
        )
    if tally.counts["leads"] != 1:
        return [f"the erasure of {lead.email} erased {tally.counts['leads']} lead(s), not 1"]
    return []


async def _sample(conn: AsyncConnection, client_ids: Sequence[UUID]) -> None:
    lead = await sample_delivered_lead(conn, client_ids)
    if lead is None:
        return
    console().print(
        f"\n[bold]Sample lead[/bold] {lead.email}: {lead.status}, score {lead.score},"
        f" grade {lead.grade}"
    )
    console().print(breakdown_table(lead.score_breakdown))
    found = await communication_timeline(conn, lead.communication_id)
    if found is None:
        return
    fields, entries = found
    console().print(
        _table(
            f"Timeline of communication {lead.communication_id} ({fields['status']};"
            " lqs comms show ID)",
            ("time", "what", "detail"),
            [(f"{e.at:%H:%M:%S.%f}"[:-3], e.kind, e.summary) for e in entries],
        )
    )


async def add_demo_user(conn: AsyncConnection, client: DemoClient) -> DemoUser:
    """An admin of ``client`` (created afresh with it) who signs in with a generated
    password."""
    assert client.id is not None
    password = generate_password()
    password_hash = await asyncio.to_thread(hash_password, password)  # argon2id: 0.2 s of CPU
    await add_user(conn, client.id, DEMO_USER, password_hash, "admin")
    return DemoUser(DEMO_USER, password)


async def _serve_until_interrupted(procs: ProcessGroup) -> None:
    """Wait for SIGINT (Ctrl-C) or SIGTERM while the children run.

    Raises:
        RuntimeError: a child exited meanwhile.
    """
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    signals = (signal.SIGINT, signal.SIGTERM)
    for signum in signals:
        loop.add_signal_handler(signum, stop.set)
    try:
        while not stop.is_set():
            procs.check()
            with suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), timeout=1)
    finally:
        for signum in signals:
            loop.remove_signal_handler(signum)


def _print_sign_in(api_base: str, user: DemoUser, keep: bool) -> None:
    # typer.echo flushes: whoever waits for the address (a test, a script) sees it now.
    typer.echo(f"dashboard: {api_base}{PAGES_PREFIX}/login")
    typer.echo(f"sign in as {user.email} with password {user.password}")
    if keep:
        typer.echo("serving until Ctrl-C")
    else:
        typer.echo("(stopped: run `lqs demo --keep` to keep it serving)")


async def _run(
    url: str,
    lead_count: int,
    settle_within: float,
    logs: Path,
    *,
    keep: bool,
    conclude: Callable[[], None],
) -> list[str]:
    """The demo itself; returns the problems (empty when everything settled as expected).

    When it settled as expected, ``conclude()`` prints the summary, then the sign-in
    details; with ``keep`` everything keeps running until SIGINT or SIGTERM."""
    api_port, sim_port = _free_port(), _free_port()
    api_base, sim_base = f"http://127.0.0.1:{api_port}", f"http://127.0.0.1:{sim_port}"
    clients = [
        DemoClient(
            "demo-acme",
            "Acme Realty (demo)",
            "resend",
            (Channel.EMAIL, Channel.SMS, Channel.WEBHOOK),
        ),
        DemoClient("demo-globex", "Globex Solar (demo)", "sendgrid", quiet_sms=True),
    ]
    async with await connect_async(url, autocommit=True) as conn:
        sim_config = await setup_clients(conn, clients, api_base, sim_base)
        user = await add_demo_user(conn, clients[0])
    (logs / "simulator.json").write_text(json.dumps(sim_config))
    env = {**os.environ, "LQS_DATABASE_URL": url, **local_run_settings(api_base)}
    if not env.get("LQS_JWT_SECRET"):
        env["LQS_JWT_SECRET"] = secrets.token_urlsafe(32)  # the demo is local: signs its own
    procs = ProcessGroup(logs, env)
    problems: list[str] = []
    started = time.monotonic()
    try:
        procs.start(
            "simulator",
            "simulate",
            "--port",
            str(sim_port),
            "--config",
            str(logs / "simulator.json"),
        )
        procs.start("api", "serve", "--port", str(api_port))
        procs.start("worker", "worker")
        async with httpx.AsyncClient(timeout=10) as http:
            await wait_ready(http, f"{sim_base}/_sim/messages", procs, 30)
            await wait_ready(http, f"{api_base}/healthz", procs, 30)
            console().print(
                f"simulator {sim_base}, API {api_base}, worker running "
                f"(started in {time.monotonic() - started:.1f} s; logs in {logs})"
            )
            leads, invalid = _leads(lead_count, random.Random(7))  # noqa: S311 - demo data, not secrets
            posted = time.monotonic()
            intake = await _post_leads(http, api_base, clients, leads, invalid)
            console().print(
                f"posted {len(leads) + len(invalid) * len(clients)} submissions in "
                f"{time.monotonic() - posted:.1f} s: {intake.created} created, "
                f"{intake.duplicates} merged duplicates, {intake.invalid} refused with 422"
            )
            problems += intake.failed
            client_ids = [c.id for c in clients if c.id is not None]
            deadline = time.monotonic() + settle_within
            async with await connect_async(url, autocommit=True) as conn:
                left = await unsettled(conn, client_ids)
                unsubscribed = None
                while left.queued_leads or left.open_communications:
                    procs.check()
                    if time.monotonic() > deadline:
                        problems.append(
                            f"not settled after {settle_within:g} s: {left.queued_leads} lead(s)"
                            f" queued, {left.open_communications} communication(s) pending or sent"
                        )
                        break
                    await asyncio.sleep(0.25)
                    left = await unsettled(conn, client_ids)
                    if unsubscribed is None and not left.queued_leads:
                        unsubscribed = await _unsubscribe_one(http, sim_base)
                console().print(f"settled {time.monotonic() - posted:.1f} s after the first lead")
                if unsubscribed:
                    console().print(f"one-click unsubscribe from a delivered email: {unsubscribed}")
                totals = await _report(conn, client_ids)
                problems += await _staff_report(conn, http, sim_base, clients)
                problems += await _deferral_report(conn, client_ids)
                # The first client's: the second one's deferred SMS stay to be seen.
                problems += await _erasure(url, conn, client_ids[:1])
        for status in ("delivered", "bounced", "rejected"):
            if not totals.get(status):
                problems.append(f"no communication ended {status}")
        if unsubscribed is None:
            problems.append("no email carried a working List-Unsubscribe link")
        if intake.invalid != 5 * len(clients):
            problems.append(f"expected {5 * len(clients)} refused leads, got {intake.invalid}")
        if not problems:
            conclude()
            _print_sign_in(api_base, user, keep)
            if keep:
                await _serve_until_interrupted(procs)
    except (RuntimeError, httpx.HTTPError, OSError) as exc:
        problems.append(f"{type(exc).__name__}: {exc}")
    finally:
        killed = procs.stop()
        if killed:
            problems.append(f"had to SIGKILL: {', '.join(killed)}")
    return problems


def demo(
    leads: Annotated[int, typer.Option(min=10, max=5_000, help="Leads to post")] = 300,
    timeout: Annotated[
        float, typer.Option(min=5, help="Seconds to wait for the pipeline to settle")
    ] = 40.0,
    keep: Annotated[
        bool,
        typer.Option(
            "--keep", help="Keep the API, dashboard, worker and simulator running until Ctrl-C"
        ),
    ] = False,
) -> None:
    """Run the whole flow on the local database and simulator, then print what happened.

    Ends with the dashboard's address and a demo admin's sign-in (--keep: serve until Ctrl-C)."""
    started = time.monotonic()
    config = settings()
    with database_url(config) as url:
        with connect(session_url(config, url), connect_timeout=config.connect_timeout) as conn:
            for migration in migrate(conn):
                console().print(f"applied {migration.filename}")
        with connect(url, connect_timeout=config.connect_timeout) as conn:
            report: VerifyReport = verify(conn)
        fail_on_drift(report)
        if not report.seed_rows:
            fail("the seed's verification query returned no rows")
        logs = Path(tempfile.mkdtemp(prefix="lqs-demo-"))

        def conclude() -> None:
            print_seed_table(report)
            elapsed = time.monotonic() - started
            console().print(f"[green]Demo complete in {elapsed:.1f} s[/green]: everything settled.")

        problems = asyncio.run(_run(url, leads, timeout, logs, keep=keep, conclude=conclude))
    if problems:
        print_seed_table(report)
        for problem in problems:
            typer.echo(f"error: {problem}", err=True)
        typer.echo(f"error: the demo did not settle as expected (logs in {logs})", err=True)
        raise typer.Exit(code=1)
