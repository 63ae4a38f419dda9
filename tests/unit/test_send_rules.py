"""Quiet hours and frequency caps (lqs.domain.send_rules): the decision is pure, so it is
checked here over many times and zones, and on the days the clocks change."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo, available_timezones

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from lqs.domain.clients import parse_client_settings
from lqs.domain.leads import LeadValidationError, parse_lead
from lqs.domain.send_rules import (
    CAP_PERIOD,
    Defer,
    FrequencyCap,
    Reject,
    Send,
    SendWindow,
    country_zone,
    decide,
    inside,
    next_inside,
    recipient_zone,
)

NEW_YORK = ZoneInfo("America/New_York")
BERLIN = ZoneInfo("Europe/Berlin")
UTC_ZONE = ZoneInfo("UTC")
DAYTIME = SendWindow(start="08:00", end="21:00")
EARLY = SendWindow(start="02:30", end="21:00")

ZONES = sorted(z for z in available_timezones() if "/" in z and not z.startswith("posix"))
clock_times = st.builds(
    lambda h, m: f"{h:02d}:{m:02d}", st.integers(0, 23), st.sampled_from([0, 15, 30, 45])
)
# Whole minutes from 2000 to 2037: every zone's changes then fall on whole minutes, so
# stepping a minute at a time finds any earlier moment inside the window.
moments = st.integers(
    int(datetime(2000, 1, 1, tzinfo=UTC).timestamp()) // 60,
    int(datetime(2037, 12, 31, tzinfo=UTC).timestamp()) // 60,
).map(lambda minute: datetime.fromtimestamp(minute * 60, UTC))


def _window(start: str, end: str) -> SendWindow | None:
    return None if start == end else SendWindow(start=start, end=end)


def _at(zone: ZoneInfo, text: str) -> datetime:
    """A wall-clock time in ``zone`` (first occurrence when ambiguous), as UTC."""
    return datetime.fromisoformat(text).replace(tzinfo=zone).astimezone(UTC)


# ------------------------------------------------------------------ windows, any zone


@settings(max_examples=200, deadline=None)
@given(zone_name=st.sampled_from(ZONES), now=moments, start=clock_times, end=clock_times)
def test_a_message_goes_now_inside_its_window_or_at_the_earliest_moment_inside(
    zone_name: str, now: datetime, start: str, end: str
) -> None:
    window = _window(start, end)
    zone = ZoneInfo(zone_name)
    if window is None:
        return

    decision = decide("sms", window, zone, now, [], None)

    if isinstance(decision, Send):
        assert inside(window, zone, now)
        return
    assert isinstance(decision, Defer)
    assert decision.until > now  # never in the past, never now
    assert inside(window, zone, decision.until)
    minute = now
    while minute < decision.until:
        assert not inside(window, zone, minute), minute
        minute += timedelta(minutes=1)
    assert decision.rule == "quiet_hours"


@settings(max_examples=200, deadline=None)
@given(
    now=moments,
    ages=st.lists(st.integers(0, 26 * 60), max_size=8),
    cap=st.integers(1, 5),
    action=st.sampled_from(["reject", "defer"]),
)
def test_a_cap_rejects_or_defers_until_the_count_is_under_it(
    now: datetime, ages: list[int], cap: int, action: str
) -> None:
    recent = [now - timedelta(minutes=age) for age in ages]
    counted = [t for t in recent if t > now - CAP_PERIOD]
    rule = FrequencyCap(max=cap, action=action)  # type: ignore[arg-type]

    decision = decide("sms", None, UTC_ZONE, now, recent, rule)

    if len(counted) < cap:
        assert isinstance(decision, Send)
    elif action == "reject":
        assert isinstance(decision, Reject)
        assert decision.reason == (
            f"frequency cap: {len(counted)} sms messages to this recipient in 24 h (max {cap})"
        )
    else:
        assert isinstance(decision, Defer)
        assert decision.until > now
        assert len([t for t in recent if t > decision.until - CAP_PERIOD]) < cap
        # One second earlier, the count would still be at the cap.
        earlier = decision.until - timedelta(seconds=1)
        assert len([t for t in recent if t > earlier - CAP_PERIOD]) >= cap


@pytest.mark.parametrize("action", ["reject", "defer"])
def test_a_send_stamped_after_now_counts_toward_the_cap(action: str) -> None:
    # Another worker's send, committed while this decision waited for the recipient's
    # lock, carries that worker's (later) time: it must count, or the cap is passed.
    now = datetime(2026, 12, 7, 13, 0, tzinfo=UTC)
    recent = [now - timedelta(hours=1), now + timedelta(milliseconds=250)]
    rule = FrequencyCap(max=2, action=action)  # type: ignore[arg-type]

    decision = decide("sms", None, UTC_ZONE, now, recent, rule)

    assert not isinstance(decision, Send)
    if isinstance(decision, Defer):
        assert decision.until == now - timedelta(hours=1) + CAP_PERIOD


def test_a_deferring_cap_and_a_window_defer_to_the_first_opening_after_the_cap() -> None:
    now = _at(NEW_YORK, "2026-06-01T20:30")
    sent = [_at(NEW_YORK, "2026-05-31T20:45"), _at(NEW_YORK, "2026-06-01T09:00")]

    decision = decide("sms", DAYTIME, NEW_YORK, now, sent, FrequencyCap(max=2, action="defer"))

    # The oldest send leaves the 24 h at 20:45 today, while the window is still open.
    assert decision == Defer(
        _at(NEW_YORK, "2026-06-01T20:45"),
        "frequency cap: 2 sms messages to this recipient in 24 h (max 2);"
        " deferred to 2026-06-01T20:45-04:00",
        "frequency_cap",
    )
    # Sent at 21:15 yesterday: its slot frees at 21:15 today, after the window closed.
    late = [_at(NEW_YORK, "2026-05-31T21:15"), _at(NEW_YORK, "2026-06-01T09:00")]
    decision = decide("sms", DAYTIME, NEW_YORK, now, late, FrequencyCap(max=2, action="defer"))
    assert isinstance(decision, Defer)
    assert decision.until == _at(NEW_YORK, "2026-06-02T08:00")
    assert decision.rule == "frequency_cap"


# ------------------------------------------------------------------ windows, exactly


def test_an_sms_at_23_00_in_new_york_waits_for_08_00_with_a_reason_naming_both() -> None:
    decision = decide("sms", DAYTIME, NEW_YORK, _at(NEW_YORK, "2026-03-07T23:00"), [], None)

    assert decision == Defer(
        _at(NEW_YORK, "2026-03-08T08:00"),
        "quiet hours: sms window 08:00-21:00 America/New_York; deferred to 2026-03-08T08:00-04:00",
        "quiet_hours",
    )


def test_no_window_sends_at_any_time() -> None:
    assert decide("email", None, NEW_YORK, _at(NEW_YORK, "2026-03-08T03:00"), [], None) == Send()


def test_the_start_is_inside_and_the_end_is_not() -> None:
    assert decide("sms", DAYTIME, BERLIN, _at(BERLIN, "2026-07-01T08:00"), [], None) == Send()
    decision = decide("sms", DAYTIME, BERLIN, _at(BERLIN, "2026-07-01T21:00"), [], None)
    assert isinstance(decision, Defer)
    assert decision.until == _at(BERLIN, "2026-07-02T08:00")


def test_a_window_over_midnight_is_open_late_and_early() -> None:
    night = SendWindow(start="22:00", end="06:00")
    for open_at in ("2026-07-01T23:30", "2026-07-02T05:59", "2026-07-01T22:00"):
        assert decide("push", night, BERLIN, _at(BERLIN, open_at), [], None) == Send()
    decision = decide("push", night, BERLIN, _at(BERLIN, "2026-07-02T06:00"), [], None)
    assert isinstance(decision, Defer)
    assert decision.until == _at(BERLIN, "2026-07-02T22:00")


@pytest.mark.parametrize(
    ("zone", "now", "opens"),
    [
        # 02:30 does not exist on spring-forward day (02:00 -> 03:00): the window opens at
        # the first instant after the gap, 03:00 summer time.
        (NEW_YORK, "2026-03-08T06:00+00:00", "2026-03-08T07:00+00:00"),
        (BERLIN, "2026-03-29T00:00+00:00", "2026-03-29T01:00+00:00"),
    ],
)
def test_an_opening_in_the_spring_forward_gap_opens_when_the_gap_ends(
    zone: ZoneInfo, now: str, opens: str
) -> None:
    decision = decide("sms", EARLY, zone, datetime.fromisoformat(now), [], None)

    assert isinstance(decision, Defer)
    assert decision.until == datetime.fromisoformat(opens)
    assert decision.until.astimezone(zone).strftime("%H:%M") == "03:00"


@pytest.mark.parametrize(
    ("zone", "window", "now", "opens"),
    [
        # New York falls back 02:00 EDT -> 01:00 EST: 01:30 happens twice; the first counts.
        (NEW_YORK, SendWindow(start="01:30", end="21:00"), "2026-11-01T04:00+00:00",
         "2026-11-01T05:30+00:00"),
        # 02:30 is after the overlap there: it happens once, in winter time.
        (NEW_YORK, EARLY, "2026-11-01T04:00+00:00", "2026-11-01T07:30+00:00"),
        # Berlin falls back 03:00 CEST -> 02:00 CET: 02:30 happens twice; the first counts.
        (BERLIN, EARLY, "2026-10-24T23:00+00:00", "2026-10-25T00:30+00:00"),
    ],
)  # fmt: skip
def test_an_opening_on_the_fall_back_day_is_its_first_occurrence(
    zone: ZoneInfo, window: SendWindow, now: str, opens: str
) -> None:
    decision = decide("sms", window, zone, datetime.fromisoformat(now), [], None)

    assert isinstance(decision, Defer)
    assert decision.until == datetime.fromisoformat(opens)


def test_the_clock_falling_back_into_a_window_opens_it_again() -> None:
    # 02:00-02:30 in Berlin on 2026-10-25: open 02:00-02:30 CEST, and again 02:00-02:30 CET
    # after the clocks go back at 03:00 CEST.
    window = SendWindow(start="02:00", end="02:30")
    after_first = datetime.fromisoformat("2026-10-25T00:45+00:00")  # 02:45 CEST

    assert next_inside(window, BERLIN, after_first) == datetime.fromisoformat(
        "2026-10-25T01:00+00:00"
    )  # 02:00 CET


def test_a_window_inside_the_spring_forward_gap_opens_the_next_day() -> None:
    window = SendWindow(start="02:10", end="02:50")
    now = datetime.fromisoformat("2026-03-08T05:00+00:00")  # 00:00 EST

    assert next_inside(window, NEW_YORK, now) == _at(NEW_YORK, "2026-03-09T02:10")


# ------------------------------------------------------------------ the recipient's zone


def test_the_leads_own_zone_comes_first_then_phone_then_country_then_the_client() -> None:
    assert recipient_zone("Asia/Tokyo", "+12015550123", "DE", "UTC").key == "Asia/Tokyo"
    assert recipient_zone(None, "+12015550123", "DE", "UTC").key == "America/New_York"
    assert recipient_zone(None, None, "DE", "UTC").key == "Europe/Berlin"
    assert recipient_zone(None, None, None, "Europe/Paris").key == "Europe/Paris"
    # A number phonenumbers places nowhere, a country without data: the client's zone.
    assert recipient_zone(None, "+80012345678", "ZZ", "Europe/Paris").key == "Europe/Paris"


def test_a_region_with_several_zones_gives_the_first() -> None:
    # A UK mobile: Guernsey, Isle of Man, Jersey, London (the first, documented).
    assert recipient_zone(None, "+447400123456", None, "UTC").key == "Europe/Guernsey"
    assert country_zone("US") == "America/New_York"


# ------------------------------------------------------------------ settings and intake


def test_client_settings_validate_windows_and_caps_naming_the_field() -> None:
    good = parse_client_settings(
        {
            "send_window": {"sms": {"start": "08:00", "end": "21:00"}, "email": None},
            "frequency_cap": {"sms": {"max": 3, "action": "defer"}},
        }
    )
    assert good.send_window["sms"] == DAYTIME  # type: ignore[index]
    for bad, field, message in [
        ({"send_window": {"fax": {"start": "08:00", "end": "21:00"}}}, "send_window",
         "unknown channel 'fax'"),
        ({"send_window": {"sms": {"start": "8:00", "end": "21:00"}}}, "send_window.sms.start",
         "HH:MM"),
        ({"send_window": {"sms": {"start": "24:00", "end": "21:00"}}}, "send_window.sms.start",
         "HH:MM"),
        ({"send_window": {"sms": {"start": "08:00", "end": "08:00"}}}, "send_window.sms",
         "must differ"),
        ({"frequency_cap": {"sms": {"max": 0}}}, "frequency_cap.sms.max", "greater than"),
        ({"frequency_cap": {"sms": {"max": 3, "action": "drop"}}}, "frequency_cap.sms.action",
         "'reject' or 'defer'"),
        ({"frequency_cap": {"telex": {"max": 3}}}, "frequency_cap", "unknown channel 'telex'"),
    ]:  # fmt: skip
        with pytest.raises(ValidationError) as caught:
            parse_client_settings(bad)
        [error] = caught.value.errors()
        assert ".".join(str(p) for p in error["loc"]) == field
        assert message in error["msg"]


def test_a_lead_time_zone_must_be_an_iana_name() -> None:
    lead = parse_lead({"email": "ann@example.com", "time_zone": "America/Chicago"})
    assert lead.time_zone == "America/Chicago"
    assert parse_lead({"email": "ann@example.com", "time_zone": ""}).time_zone is None
    for bad in ("Mars/Olympus_Mons", "../etc/passwd", "x" * 65):
        with pytest.raises(LeadValidationError) as caught:
            parse_lead({"email": "ann@example.com", "time_zone": bad})
        assert [e.field for e in caught.value.errors] == ["time_zone"]
