"""Sign-in's limits in one process: attempts per email (AttemptLockout) and the slots that
bound password hashing (WorkSlots)."""

from __future__ import annotations

import asyncio
import threading

import pytest

from lqs.api.limits import AttemptLockout, Busy, WorkSlots

LOCKOUT = 900.0


def test_the_fifth_attempt_in_a_row_is_counted_then_the_email_is_locked() -> None:
    lockout = AttemptLockout(5, LOCKOUT)

    assert [lockout.attempt("ann@acme.example", now=0.0) for _ in range(5)] == [0.0] * 5
    assert lockout.attempt("ann@acme.example", now=100.0) == LOCKOUT - 100.0
    assert lockout.attempt("bob@acme.example", now=100.0) == 0.0  # emails apart


def test_a_locked_email_counts_nothing_and_the_count_starts_again_after() -> None:
    lockout = AttemptLockout(2, LOCKOUT)
    lockout.attempt("x@acme.example", now=0.0)
    lockout.attempt("x@acme.example", now=0.0)  # locks until 900
    for _ in range(10):
        assert lockout.attempt("x@acme.example", now=10.0) > 0

    assert lockout.attempt("x@acme.example", now=LOCKOUT) == 0.0
    assert lockout.attempt("x@acme.example", now=LOCKOUT) == 0.0  # the second locks again
    assert lockout.attempt("x@acme.example", now=LOCKOUT) == LOCKOUT


def test_a_success_clears_the_count() -> None:
    lockout = AttemptLockout(3, LOCKOUT)
    lockout.attempt("x@acme.example", now=0.0)
    lockout.attempt("x@acme.example", now=0.0)

    lockout.succeeded("x@acme.example")

    assert [lockout.attempt("x@acme.example", now=0.0) for _ in range(3)] == [0.0] * 3
    assert lockout.attempt("x@acme.example", now=0.0) > 0


def test_past_its_cap_the_lockout_forgets_idle_counts_but_keeps_locks() -> None:
    lockout = AttemptLockout(2, LOCKOUT, max_keys=4)
    lockout.attempt("locked@acme.example", now=0.0)
    lockout.attempt("locked@acme.example", now=0.0)
    for n, email in enumerate(("a@x.example", "b@x.example", "c@x.example")):
        lockout.attempt(email, now=float(n + 1))

    lockout.attempt("new@x.example", now=10.0)

    assert len(lockout) < 5
    assert lockout.attempt("locked@acme.example", now=10.0) == LOCKOUT - 10.0


async def test_slots_cap_concurrent_work_and_a_full_queue_is_refused() -> None:
    slots = WorkSlots(2, queue=3)
    started = threading.Semaphore(0)
    release = threading.Event()
    running = most = 0
    counted = threading.Lock()

    def work(n: int) -> int:
        nonlocal running, most
        with counted:
            running += 1
            most = max(most, running)
        started.release()
        release.wait(timeout=30)
        with counted:
            running -= 1
        return n

    calls = [asyncio.create_task(slots.run(work, n)) for n in range(5)]
    # While the first two run, the other three reach the queue (each task runs up to its
    # first wait before this one resumes).
    for _ in range(2):
        assert await asyncio.to_thread(started.acquire, timeout=30)

    with pytest.raises(Busy):
        await slots.run(work, 99)
    release.set()

    assert await asyncio.gather(*calls) == [0, 1, 2, 3, 4]
    assert most == 2
    assert await slots.run(work, 5) == 5  # slots and queue are free again


async def test_a_slot_is_given_back_when_the_work_fails() -> None:
    slots = WorkSlots(1, queue=0)

    def fail() -> None:
        raise ValueError("argon2 said no")

    with pytest.raises(ValueError, match="argon2"):
        await slots.run(fail)

    assert await slots.run(lambda: "free") == "free"
