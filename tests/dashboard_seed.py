"""A client with a signed-in user, leads and communications, for the dashboard's tests
(in process and in the browser) and its screenshots."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from uuid import UUID

import psycopg

from lqs.db.clients import create_client
from lqs.db.communications import NewCommunication, record_communications
from lqs.db.leads import LeadOutcome, insert_or_merge_leads, record_lead_outcomes
from lqs.db.users import add_user
from lqs.domain.leads import parse_lead
from lqs.domain.passwords import hash_password
from lqs.domain.vocabulary import LeadStatus

PASSWORD = "a-long-enough-fake-password"
"""Every seeded user's password."""

TRACKER = "https://tracker.example/pixel.png"
EMAIL_CONTENT = (
    "<h1>New qualified lead</h1><p>Ann Lee from Corp scored 80 (A).</p>"
    '<script>parent.document.title = "scripted"</script>'
    f'<img id="remote" alt="tracker" src="{TRACKER}">'
)
"""A stored HTML email with a script and a remote image, neither of which may run or load."""

_BREAKDOWN = [
    {
        "rule_id": "work_email",
        "field": "email",
        "value": "x",
        "points": 50,
        "reason": "a company's own address",
    },
    {
        "rule_id": "senior_title",
        "field": "job_title",
        "value": "CTO",
        "points": 30,
        "reason": "a decision maker",
    },
]

_LEADS = (
    # first name, last name, company, status, score, grade
    ("Ann", "Lee", "Corp", LeadStatus.QUALIFIED, 80, "A"),
    ("Bob", "Stone", "Rocks", LeadStatus.NURTURE, 45, "C"),
    ("Cy", "Young", "Pitch", LeadStatus.DISQUALIFIED, 10, "D"),
    ("Dee", "Park", "Green", LeadStatus.QUALIFIED, 70, "B"),
    ("Eve", "Moss", "Stone Age", None, None, None),
)


@dataclass(frozen=True)
class SeededClient:
    client_id: UUID
    slug: str
    email: str
    """The user's email; their password is :data:`PASSWORD`."""
    user_id: UUID
    leads: list[UUID]
    """In :data:`_LEADS`'s order (Ann first)."""
    email_communication: UUID
    """Ann's HTML email (delivered, one attempt, one provider event)."""
    sms_communication: UUID
    """Dee's text message (failed)."""


async def seed_client(
    conn: psycopg.AsyncConnection, name: str, *, leads: bool = True
) -> SeededClient:
    """A client named ``name`` with one member; with ``leads``, five leads (four scored,
    one queued) received in the last hour, and two communications."""
    slug = f"{name.lower()}-{uuid.uuid4().hex[:8]}"
    client = await create_client(conn, name, slug, {})
    email = f"member@{slug}.example"
    account = await add_user(conn, client.id, email, hash_password(PASSWORD), "member")
    if not leads:
        return SeededClient(client.id, slug, email, account.id, [], uuid.uuid4(), uuid.uuid4())
    submitted = [
        parse_lead(
            {
                "email": f"{first.lower()}@{company.lower().replace(' ', '')}.example",
                "first_name": first,
                "last_name": last,
                "company_name": company,
                "job_title": "CTO",
                "source": "website",
            }
        )
        for first, last, company, *_ in _LEADS
    ]
    stored = await insert_or_merge_leads(conn, client.id, submitted)
    ids = [lead.id for lead in stored]
    now = datetime.now(UTC)
    # A minute apart, or closer just after midnight: today (UTC) holds every one of them,
    # as the overview's figures for today expect.
    midnight = now.replace(hour=0, minute=0, second=0, microsecond=0)
    step = min(timedelta(minutes=1), (now - midnight) / (len(ids) + 1))
    for i, lead_id in enumerate(ids):  # Ann newest
        await conn.execute(
            "UPDATE public.leads SET received_at = %s WHERE id = %s",
            (now - step * (i + 1), lead_id),
        )
    await record_lead_outcomes(
        conn,
        [
            LeadOutcome(lead_id, status, score, grade, _BREAKDOWN if status else None, None)
            for lead_id, (_, _, _, status, score, grade) in zip(ids, _LEADS, strict=True)
            if status is not None
        ],
    )
    ann, dee = ids[0], ids[3]
    await record_communications(
        conn,
        [
            NewCommunication(
                lead_id=ann,
                client_id=client.id,
                type="email",
                recipient=f"sales@{slug}.example",
                subject="New qualified lead: Ann Lee",
                content=EMAIL_CONTENT,
                status="pending",
                template_id="lead_qualified@v2",
                template_variables={},
                priority=5,
                campaign_id=None,
                consent_status="granted",
                compliance_notes=None,
                error_message=None,
            ),
            NewCommunication(
                lead_id=dee,
                client_id=client.id,
                type="sms",
                recipient="+12015550123",
                subject=None,
                content="New lead: Dee Park (B)",
                status="pending",
                template_id="lead_sms@default",
                template_variables={},
                priority=5,
                campaign_id=None,
                consent_status="granted",
                compliance_notes=None,
                error_message=None,
            ),
        ],
    )
    cur = await conn.execute(
        "UPDATE public.communications SET status = 'delivered', provider = 'resend',"
        " external_id = 'msg_1', sent_at = now(), delivered_at = now(), created_at = %s"
        " WHERE lead_id = %s RETURNING id",
        (now - step, ann),
    )
    [(mail,)] = await cur.fetchall()
    cur = await conn.execute(
        "UPDATE public.communications SET status = 'failed', provider = 'twilio',"
        " error_message = 'number unreachable' WHERE lead_id = %s RETURNING id",
        (dee,),
    )
    [(sms,)] = await cur.fetchall()
    await conn.execute(
        "DELETE FROM public.delivery_queue WHERE communication_id IN (%s, %s)", (mail, sms)
    )
    await conn.execute(
        "INSERT INTO public.delivery_attempts (communication_id, client_id, attempt, provider,"
        " started_at, finished_at, http_status, latency_ms, outcome, recorded)"
        " VALUES (%s, %s, 1, 'resend', now(), now(), 200, 98.5, 'accepted', true),"
        " (%s, %s, 1, 'twilio', now(), now(), 400, 120.0, 'permanent', true)",
        (mail, client.id, sms, client.id),
    )
    await conn.execute(
        "INSERT INTO public.provider_events (client_id, provider, event_id, communication_id,"
        " external_id, event_type, kind, occurred_at, payload, applied_at, effect)"
        " VALUES (%s, 'resend', 'evt_1', %s, 'msg_1', 'email.delivered', 'delivered', now(),"
        " '{}', now(), 'delivered')",
        (client.id, mail),
    )
    return SeededClient(client.id, slug, email, account.id, ids, mail, sms)
