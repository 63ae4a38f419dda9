"""The tenant API's reads at size: ``GET /v1/communications`` and ``GET /v1/stats``.

Two clients share the tables: a large one (``large`` leads, three communications each)
and a small one (``small`` leads, likewise). Leads arrive over the last 90 days (stored
in arrival order, as a live table would have them) with the
statuses, channels, providers and outcomes of a working install; a tenth of the
delivered or bounced messages have a provider event, a few a complaint, a tenth of the
sent ones a recorded attempt. Each client has one user (a profile), signed in with a
token from :class:`~lqs.api.tokens.TokenVerifier`.

Cases, for each client: the first page of communications (50, newest first), the page
after 50 pages (a keyset cursor 2,500 rows deep) and the statistics of the last 30 days.
Each case is timed, one request at a time, three ways:

- *API*: the request through the application in-process (``httpx.ASGITransport`` on
  :func:`~lqs.api.app.create_app`): token, profile, SQL, JSON;
- *SQL as the user*: the same ``lqs.db`` functions in :func:`~lqs.db.pool.tenant_session`
  (``SET LOCAL role authenticated`` and the claims: row-level security applies);
- *SQL as service_role*: the same statements, client filter included, where the policy
  is the service role's ``auth.role() = 'service_role'``.

API / SQL says what HTTP, auth and JSON add; user / service_role what row-level security
adds. Every statement of each case is EXPLAINed (ANALYZE, BUFFERS) as the user, and the
plan checked: no sequential scan of ``leads`` or ``communications``.
"""

from __future__ import annotations

import asyncio
import dataclasses
import functools
import secrets
import statistics
import time
import uuid
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import UUID

import httpx
import psycopg
from psycopg import AsyncConnection, AsyncCursor, sql
from psycopg_pool import AsyncConnectionPool

from bench.common import Section
from lqs.api.app import create_app
from lqs.api.tokens import TokenVerifier
from lqs.cli import compose
from lqs.config import Settings
from lqs.db.pool import open_pool, tenant_session
from lqs.db.stats_rollup import refresh_rollup
from lqs.db.tenant_reads import TenantCommunicationFilter, communications_page
from lqs.db.tenant_stats import delivery_counts, lead_funnel, leads_by_outcome
from lqs.domain.cursor import Cursor, encode_cursor

PAGE = 50
DEEP_PAGES = 50
"""The deep case reads the page after this many pages."""
STATS_DAYS = 30
CHANGED_HOURS = 24
"""Hours of the range a case logs as changed before it runs: counted live, not rolled up."""
COMMUNICATIONS_PER_LEAD = 3
GOALS_MS = {"small": 50.0, "large": 300.0}
"""p99 goals of the API, per client."""
RLS_GOAL = 1.20
"""Row-level security may add at most 20% over the service role (p50)."""
BUDGET_SECONDS = 40.0
"""Each way of a case is timed for about this long at most..."""
MIN_REQUESTS = 40
"""...but at least this many times (fewer only when fewer are asked for: a quick run)."""
WATCHED = ("leads", "communications")
"""Tables no plan may read sequentially."""

# ---------------------------------------------------------------- the data set

_LEADS = """
INSERT INTO public.leads (client_id, email, first_name, last_name, job_title, company_name,
                          company_domain, country, source, utm_campaign, consent_status,
                          status, score, grade, score_breakdown, dedupe_key, received_at,
                          processed_at)
SELECT %(client)s, e.email, 'First' || i, 'Last' || i,
       (ARRAY['CEO', 'Engineer', 'VP Sales', 'Analyst', 'CTO'])[1 + i %% 5],
       'Company ' || (i %% 997), 'company' || (i %% 997) || '.example',
       (ARRAY['US', 'GB', 'DE', 'FR', 'NL'])[1 + i %% 5],
       (ARRAY['website', 'webinar', 'referral', 'ads'])[1 + (i / 7) %% 4],
       'campaign-' || (i %% 20), (ARRAY['granted', 'granted', 'unknown'])[1 + i %% 3],
       s.status, s.score,
       CASE WHEN s.score >= 70 THEN 'A' WHEN s.score >= 40 THEN 'B' WHEN s.score IS NOT NULL
            THEN 'C' END,
       CASE WHEN s.score IS NOT NULL THEN '[]'::jsonb END,
       'email:' || e.email, t.received, t.received + interval '2 seconds'
FROM generate_series(1, %(n)s) AS i
CROSS JOIN LATERAL (SELECT 'lead' || i || '@' || %(slug)s || (i %% 997) || '.example' AS email) e
CROSS JOIN LATERAL (SELECT now() - ((i::bigint * 7919) %% 7776000) * interval '1 second'
                           AS received) t
CROSS JOIN LATERAL (SELECT (i * 37) %% 100 AS h) b
CROSS JOIN LATERAL (SELECT
       CASE WHEN b.h < 35 THEN 'qualified' WHEN b.h < 65 THEN 'nurture'
            WHEN b.h < 97 THEN 'disqualified' WHEN b.h < 99 THEN 'error' ELSE 'queued' END
           AS status,
       CASE WHEN b.h < 97 THEN (i * 13) %% 100 END AS score) s
ORDER BY t.received
"""

# Three per lead: the lead's notification (mostly email), a follow-up, a webhook or SMS.
_COMMUNICATIONS = """
INSERT INTO public.communications (lead_id, client_id, type, recipient, subject, content,
                                   status, provider, external_id, error_message,
                                   retry_count, created_at, sent_at, delivered_at,
                                   template_id, campaign_id, consent_status)
SELECT l.id, l.client_id, c.type,
       CASE WHEN c.type = 'sms' THEN '+15550100' ELSE l.email END,
       'New lead: ' || l.first_name, 'Hello ' || l.first_name, c.status,
       CASE WHEN c.status IN ('pending', 'rejected') THEN NULL
            WHEN c.type = 'sms' THEN 'twilio' WHEN c.type = 'webhook' THEN 'webhook'
            WHEN h.p < 70 THEN 'resend' ELSE 'sendgrid' END,
       CASE WHEN c.status NOT IN ('pending', 'rejected') THEN 'msg-' || md5(l.id::text || k) END,
       CASE WHEN c.status = 'failed' THEN 'provider refused the message' END,
       CASE WHEN c.status = 'failed' THEN 3 ELSE 0 END,
       l.received_at + k * interval '7 minutes',
       CASE WHEN c.status NOT IN ('pending', 'rejected')
            THEN l.received_at + k * interval '7 minutes' + interval '1 second' END,
       CASE WHEN c.status = 'delivered'
            THEN l.received_at + k * interval '7 minutes' + interval '5 seconds' END,
       (ARRAY['lead_qualified@v3', 'follow_up@v1', 'digest@v2'])[k],
       'campaign-' || (h.p %% 20), 'granted'
FROM public.leads AS l
CROSS JOIN generate_series(1, 3) AS k
CROSS JOIN LATERAL (SELECT abs(hashtext(l.id::text || k)) AS v) r
CROSS JOIN LATERAL (SELECT r.v %% 100 AS t, (r.v / 100) %% 100 AS s, (r.v / 10000) %% 100 AS p) h
CROSS JOIN LATERAL (SELECT
       CASE WHEN h.t < 80 THEN 'email' WHEN h.t < 95 THEN 'sms' ELSE 'webhook' END AS type,
       CASE WHEN h.s < 70 THEN 'delivered' WHEN h.s < 80 THEN 'sent'
            WHEN h.s < 85 THEN 'bounced' WHEN h.s < 90 THEN 'failed'
            WHEN h.s < 95 THEN 'pending' ELSE 'rejected' END AS status) c
WHERE l.client_id = %(client)s AND l.status <> 'queued'
ORDER BY l.received_at, k
"""

_EVENTS = """
INSERT INTO public.provider_events (client_id, provider, event_id, communication_id,
                                    external_id, event_type, kind, recipient, occurred_at,
                                    payload, received_at, applied_at, effect)
SELECT c.client_id, c.provider, c.id::text || ':' || k.kind, c.id, c.external_id,
       'email.' || k.kind, k.kind, c.recipient, c.sent_at, '{}'::jsonb, c.sent_at,
       c.sent_at, k.kind
FROM public.communications AS c
CROSS JOIN LATERAL (SELECT abs(hashtext(c.id::text)) %% 1000 AS v) h
CROSS JOIN LATERAL (SELECT CASE WHEN h.v < 5 AND c.status = 'delivered' THEN 'complained'
                                WHEN c.status = 'delivered' THEN 'delivered'
                                ELSE 'bounced' END AS kind) k
WHERE c.client_id = %(client)s AND c.status IN ('delivered', 'bounced') AND h.v < 100
"""

_ATTEMPTS = """
INSERT INTO public.delivery_attempts (communication_id, client_id, attempt, provider,
                                      started_at, finished_at, http_status, latency_ms,
                                      outcome, recorded)
SELECT c.id, c.client_id, 1, c.provider, c.sent_at - interval '200 milliseconds', c.sent_at,
       CASE WHEN c.status = 'failed' THEN 422 ELSE 202 END, 200,
       CASE WHEN c.status = 'failed' THEN 'permanent' ELSE 'accepted' END, true
FROM public.communications AS c
WHERE c.client_id = %(client)s AND c.provider IS NOT NULL
  AND abs(hashtext(c.id::text)) %% 10 = 0
"""


@dataclass(frozen=True)
class Tenant:
    label: str
    """``small`` or ``large``."""
    client: UUID
    user: UUID
    leads: int
    communications: int


def _tenant(conn: psycopg.Connection[Any], label: str, leads: int) -> Tenant:
    slug = f"bench-{label}"
    row = conn.execute(
        "INSERT INTO public.clients (name, slug) VALUES (%s, %s) RETURNING id",
        (f"Bench {label}", slug),
    ).fetchone()
    assert row is not None
    client, user = row[0], uuid.uuid4()
    conn.execute(
        "INSERT INTO public.profiles (id, client_id, email, role) VALUES (%s, %s, %s, 'member')",
        (user, client, f"user@{slug}.example"),
    )
    conn.execute(_LEADS, {"client": client, "n": leads, "slug": slug})
    conn.execute(_COMMUNICATIONS, {"client": client})
    conn.execute(_EVENTS, {"client": client})
    conn.execute(_ATTEMPTS, {"client": client})
    found = conn.execute(
        "SELECT count(*) FROM public.communications WHERE client_id = %s", (client,)
    ).fetchone()
    assert found is not None
    return Tenant(label, client, user, leads, int(found[0]))


@dataclass(frozen=True)
class Rollup:
    """The statistics rollup's first build over the whole data set (the worker's refresh)."""

    hours: int
    seconds: float


def fill(url: str, large: int, small: int) -> tuple[list[Tenant], float, Rollup]:
    """Both clients' data, vacuumed and analysed, and the statistics rolled up; the tenants,
    the seconds the data took, and the rollup's build."""
    started = time.perf_counter()
    with psycopg.connect(url, autocommit=True) as conn:
        tenants = [_tenant(conn, "small", small), _tenant(conn, "large", large)]
        filled = time.perf_counter() - started
        for table in ("leads", "communications", "provider_events", "delivery_attempts"):
            conn.execute(sql.SQL("VACUUM ANALYZE public.{}").format(sql.Identifier(table)))
    elapsed = time.perf_counter() - started
    print(
        f"  filled in {filled:.0f} s, VACUUM ANALYZE {elapsed - filled:.0f} s: "
        + ", ".join(f"{t.label} {t.leads:,} leads, {t.communications:,} messages" for t in tenants),
        flush=True,
    )
    rolled = time.perf_counter()
    hours = asyncio.run(_roll_up(url))
    rollup = Rollup(hours, time.perf_counter() - rolled)
    with psycopg.connect(url, autocommit=True) as conn:
        for table in ("stats_lead_hours", "stats_message_hours", "stats_stale_hours"):
            conn.execute(sql.SQL("VACUUM ANALYZE public.{}").format(sql.Identifier(table)))
    print(f"  rolled up {hours:,} hours in {rollup.seconds:.1f} s", flush=True)
    return tenants, elapsed, rollup


async def _roll_up(url: str) -> int:
    """Everything logged, rolled up as the worker does: batch after batch."""
    total = 0
    async with await AsyncConnection.connect(url, autocommit=True) as conn:
        while recounted := await refresh_rollup(conn):
            total += recounted
    return total


def _change_hours(url: str, tenant: Tenant, start: datetime, hours: int) -> None:
    """Log ``hours`` hours of the range as changed, as a late webhook or a reprocessed lead
    would (one lead of each touched): they are counted live until the next refresh."""
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(
            "UPDATE public.leads AS l SET updated_at = now() FROM ("
            "  SELECT DISTINCT ON (date_trunc('hour', received_at, 'UTC')) id"
            "  FROM public.leads WHERE client_id = %s AND received_at >= %s"
            "  ORDER BY date_trunc('hour', received_at, 'UTC'), received_at LIMIT %s"
            ") AS touched WHERE l.id = touched.id",
            (tenant.client, start, hours),
        )


def _deep_cursor(url: str, tenant: Tenant) -> Cursor:
    """The cursor after ``DEEP_PAGES`` pages of the client's communications."""
    with psycopg.connect(url) as conn:
        row = conn.execute(
            "SELECT created_at, id FROM public.communications WHERE client_id = %s"
            " ORDER BY created_at DESC, id DESC OFFSET %s LIMIT 1",
            (tenant.client, DEEP_PAGES * PAGE - 1),
        ).fetchone()
    assert row is not None, "too few communications for the deep page"
    return Cursor("created", row[0], row[1])


# ---------------------------------------------------------------- plans


@dataclass
class Plan:
    """What EXPLAIN (ANALYZE) said about one statement."""

    statement: str
    milliseconds: float
    indexes: list[str]
    seq_scans: list[str]


@dataclass
class Explained:
    names: tuple[str, ...]
    """The statements' names, in the order the case runs them."""
    plans: list[Plan] = field(default_factory=list)


def _nodes(node: dict[str, Any]) -> Iterator[dict[str, Any]]:
    yield node
    for child in node.get("Plans", []):
        yield from _nodes(child)


def explaining_cursor(found: Explained) -> type[AsyncCursor[Any]]:
    """A cursor class that EXPLAINs (ANALYZE, BUFFERS) each statement before running it."""

    class _Explaining(AsyncCursor[Any]):
        async def execute(self, query: Any, params: Any = None, **kwargs: Any) -> Any:
            composed = sql.SQL(query) if isinstance(query, str) else query
            if "set_config(" in composed.as_string(self.connection):  # a setting, no plan
                return await super().execute(query, params, **kwargs)
            explain = sql.Composed([sql.SQL("EXPLAIN (ANALYZE, BUFFERS, FORMAT JSON) "), composed])
            probe = AsyncCursor(self.connection)
            await probe.execute(explain, params)
            row = await probe.fetchone()
            assert row is not None
            top = row[0][0]
            nodes = list(_nodes(top["Plan"]))
            names = found.names
            found.plans.append(
                Plan(
                    names[len(found.plans)] if len(found.plans) < len(names) else "?",
                    float(top["Execution Time"]),
                    list(dict.fromkeys(n["Index Name"] for n in nodes if "Index Name" in n)),
                    [
                        n["Relation Name"]
                        for n in nodes
                        if n["Node Type"] == "Seq Scan" and n.get("Relation Name") in WATCHED
                    ],
                )
            )
            return await super().execute(query, params, **kwargs)

    return _Explaining


# ---------------------------------------------------------------- the cases


@dataclass
class Case:
    name: str
    tenant: Tenant
    path: str
    sql: Callable[[AsyncConnection], Awaitable[object]]
    """The statements the endpoint runs, given a session."""
    explained: Explained
    prepare: Callable[[], None] = lambda: None
    """Run once before the case is measured."""
    api: list[float] = field(default_factory=list)
    user: list[float] = field(default_factory=list)
    service: list[float] = field(default_factory=list)
    requests: int = 0
    """Timed per way (API, as the user, as the service role)."""


def _cases(url: str, tenants: list[Tenant], now: datetime) -> list[Case]:
    start, end = now - timedelta(days=STATS_DAYS), now
    window = f"from={start.isoformat()}&to={end.isoformat()}".replace("+", "%2B")
    cases = []
    for tenant in tenants:
        wanted = TenantCommunicationFilter(client_id=tenant.client)
        deep = _deep_cursor(url, tenant)

        async def first(
            conn: AsyncConnection, wanted: TenantCommunicationFilter = wanted
        ) -> object:
            return await communications_page(conn, wanted, limit=PAGE)

        async def later(
            conn: AsyncConnection, wanted: TenantCommunicationFilter = wanted, deep: Cursor = deep
        ) -> object:
            return await communications_page(conn, wanted, limit=PAGE, after=deep)

        async def stats(conn: AsyncConnection, client: UUID = tenant.client) -> object:
            return (
                await leads_by_outcome(conn, client, start, end, "day"),
                await lead_funnel(conn, client, start, end),
                await delivery_counts(conn, client, start, end),
            )

        cases += [
            Case(
                "communications, first page",
                tenant,
                f"/v1/communications?limit={PAGE}",
                first,
                Explained(("communications_page",)),
            ),
            Case(
                f"communications, page {DEEP_PAGES + 1}",
                tenant,
                f"/v1/communications?limit={PAGE}&cursor={encode_cursor(deep)}",
                later,
                Explained(("communications_page",)),
            ),
            Case(
                f"stats, {STATS_DAYS} days",
                tenant,
                f"/v1/stats?{window}",
                stats,
                Explained(("leads_by_outcome", "lead_funnel", "delivery_counts")),
            ),
            Case(
                f"stats, {STATS_DAYS} days, {CHANGED_HOURS} changed hours",
                tenant,
                f"/v1/stats?{window}",
                stats,
                Explained(("leads_by_outcome", "lead_funnel", "delivery_counts")),
                functools.partial(_change_hours, url, tenant, start, CHANGED_HOURS),
            ),
        ]
    return cases


async def _timed(call: Callable[[], Awaitable[object]], n: int, into: list[float]) -> None:
    for _ in range(n):
        started = time.perf_counter()
        await call()
        into.append((time.perf_counter() - started) * 1000)


async def _measure(url: str, cases: list[Case], requests: int, warmup: int) -> None:
    secret = secrets.token_urlsafe(32)
    verifier = TokenVerifier(secret=secret)
    config = dataclasses.replace(
        compose.api_config(Settings(_env_file=None)),
        tokens=verifier,
        pool_max_size=2,
    )
    app = create_app(url, config)
    pool: AsyncConnectionPool = await open_pool(url, min_size=1, max_size=1)
    try:
        async with (
            app.router.lifespan_context(app),
            httpx.AsyncClient(
                transport=httpx.ASGITransport(app=app), base_url="http://lqs.bench"
            ) as http,
        ):
            for case in cases:
                headers = {"Authorization": f"Bearer {verifier.issue(case.tenant.user)[0]}"}

                async def api(case: Case = case, headers: dict[str, str] = headers) -> None:
                    response = await http.get(case.path, headers=headers)
                    assert response.status_code == 200, response.text

                async def as_user(case: Case = case) -> None:
                    async with tenant_session(pool, case.tenant.user) as conn:
                        await case.sql(conn)

                async def as_service(case: Case = case) -> None:
                    async with tenant_session(pool, None, role="service_role") as conn:
                        await case.sql(conn)

                case.prepare()
                await _explain(pool, case)
                warm: list[float] = []
                for call in (api, as_user, as_service):  # warm-up: caches, prepared statements
                    await _timed(call, warmup, warm)
                # A slow case gets fewer requests: each way about BUDGET_SECONDS at most.
                each = statistics.median(warm) / 1000
                case.requests = max(
                    min(MIN_REQUESTS, requests), min(requests, int(BUDGET_SECONDS / each))
                )
                # Interleaved in rounds, so that the three see the same machine load.
                rounds = 4
                for _ in range(rounds):
                    await _timed(api, case.requests // rounds, case.api)
                    await _timed(as_user, case.requests // rounds, case.user)
                    await _timed(as_service, case.requests // rounds, case.service)
                print(
                    f"  {case.tenant.label:5} {case.name}: API p50 {_p(case.api, 50):.1f} ms "
                    f"p99 {_p(case.api, 99):.1f} ms; SQL as user p50 {_p(case.user, 50):.1f} ms"
                    f"; service_role p50 {_p(case.service, 50):.1f} ms",
                    flush=True,
                )
    finally:
        await pool.close()


async def _explain(pool: AsyncConnectionPool, case: Case) -> None:
    """EXPLAIN ANALYZE each of the case's statements as the user, on a connection of its own."""
    async with tenant_session(pool, case.tenant.user) as conn:
        saved = conn.cursor_factory
        conn.cursor_factory = explaining_cursor(case.explained)
        try:
            await case.sql(conn)
        finally:
            conn.cursor_factory = saved


# ---------------------------------------------------------------- the report


def _p(values: list[float], percentile: int) -> float:
    if percentile == 50:
        return statistics.median(values)
    return statistics.quantiles(values, n=100, method="inclusive")[percentile - 1]


def _section(
    tenants: list[Tenant], cases: list[Case], fill_seconds: float, rollup: Rollup, requests: int
) -> Section:
    sizes = "; ".join(
        f"{t.label}: {t.leads:,} leads, {t.communications:,} communications" for t in tenants
    )
    lines = [
        f"Two clients in the same tables ({sizes}), leads spread over 90 days, built with "
        f"set-based SQL and VACUUM ANALYZEd in {fill_seconds:.0f} s; the statistics rollup "
        f"(migration 0018) then built from scratch by the worker's refresh: {rollup.hours:,} "
        f"(client, hour) pairs in {rollup.seconds:.1f} s. The statistics count live the "
        f"range's first and last hour and every hour logged as changed since the last "
        f"refresh ('{CHANGED_HOURS} changed hours': one lead in each of {CHANGED_HOURS} hours "
        f"touched before the case), the rest from the rollup. Each case: up to {requests} "
        f"requests one at a time (fewer when one takes over "
        f"{BUDGET_SECONDS / requests * 1000:.0f} ms, "
        f"at least {MIN_REQUESTS}) after a warm-up, interleaved in rounds with the same "
        "statements run directly as the user (`tenant_session`: row-level security) and as "
        "`service_role` on one pooled connection. API/SQL and RLS/service_role are ratios of "
        "the medians (p99 in brackets).",
        "",
        "| case | client | requests | API p50 | API p99 | goal (p99) | SQL as user p50 / p99 "
        "| service_role p50 / p99 | API/SQL | RLS/service_role | plan as the user |",
        "| --- | --- | ---: | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for case in cases:
        goal = GOALS_MS[case.tenant.label]
        p99 = _p(case.api, 99)
        rls = _p(case.user, 50) / _p(case.service, 50)
        indexes = sorted({i for plan in case.explained.plans for i in plan.indexes})
        seq = sorted({s for plan in case.explained.plans for s in plan.seq_scans})
        plan_text = ", ".join(f"`{i}`" for i in indexes) or "no index"
        if seq:
            plan_text += " ⚠️ Seq Scan on " + ", ".join(seq)
        lines.append(
            f"| {case.name} | {case.tenant.label} | {case.requests} "
            f"| {_p(case.api, 50):.1f} ms | {p99:.1f} ms "
            f"| ≤ {goal:.0f} ms {'✅' if p99 <= goal else '❌'} "
            f"| {_p(case.user, 50):.1f} / {_p(case.user, 99):.1f} ms "
            f"| {_p(case.service, 50):.1f} / {_p(case.service, 99):.1f} ms "
            f"| {_p(case.api, 50) / _p(case.user, 50):.2f}× "
            f"({p99 / _p(case.user, 99):.2f}×) "
            f"| {rls:.2f}× ({_p(case.user, 99) / _p(case.service, 99):.2f}×) "
            f"{'✅' if rls <= RLS_GOAL else '❌'} | {plan_text} |"
        )
    lines += [
        "",
        "Each statement once under EXPLAIN (ANALYZE, BUFFERS) as the user (execution time "
        "on the server):",
        "",
        "| case | client | statement | execution | indexes |",
        "| --- | --- | --- | --- | --- |",
    ]
    for case in cases:
        for plan in case.explained.plans:
            lines.append(
                f"| {case.name} | {case.tenant.label} | `{plan.statement}` "
                f"| {plan.milliseconds:.1f} ms | {', '.join(plan.indexes) or '-'} |"
            )
    return Section("Tenant API (issue 15)", markdown=lines)


def run(url: str, *, large: int, small: int, requests: int, warmup: int = 20) -> Section:
    """Fill ``url`` (an empty scratch database), time every case, check every plan."""
    print(f"tenant API: {large:,} and {small:,} leads, {COMMUNICATIONS_PER_LEAD} messages each")
    tenants, fill_seconds, rollup = fill(url, large, small)
    cases = _cases(url, tenants, datetime.now(UTC))
    asyncio.run(_measure(url, cases, requests, warmup))
    bad = [
        f"{case.tenant.label} {case.name}: {plan.statement}"
        for case in cases
        for plan in case.explained.plans
        if plan.seq_scans
    ]
    section = _section(tenants, cases, fill_seconds, rollup, requests)
    if bad:
        # Reported, not raised: a failed assertion here threw away every stage before it.
        print(f"WARNING tenant: sequential scans of leads or communications: {bad}", flush=True)
        section.markdown[:0] = [
            "**❌ Sequential scans of leads or communications** (goal: none): "
            + ", ".join(f"`{b}`" for b in bad)
            + ".",
            "",
        ]
    return section
