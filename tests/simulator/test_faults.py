"""Injected faults: seeded error rates, 429 with Retry-After, latency, timeouts, drops, hangs."""

from __future__ import annotations

import random
import time
from collections import Counter
from typing import Any

import httpx
import pytest
from pydantic import ValidationError

from lqs.simulator import Faults, Latency, SimulatorControl
from lqs.simulator.faults import draw_plan
from tests.simulator.conftest import Configure
from tests.simulator.senders import SENDS, send_resend, send_sendgrid

PROVIDERS = list(SENDS)


def test_same_seed_draws_the_same_outcomes() -> None:
    faults = Faults(error_rates={500: 0.2, 503: 0.1}, drop_after_accept_rate=0.1)
    rng_a, rng_b = random.Random("7:resend"), random.Random("7:resend")

    assert [draw_plan(faults, rng_a) for _ in range(200)] == [
        draw_plan(faults, rng_b) for _ in range(200)
    ]


def test_outcomes_come_at_their_configured_rates() -> None:
    faults = Faults(
        error_rates={500: 0.3, 429: 0.1}, timeout_rate=0.05, hang_after_accept_rate=0.05
    )
    rng = random.Random(1)

    counts = Counter(draw_plan(faults, rng).outcome for _ in range(20_000))

    for outcome, rate in {"500": 0.3, "429": 0.1, "timeout": 0.05, "hang": 0.05, "ok": 0.5}.items():
        assert abs(counts[outcome] / 20_000 - rate) < 0.015, outcome


def test_scripted_outcome_wins_and_does_not_shift_the_random_ones() -> None:
    faults = Faults(error_rates={500: 0.5})
    plain, scripted = random.Random(3), random.Random(3)

    draw_plan(faults, plain)
    forced = draw_plan(faults, scripted, scripted="drop")

    assert forced.outcome == "drop"
    assert [draw_plan(faults, plain).outcome for _ in range(50)] == [
        draw_plan(faults, scripted).outcome for _ in range(50)
    ]


@pytest.mark.parametrize(
    ("latency", "low", "high"),
    [
        (Latency(distribution="fixed", seconds=0.25), 0.25, 0.25),
        (Latency(distribution="uniform", min_seconds=0.1, max_seconds=0.2), 0.1, 0.2),
        (Latency(distribution="normal", mean_seconds=0.0, sd_seconds=1.0), 0.0, 10.0),
        (Latency(), 0.0, 0.0),
    ],
)
def test_latency_is_drawn_within_its_distribution(
    latency: Latency, low: float, high: float
) -> None:
    rng = random.Random(5)

    draws = [draw_plan(Faults(latency=latency), rng).latency for _ in range(500)]

    assert all(low <= draw <= high for draw in draws)


def test_seeded_error_rate_repeats_exactly_after_a_reset(
    client: httpx.Client, sim: SimulatorControl, configure: Configure
) -> None:
    configure(seed=42, sendgrid={"faults": {"error_rates": {"500": 0.3}}})

    first = [send_sendgrid(client).status_code for _ in range(200)]
    sim.reset()
    again = [send_sendgrid(client).status_code for _ in range(200)]

    assert first == again
    assert set(first) == {202, 500}
    assert 40 <= first.count(500) <= 80
    assert len(sim.messages("sendgrid")) == again.count(202)


@pytest.mark.parametrize(
    ("provider", "body"),
    [
        (
            "resend",
            {
                "statusCode": 500,
                "message": "An unexpected error occurred, please try again.",
                "name": "application_error",
            },
        ),
        ("sendgrid", {"errors": [{"message": "internal error", "field": None, "help": None}]}),
        (
            "twilio",
            {
                "code": 20500,
                "message": "Internal Server Error",
                "more_info": "https://www.twilio.com/docs/errors/20500",
                "status": 500,
            },
        ),
        (
            "push",
            {
                "code": 500,
                "errno": None,
                "error": "Internal Server Error",
                "message": "Internal Server Error",
                "more_info": "http://autopush.readthedocs.io/en/latest/http.html#error-codes",
            },
        ),
    ],
)
def test_injected_error_uses_the_providers_own_body(
    client: httpx.Client, sim: SimulatorControl, configure: Configure, provider: str, body: Any
) -> None:
    configure(**{provider: {"faults": {"error_rates": {"500": 1.0}}}})

    response = SENDS[provider](client)

    assert response.status_code == 500
    assert response.json() == body
    assert sim.messages() == []
    [logged] = sim.requests(provider)
    assert (logged.status, logged.outcome) == (500, "fault")


@pytest.mark.parametrize("provider", PROVIDERS)
def test_injected_429_carries_the_configured_retry_after(
    client: httpx.Client, configure: Configure, provider: str
) -> None:
    configure(**{provider: {"faults": {"error_rates": {"429": 1.0}, "retry_after_seconds": 17}}})

    response = SENDS[provider](client)

    assert response.status_code == 429
    assert response.headers["Retry-After"] == "17"


def test_injected_429_on_resend_is_rate_limit_exceeded(
    client: httpx.Client, configure: Configure
) -> None:
    configure(resend={"faults": {"script": ["429"]}})

    response = send_resend(client)

    assert response.json()["name"] == "rate_limit_exceeded"
    assert "ratelimit-limit" in response.headers


def test_latency_is_applied_before_answering(client: httpx.Client, configure: Configure) -> None:
    configure(twilio={"faults": {"latency": {"distribution": "fixed", "seconds": 0.3}}})

    started = time.monotonic()
    response = SENDS["twilio"](client)
    elapsed = time.monotonic() - started

    assert response.status_code == 201
    assert elapsed >= 0.3


@pytest.mark.parametrize("provider", PROVIDERS)
def test_timeout_hangs_past_the_client_timeout_and_accepts_nothing(
    client: httpx.Client, sim: SimulatorControl, configure: Configure, provider: str
) -> None:
    configure(**{provider: {"faults": {"timeout_rate": 1.0, "hang_seconds": 1.0}}})

    with pytest.raises(httpx.ReadTimeout):
        SENDS[provider](client, timeout=0.2)

    assert sim.messages() == []
    assert sim.hook_deliveries() == []
    assert [r.outcome for r in sim.requests(provider)] == ["timeout"]


def test_timeout_shorter_than_the_client_is_answered_504(
    client: httpx.Client, configure: Configure
) -> None:
    configure(sendgrid={"faults": {"script": ["timeout"], "hang_seconds": 0.1}})

    response = send_sendgrid(client)

    assert response.status_code == 504
    assert response.json()["errors"][0]["message"] == "gateway timeout"


@pytest.mark.parametrize("provider", PROVIDERS)
def test_drop_records_the_message_and_breaks_the_connection(
    client: httpx.Client, sim: SimulatorControl, configure: Configure, provider: str
) -> None:
    configure(**{provider: {"faults": {"drop_after_accept_rate": 1.0}}})

    with pytest.raises(httpx.RemoteProtocolError):
        SENDS[provider](client)

    recorded = sim.hook_deliveries() if provider == "sink" else sim.messages(provider)
    assert len(recorded) == 1
    assert [r.outcome for r in sim.requests(provider)] == ["dropped"]


@pytest.mark.parametrize("provider", PROVIDERS)
def test_hang_after_accept_records_the_message_and_times_the_client_out(
    client: httpx.Client, sim: SimulatorControl, configure: Configure, provider: str
) -> None:
    configure(**{provider: {"faults": {"hang_after_accept_rate": 1.0, "hang_seconds": 1.0}}})

    with pytest.raises(httpx.ReadTimeout):
        SENDS[provider](client, timeout=0.2)

    recorded = sim.hook_deliveries() if provider == "sink" else sim.messages(provider)
    assert len(recorded) == 1


def test_script_runs_before_chance(client: httpx.Client, configure: Configure) -> None:
    configure(twilio={"faults": {"script": ["503", "ok", "500"]}})

    statuses = [SENDS["twilio"](client).status_code for _ in range(4)]

    assert statuses == [503, 201, 500, 201]


def test_faults_of_one_provider_leave_the_others_alone(
    client: httpx.Client, configure: Configure
) -> None:
    configure(resend={"faults": {"error_rates": {"500": 1.0}}})

    assert send_sendgrid(client).status_code == 202


@pytest.mark.parametrize("word", ["²", "٥٠٠", "+500", "5000", "399", "600", ""])
def test_a_script_word_that_is_no_4xx_5xx_in_ascii_digits_is_refused(word: str) -> None:
    with pytest.raises(ValidationError, match="neither a 4xx/5xx status"):
        Faults(script=[word])


def test_a_scripted_status_is_an_error_status() -> None:
    plan = draw_plan(Faults(script=["503"]), random.Random(1), scripted="503")

    assert plan.error_status == 503
    assert draw_plan(Faults(), random.Random(1), scripted="drop").error_status is None
