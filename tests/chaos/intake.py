"""Leads for the run, and posting them over HTTP as a careful client does.

Every lead is unique (its own email address and, when it has one, its own phone number), so
each message the simulator accepts can be traced to exactly one communication. Some
addresses and numbers are ones the simulator bounces, reports as complaints or leaves
undelivered, so every final status is exercised.

A careful client sends every request with an ``Idempotency-Key`` and retries on a 5xx, a
429 or a broken connection with the same key and body: the API replays the first answer if
the request had in fact been stored. Every attempt's answer is counted; a lead counts as
accepted only when a 2xx answer named it.
"""

from __future__ import annotations

import asyncio
import random
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import httpx

from lqs.cli.demo import BOUNCE_DOMAIN, COMPLAINT_DOMAIN

SMS_PREFIX = "+1650"
UNDELIVERED_SMS_PREFIX = "+1628"
"""Numbers the simulator reports as undelivered (a rule the harness adds). Neither prefix
can meet the demo's sender number (+14155550100): Twilio refuses To = From."""

MAX_TRIES = 5


def make_leads(count: int, rng: random.Random) -> list[dict[str, Any]]:
    """``count`` valid, pairwise distinct leads (no two share an email or phone number)."""
    first = ["Ada", "Grace", "Alan", "Edsger", "Barbara", "Ken", "Margaret", "Linus", "Radia"]
    titles = ["CEO", "VP Sales", "Head of Operations", "Engineer", "Analyst", "Director of IT"]
    companies = ["initech", "umbrella", "hooli", "vandelay", "stark", "wayne", "tyrell"]
    leads = []
    for i in range(count):
        roll = rng.random()
        company = rng.choice(companies)
        if roll < 0.05:
            domain = BOUNCE_DOMAIN
        elif roll < 0.08:
            domain = COMPLAINT_DOMAIN
        elif roll < 0.3:
            domain = "gmail.com"
        else:
            domain = f"{company}.example"
        name = rng.choice(first)
        lead: dict[str, Any] = {
            "email": f"{name.lower()}.chaos{i}@{domain}",
            "first_name": name,
            "job_title": rng.choice(titles),
            "company_name": company.title(),
            "company_domain": f"{company}.example",
            "company_size": rng.choice([5, 40, 120, 800, 5000]),
            "source": rng.choice(["web_form", "webinar", "referral"]),
            "consent_status": "granted" if rng.random() < 0.85 else "unknown",
            "consent_source": "signup form",
        }
        if rng.random() < 0.6:
            prefix = UNDELIVERED_SMS_PREFIX if rng.random() < 0.05 else SMS_PREFIX
            lead["phone"] = f"{prefix}{2_000_000 + i:07d}"
        leads.append(lead)
    return leads


@dataclass
class IntakeTally:
    """Every attempt's answer, and the leads the API said it stored."""

    leads_posted: int = 0
    requests: int = 0
    attempts: int = 0
    answers_2xx: int = 0
    answers_5xx: int = 0
    answers_429: int = 0
    answers_other_4xx: int = 0
    transport_errors: int = 0
    replayed: int = 0
    requests_given_up: int = 0
    leads_given_up: int = 0
    accepted_ids: set[str] = field(default_factory=set)
    unexpected: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class IntakeRequest:
    """One HTTP request: a single lead (``POST /v1/leads``) or a batch."""

    api_key: str
    leads: Sequence[dict[str, Any]]
    single: bool


def plan_requests(
    leads: Sequence[dict[str, Any]], api_keys: Sequence[str], rng: random.Random
) -> list[IntakeRequest]:
    """Leads alternate between the clients; a quarter go one by one, the rest in batches."""
    requests: list[IntakeRequest] = []
    for index, key in enumerate(api_keys):
        mine = list(leads[index :: len(api_keys)])
        while mine:
            if rng.random() < 0.25:
                requests.append(IntakeRequest(key, [mine.pop(0)], single=True))
            else:
                size = rng.randint(5, 25)
                requests.append(IntakeRequest(key, mine[:size], single=False))
                del mine[:size]
    rng.shuffle(requests)
    return requests


async def _post_once(
    http: httpx.AsyncClient, api_base: str, request: IntakeRequest, key: str, tally: IntakeTally
) -> bool | None:
    """One attempt: True when stored, False when refused for good, None to try again."""
    headers = {"Authorization": f"Bearer {request.api_key}", "Idempotency-Key": key}
    if request.single:
        url, body = f"{api_base}/v1/leads", dict(request.leads[0])
    else:
        url, body = f"{api_base}/v1/leads/batch", {"leads": list(request.leads)}
    tally.attempts += 1
    try:
        answer = await http.post(url, json=body, headers=headers)
    except httpx.TransportError:
        tally.transport_errors += 1
        return None
    status = answer.status_code
    if 200 <= status < 300:
        tally.answers_2xx += 1
        tally.replayed += answer.headers.get("idempotent-replayed") == "true"
        payload = answer.json()
        stored = [payload] if request.single else payload.get("leads", [])
        tally.accepted_ids.update(str(item["id"]) for item in stored)
        return True
    if status >= 500:
        tally.answers_5xx += 1
        return None
    if status == 429:
        tally.answers_429 += 1
        return None
    tally.answers_other_4xx += 1
    tally.unexpected.append(f"{status} {answer.text[:160]}")
    return False


async def post_all(
    api_base: str,
    requests: Sequence[IntakeRequest],
    spread_over: float,
    concurrency: int,
    tally: IntakeTally,
) -> None:
    """Post ``requests`` evenly over ``spread_over`` seconds from ``concurrency`` clients,
    each request tried up to ``MAX_TRIES`` times with one Idempotency-Key."""
    began = time.monotonic()
    interval = spread_over / max(1, len(requests))
    queue: asyncio.Queue[tuple[int, IntakeRequest]] = asyncio.Queue()
    for index, request in enumerate(requests):
        queue.put_nowait((index, request))

    async def client(http: httpx.AsyncClient) -> None:
        while not queue.empty():
            index, request = queue.get_nowait()
            await asyncio.sleep(max(0.0, began + index * interval - time.monotonic()))
            tally.requests += 1
            tally.leads_posted += len(request.leads)
            key = str(uuid.uuid4())
            for attempt in range(MAX_TRIES):
                outcome = await _post_once(http, api_base, request, key, tally)
                if outcome is not None:
                    break
                await asyncio.sleep(min(4.0, 0.25 * 2**attempt))
            else:
                outcome = False
            if not outcome:
                tally.requests_given_up += 1
                tally.leads_given_up += len(request.leads)

    async with httpx.AsyncClient(timeout=15) as http:
        await asyncio.gather(*(client(http) for _ in range(concurrency)))
