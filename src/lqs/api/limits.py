"""Request limits: the body-size cap (an ASGI middleware), per-key rate limiting, sign-in
attempts per email, and slots for heavy work (password hashing)."""

from __future__ import annotations

import asyncio
import json
import math
import time
from collections.abc import Callable, Hashable
from dataclasses import dataclass
from typing import Any, TypeVar

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from lqs.api.errors import ApiError

MAX_BODY_BYTES = 1024 * 1024
T = TypeVar("T")


class _BodyTooLarge(Exception):
    pass


class BodySizeLimit:
    """Answer 413 to a request whose body exceeds ``max_bytes``, declared or streamed.

    A declared ``Content-Length`` over the cap is refused before reading; a chunked body is
    counted as it arrives and refused once it passes the cap.
    """

    def __init__(self, app: ASGIApp, max_bytes: int = MAX_BODY_BYTES) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        for name, value in scope.get("headers", []):
            # bytes.isdigit() is ASCII only; over 18 digits is over any limit, and int()
            # would refuse it past 4,300.
            if (
                name == b"content-length"
                and value.isdigit()
                and (len(value) > 18 or int(value) > self.max_bytes)
            ):
                await self._refuse(send)
                return
        received = 0
        response_started = False

        async def counting_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_bytes:
                    raise _BodyTooLarge
            return message

        async def tracking_send(message: Message) -> None:
            nonlocal response_started
            if message["type"] == "http.response.start":
                response_started = True
            await send(message)

        try:
            await self.app(scope, counting_receive, tracking_send)
        except _BodyTooLarge:
            if not response_started:
                await self._refuse(send)

    async def _refuse(self, send: Send) -> None:
        body = json.dumps(
            {
                "error": {
                    "code": "body_too_large",
                    "message": f"request body exceeds {self.max_bytes} bytes",
                    "field": "body",
                }
            }
        ).encode()
        await send(
            {
                "type": "http.response.start",
                "status": 413,
                "headers": [
                    (b"content-type", b"application/json"),
                    (b"content-length", str(len(body)).encode()),
                ],
            }
        )
        await send({"type": "http.response.body", "body": body})


@dataclass
class _Bucket:
    tokens: float
    updated: float


MAX_KEYS = 100_000
"""The most keys a limiter remembers before it forgets those it no longer needs."""


class RateLimiter:
    """A token bucket per key (an API key's id, a client's address), in this process:
    ``limit`` requests a minute, bursting to ``limit``. Several API processes each allow the
    limit (documented). Past :data:`MAX_KEYS` keys, the buckets that have refilled are
    forgotten (a new bucket starts full, so nothing changes for them)."""

    def __init__(self, max_keys: int = MAX_KEYS) -> None:
        self._buckets: dict[Hashable, _Bucket] = {}
        self._max_keys = max_keys

    def acquire(self, key_id: Hashable, limit_per_minute: int, now: float | None = None) -> float:
        """Take one request's token; return 0 if allowed, else seconds until one is free."""
        now = time.monotonic() if now is None else now
        rate = limit_per_minute / 60.0
        bucket = self._buckets.get(key_id)
        if bucket is None:
            if len(self._buckets) >= self._max_keys:
                self._forget_full(now, rate)
            bucket = self._buckets[key_id] = _Bucket(float(limit_per_minute), now)
        bucket.tokens = min(float(limit_per_minute), bucket.tokens + (now - bucket.updated) * rate)
        bucket.updated = now
        if bucket.tokens >= 1.0:
            bucket.tokens -= 1.0
            return 0.0
        return (1.0 - bucket.tokens) / rate

    def _forget_full(self, now: float, rate: float) -> None:
        # A bucket idle for a whole minute has refilled at any limit of at least one a minute.
        idle = max(60.0, 1.0 / rate)
        self._buckets = {k: b for k, b in self._buckets.items() if now - b.updated < idle}

    def __len__(self) -> int:
        return len(self._buckets)


@dataclass
class _Attempts:
    count: int
    locked_until: float
    updated: float


class AttemptLockout:
    """Sign-in attempts per email, known or not, counted as the database counts a known
    user's (:func:`lqs.db.users.count_sign_in_attempt`): the ``max_attempts``-th attempt in
    a row without a success locks the email out for ``lockout_seconds`` (and starts the
    count again); a success clears it. Applied to every email alike, so a lockout says
    nothing about whether an email belongs to a user.

    In this process: past :data:`MAX_KEYS` emails, the counts not locked and idle longest
    are forgotten first.
    """

    def __init__(self, max_attempts: int, lockout_seconds: float, max_keys: int = MAX_KEYS) -> None:
        self._max_attempts = max_attempts
        self._lockout = lockout_seconds
        self._max_keys = max_keys
        self._emails: dict[str, _Attempts] = {}

    def attempt(self, email: str, now: float | None = None) -> float:
        """Count an attempt for ``email`` unless it is locked out: 0 when counted (go on and
        check the password), else the seconds it stays locked (nothing counted)."""
        now = time.monotonic() if now is None else now
        entry = self._emails.get(email)
        if entry is None:
            if len(self._emails) >= self._max_keys:
                self._forget(now)
            entry = self._emails[email] = _Attempts(0, 0.0, now)
        if entry.locked_until > now:
            return entry.locked_until - now
        entry.updated = now
        entry.count += 1
        if entry.count >= self._max_attempts:
            entry.count = 0
            entry.locked_until = now + self._lockout
        return 0.0

    def succeeded(self, email: str) -> None:
        """The password was right: forget the email's count and lockout."""
        self._emails.pop(email, None)

    def _forget(self, now: float) -> None:
        unlocked = sorted(
            (entry.updated, email)
            for email, entry in self._emails.items()
            if entry.locked_until <= now
        )
        for _, email in unlocked[: max(1, len(self._emails) - self._max_keys // 2)]:
            del self._emails[email]

    def __len__(self) -> int:
        return len(self._emails)


class Busy(ApiError):
    """Raised by :meth:`WorkSlots.run` when every slot is taken and the queue is full: 503
    with ``Retry-After`` (callers may answer with a code of their own)."""

    def __init__(self) -> None:
        super().__init__(
            503,
            "busy",
            "too many requests of this kind at once; try again after Retry-After seconds",
            headers=retry_after_header(1),
        )


class WorkSlots:
    """At most ``slots`` calls of CPU- and memory-heavy work (password hashing) at once in
    this process, each in a worker thread; up to ``queue`` more callers wait their turn,
    and any beyond that are refused (:class:`Busy`) instead of piling up."""

    def __init__(self, slots: int, queue: int) -> None:
        self._semaphore = asyncio.Semaphore(slots)
        self._queue = queue
        self._waiting = 0

    async def run(self, work: Callable[..., T], *args: Any) -> T:
        """``work(*args)`` in a worker thread, once a slot is free.

        Raises:
            Busy: all slots are taken and ``queue`` callers already wait.
        """
        if self._semaphore.locked() and self._waiting >= self._queue:
            raise Busy
        self._waiting += 1
        try:
            await self._semaphore.acquire()
        finally:
            self._waiting -= 1
        try:
            return await asyncio.to_thread(work, *args)
        finally:
            self._semaphore.release()


SIGN_INS_PER_ADDRESS_PER_MINUTE = 10
HASHING_SLOTS = 2
"""Password hashes at once per process: argon2id takes 64 MiB and a fifth of a second."""
HASHING_QUEUE = 8
"""Sign-ins that may wait for a hashing slot before more are refused (503)."""


@dataclass
class SignInLimits:
    """What bounds sign-in attempts in this process: per client address (a token bucket),
    per email (:class:`AttemptLockout`), and the password hashing they cost
    (:class:`WorkSlots`)."""

    per_address: RateLimiter
    per_email: AttemptLockout
    hashing: WorkSlots
    per_address_per_minute: int = SIGN_INS_PER_ADDRESS_PER_MINUTE

    @classmethod
    def create(
        cls,
        max_attempts: int,
        lockout_seconds: float,
        *,
        per_address_per_minute: int = SIGN_INS_PER_ADDRESS_PER_MINUTE,
        slots: int = HASHING_SLOTS,
        queue: int = HASHING_QUEUE,
    ) -> SignInLimits:
        """Fresh limits: ``max_attempts`` in a row lock an email out for ``lockout_seconds``."""
        return cls(
            RateLimiter(),
            AttemptLockout(max_attempts, lockout_seconds),
            WorkSlots(slots, queue),
            per_address_per_minute,
        )


def retry_after_header(seconds: float) -> dict[str, str]:
    return {"Retry-After": str(max(1, math.ceil(seconds)))}
