"""Delivery rules without I/O: retry decisions, backoff, provider routing, settings, limits."""

from __future__ import annotations

import asyncio
import random
import time
from typing import Any

import httpx
import pytest
from hypothesis import given
from hypothesis import strategies as st

from lqs.config import ProviderLimits
from lqs.domain.delivery import (
    AttemptDecision,
    DeliverySettingsError,
    NextStep,
    RetryPolicy,
    Verdict,
    after_attempt,
    parse_delivery_settings,
    provider_for,
)
from lqs.providers.base import parse_retry_after, redact, transport_failure
from lqs.worker.limits import Failover, ProviderLimiter

POLICY = RetryPolicy(base_delay=10, max_delay=100, horizon=1000)


def _decide(verdict: str, retry_count: int = 0, **kwargs: Any) -> AttemptDecision:
    arguments: dict[str, Any] = {
        "retry_count": retry_count, "max_retries": 3, "age": 0.0,
        "error_message": "boom", "retry_after": None, "policy": POLICY,
        "rng": random.Random(1),
    }  # fmt: skip
    arguments.update(kwargs)
    return after_attempt(Verdict(verdict), **arguments)


def test_accepted_is_sent_and_keeps_the_retry_count() -> None:
    decision = _decide("accepted", retry_count=2)
    assert (decision.step, decision.retry_count) == (NextStep.SENT, 2)


def test_permanent_fails_at_once_with_the_providers_message() -> None:
    decision = _decide("permanent", error_message="422 invalid to")
    assert decision.step is NextStep.FAILED
    assert decision.error_message == "422 invalid to"
    assert decision.retry_count == 0


def test_transient_counts_a_retry_and_schedules_it() -> None:
    decision = _decide("transient", retry_count=1)
    assert decision.step is NextStep.RETRIED
    assert decision.retry_count == 2
    assert 0 <= decision.delay <= 20


def test_transient_at_max_retries_fails_with_the_exact_count() -> None:
    decision = _decide("transient", retry_count=3)
    assert decision.step is NextStep.FAILED
    assert decision.retry_count == 3
    assert decision.error_message == "gave up after 4 attempts: boom"


def test_no_retry_is_scheduled_past_the_horizon() -> None:
    decision = _decide("transient", age=999.0, retry_after=5.0)
    assert decision.step is NextStep.FAILED
    assert "retry horizon" in decision.error_message


def test_retry_after_is_a_floor_on_the_delay() -> None:
    decision = _decide("transient", retry_after=60.0)
    assert decision.delay >= 60.0


@given(st.integers(min_value=1, max_value=200), st.integers(min_value=0, max_value=2**32))
def test_full_jitter_stays_within_the_exponential_cap(retry: int, seed: int) -> None:
    delay = POLICY.delay(retry, None, random.Random(seed))
    assert 0 <= delay <= min(POLICY.max_delay, POLICY.base_delay * 2 ** (retry - 1))


def test_jitter_spreads_retries() -> None:
    rng = random.Random(7)
    delays = {round(POLICY.delay(4, None, rng), 3) for _ in range(50)}
    assert len(delays) > 40


def test_default_horizon_ends_inside_resends_idempotency_window() -> None:
    assert RetryPolicy().horizon < 24 * 3600


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        ({"base_delay": 0}, "base_delay"),
        ({"base_delay": 10, "max_delay": 5}, "base_delay"),
        ({"horizon": 0}, "horizon"),
    ],
)
def test_policy_refuses_nonsense(arguments: dict[str, float], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        RetryPolicy(**arguments)


RESEND = {"api_key": "re_fake", "from_address": "a@b.example"}
SENDGRID = {"api_key": "SG.fake", "from_address": "a@b.example"}


def test_routing_picks_the_primary_then_the_secondary_when_it_fails() -> None:
    settings = parse_delivery_settings(
        {"email": {"primary": "resend", "secondary": "sendgrid"},
         "resend": RESEND, "sendgrid": SENDGRID}
    )  # fmt: skip
    assert provider_for("email", settings) == "resend"
    assert provider_for("email", settings, primary_failing=True) == "sendgrid"
    assert provider_for("sms", settings) is None


def test_routing_stays_on_the_primary_without_a_secondary() -> None:
    settings = parse_delivery_settings({"resend": RESEND})
    assert provider_for("email", settings, primary_failing=True) == "resend"


def test_unconfigured_primary_routes_nowhere() -> None:
    assert provider_for("email", parse_delivery_settings({})) is None


@pytest.mark.parametrize(
    ("settings", "named"),
    [
        ({"resend": {"api_key": "re_x"}}, "delivery.resend.from_address"),
        ({"email": {"primary": "resend", "secondary": "resend"}}, "secondary must differ"),
        ({"twilio": {"account_sid": "AC1", "auth_token": "t"}}, "exactly one of from_number"),
        ({"twilio": {"account_sid": "XX", "auth_token": "t", "from_number": "+1201555"}},
         "delivery.twilio.account_sid"),
        ({"webhook": {"url": "ftp://x", "secret": "whsec_x"}}, "delivery.webhook.url"),
        ({"surprise": {}}, "delivery.surprise"),
        ({"resend": {**RESEND, "base_url": "not a url"}}, "delivery.resend.base_url"),
    ],
)  # fmt: skip
def test_bad_delivery_settings_name_the_key(settings: dict[str, object], named: str) -> None:
    with pytest.raises(DeliverySettingsError, match=named):
        parse_delivery_settings(settings)


_SECRET = "whsec_" + "A" * 32


@pytest.mark.parametrize(
    ("url", "why"),
    [
        ("http://..../", "empty label"),
        ("http://hooks..example.com/x", "empty label"),
        ("https://.example.com/x", "empty label"),
        (f"http://{'a' * 64}.example.com/", "label over 63 characters"),
        ("https://\u2603.net/hook", "Invalid IDNA hostname"),
        ("http://hooks%20example.com/", "characters other than"),
        ("http://[::1/", "is not a URL"),
    ],
)  # fmt: skip
def test_a_webhook_url_whose_host_can_never_resolve_is_refused(url: str, why: str) -> None:
    with pytest.raises(DeliverySettingsError, match=r"delivery\.webhook\.url") as caught:
        parse_delivery_settings({"webhook": {"url": url, "secret": _SECRET}})
    assert why in str(caught.value)


@pytest.mark.parametrize(
    ("settings", "named"),
    [
        ({"resend": {**RESEND, "base_url": "http://api..resend.com"}}, "delivery.resend.base_url"),
        ({"sendgrid": {**SENDGRID, "base_url": "https://..."}}, "delivery.sendgrid.base_url"),
        ({"resend": {**RESEND, "base_url": "https://" + ".".join(["a" * 50] * 5)}},
         "delivery.resend.base_url: the host name is over 253 characters"),
        ({"twilio": {"account_sid": "AC1", "auth_token": "t", "from_number": "+12015550123",
                     "status_callback_url": "https://lqs..example/cb"}},
         "delivery.twilio.status_callback_url"),
    ],
)  # fmt: skip
def test_every_url_setting_refuses_a_host_that_can_never_resolve(
    settings: dict[str, object], named: str
) -> None:
    with pytest.raises(DeliverySettingsError, match=named):
        parse_delivery_settings(settings)


@pytest.mark.parametrize(
    "url",
    [
        "https://hooks.example.com/lqs?x=1",
        "http://127.0.0.1:8025/hooks/lqs",
        "http://[::1]:8025/hooks/lqs",
        "http://localhost:8025/",
        "https://hooks.example.com./trailing-dot",
        "https://stra\u00dfe.example/umlaut",
        "https://my_hooks.example.com/underscore",
        "https://" + ".".join(["a" * 63] * 3) + ".com/longest-labels",
    ],
)
def test_webhook_urls_that_can_resolve_are_kept(url: str) -> None:
    settings = parse_delivery_settings({"webhook": {"url": url, "secret": _SECRET}})
    assert settings.webhook is not None
    assert settings.webhook.url == url


def test_secrets_do_not_show_in_reprs() -> None:
    settings = parse_delivery_settings({"resend": {**RESEND, "api_key": "re_very_secret"}})
    assert "re_very_secret" not in repr(settings)


def test_retry_after_reads_seconds_and_http_dates() -> None:
    assert parse_retry_after("7") == 7.0
    assert parse_retry_after(None) is None
    assert parse_retry_after("soon") is None
    assert parse_retry_after("-3") == 0.0
    now = time.time()
    http_date = time.strftime("%a, %d %b %Y %H:%M:%S GMT", time.gmtime(now + 120))
    assert 100 < parse_retry_after(http_date, now=now) <= 120


def test_redact_strips_secret_keys_at_any_depth() -> None:
    assert redact({"id": "1", "auth_token": "x", "nested": [{"api_key": "y", "ok": 2}]}) == {
        "id": "1", "auth_token": "[redacted]", "nested": [{"api_key": "[redacted]", "ok": 2}],
    }  # fmt: skip


class FakeClock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_failover_trips_after_consecutive_failures_and_probes_after_cooldown() -> None:
    clock = FakeClock()
    failover = Failover(cooldown=30, clock=clock)
    key = ("resend", "https://api.resend.com")
    failover.record(key, transient=True)
    assert not failover.failing(key, threshold=2)
    failover.record(key, transient=True)
    assert failover.failing(key, threshold=2)
    clock.now += 29
    assert failover.failing(key, threshold=2)
    clock.now += 1
    assert not failover.failing(key, threshold=2)  # one probe
    assert failover.failing(key, threshold=2)  # the others still avoid it
    failover.record(key, transient=False)
    assert not failover.failing(key, threshold=2)
    assert failover.consecutive_failures(key) == 0


def test_a_success_between_failures_resets_the_count() -> None:
    failover = Failover()
    key = ("sendgrid", "x")
    failover.record(key, transient=True)
    failover.record(key, transient=False)
    failover.record(key, transient=True)
    assert not failover.failing(key, threshold=2)


async def test_limiter_spaces_requests_by_rate() -> None:
    limiter = ProviderLimiter(ProviderLimits(rate=50, concurrency=10))
    started = time.monotonic()
    for _ in range(6):
        async with limiter.slot():
            pass
    assert time.monotonic() - started >= 5 / 50 * 0.9


async def test_limiter_caps_concurrency() -> None:
    limiter = ProviderLimiter(ProviderLimits(concurrency=2))
    inside = 0
    most = 0

    async def one() -> None:
        nonlocal inside, most
        async with limiter.slot():
            inside += 1
            most = max(most, inside)
            await asyncio.sleep(0.01)
            inside -= 1

    await asyncio.gather(*(one() for _ in range(8)))
    assert most == 2


async def test_limiter_pause_holds_requests() -> None:
    limiter = ProviderLimiter(ProviderLimits())
    limiter.pause(0.1)
    assert limiter.paused_for > 0
    started = time.monotonic()
    async with limiter.slot():
        pass
    assert time.monotonic() - started >= 0.09


def test_limits_refuse_nonsense() -> None:
    with pytest.raises(ValueError, match="rate must be positive"):
        ProviderLimits(rate=0)
    with pytest.raises(ValueError, match="concurrency"):
        ProviderLimits(concurrency=0)


@pytest.mark.parametrize(
    ("error", "verdict", "code"),
    [
        (httpx.ConnectTimeout("slow"), "transient", "timeout"),
        (httpx.ReadTimeout("slow"), "transient", "timeout"),
        (httpx.RemoteProtocolError("peer closed"), "transient", "connection_dropped"),
        (httpx.ConnectError("refused"), "transient", "connection_error"),
        (httpx.LocalProtocolError("bad header"), "permanent", "invalid_request"),
        (httpx.UnsupportedProtocol("gopher://"), "permanent", "invalid_request"),
    ],
)
def test_transport_failures_are_classified(error: httpx.HTTPError, verdict: str, code: str) -> None:
    result = transport_failure(error)
    assert (result.verdict.value, result.error_code) == (verdict, code)
    assert result.http_status is None


def test_every_problem_is_listed_at_once_one_per_key() -> None:
    settings = {
        "email": {"primary": "mailgun", "failover_after": 0},
        "sendgrid": {"api_key": "SG.x", "from_address": "a@b.example", "colour": "blue"},
        "twilio": {"account_sid": "XX1", "from_number": "2015550100"},
        "webpush": ["not", "a", "mapping"],
    }

    with pytest.raises(DeliverySettingsError) as caught:
        parse_delivery_settings(settings)

    assert caught.value.problems == [
        "delivery.email.primary: must be one of resend, sendgrid",
        "delivery.email.failover_after: Input should be greater than or equal to 1",
        "delivery.sendgrid.colour: unknown key; expected one of api_key, from_address,"
        " base_url, webhook_public_key",
        "delivery.twilio.account_sid: 'XX1' does not match the pattern ^AC[0-9a-zA-Z]{1,64}$",
        "delivery.twilio.auth_token: required",
        "delivery.twilio.from_number: '2015550100' does not match the pattern"
        " ^\\+[1-9][0-9]{1,14}$",
        "delivery.webpush: expected a mapping of settings",
    ]
    assert str(caught.value) == "; ".join(caught.value.problems)


def test_a_missing_twilio_sender_is_listed_with_the_field_problems() -> None:
    with pytest.raises(DeliverySettingsError) as caught:
        parse_delivery_settings({"twilio": {"account_sid": "XX1"}})

    assert caught.value.problems == [
        "delivery.twilio.account_sid: 'XX1' does not match the pattern ^AC[0-9a-zA-Z]{1,64}$",
        "delivery.twilio.auth_token: required",
        "delivery.twilio: set exactly one of from_number and messaging_service_sid",
    ]


def test_two_twilio_senders_are_one_problem() -> None:
    twilio = {"account_sid": "AC1", "auth_token": "t", "from_number": "+12015550100",
              "messaging_service_sid": "MG1"}  # fmt: skip
    with pytest.raises(DeliverySettingsError) as caught:
        parse_delivery_settings({"twilio": twilio})

    assert caught.value.problems == [
        "delivery.twilio: set exactly one of from_number and messaging_service_sid"
    ]


def test_an_unknown_top_level_key_names_the_known_ones() -> None:
    with pytest.raises(DeliverySettingsError) as caught:
        parse_delivery_settings({"twillio": {}})

    assert caught.value.problems == [
        "delivery.twillio: unknown key; expected one of email, resend, sendgrid, twilio,"
        " webpush, webhook"
    ]


def test_a_long_value_is_shortened_in_its_problem() -> None:
    with pytest.raises(DeliverySettingsError) as caught:
        parse_delivery_settings(
            {"twilio": {"account_sid": "X" * 500, "auth_token": "t", "from_number": "+12015550100"}}
        )

    [problem] = caught.value.problems
    assert problem.startswith("delivery.twilio.account_sid: 'XXX")
    assert "X" * 58 not in problem
    assert "...' does not match the pattern" in problem


def test_secrets_never_show_in_problems() -> None:
    with pytest.raises(DeliverySettingsError) as caught:
        parse_delivery_settings({"resend": {"api_key": "re_very_secret", "from_address": "x"}})

    assert "re_very_secret" not in str(caught.value)
    assert caught.value.problems == [
        "delivery.resend.from_address: String should have at least 3 characters"
    ]


def test_text_postgresql_cannot_store_is_a_problem_with_the_others() -> None:
    settings = {"resend": {"api_key": "re_x", "from_address": "a\x00b@acme.example"},
                "webhook": {"url": "https://hooks.example.com/", "secret": "s\ud800",
                            "bad\x00key": 1}}  # fmt: skip

    with pytest.raises(DeliverySettingsError) as caught:
        parse_delivery_settings(settings)

    assert caught.value.problems == [
        "delivery.webhook.'bad\\x00key': unknown key; expected one of url, secret",
        "delivery.resend.from_address: text contains NUL (U+0000) at character 2,"
        " which cannot be stored",
        "delivery.webhook.secret: text contains a lone surrogate (U+D800) at character 2,"
        " which cannot be stored",
        "delivery.webhook: the key 'bad\\x00key' contains NUL (U+0000) at character 4,"
        " which cannot be stored",
    ]


_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=20),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=12), inner, max_size=4)
    ),
    max_leaves=12,
)
_KEYS = st.sampled_from(["email", "resend", "sendgrid", "twilio", "webpush", "webhook"])
_FIELDS = st.sampled_from(
    ["primary", "secondary", "failover_after", "api_key", "from_address", "base_url",
     "account_sid", "auth_token", "from_number", "url", "secret", "vapid_subject", "x\n"]
)  # fmt: skip


@given(st.dictionaries(_KEYS | st.text(max_size=8), st.dictionaries(_FIELDS, _VALUES) | _VALUES))
def test_any_settings_parse_or_give_one_line_per_problem(settings: dict[str, Any]) -> None:
    problems: list[str] | None = None
    try:
        parse_delivery_settings(settings)
    except DeliverySettingsError as exc:
        problems = exc.problems

    assert problems is None or problems
    for problem in problems or []:
        assert problem.startswith("delivery")
        assert ": " in problem
        assert len(problem.splitlines()) == 1, problem
