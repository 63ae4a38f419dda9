"""Sending delivery events back: asyncio tasks on the server's loop, one shared HTTP client.

:func:`lqs.simulator.events.schedule_delivery_events` turns an accepted message into
sequences of :class:`Callback`; the :class:`CallbackDispatcher` POSTs each sequence from a
task of its own, at the moments the events happen, with retries, duplicates and re-ordering
as configured, and records every attempt. Request handlers only create tasks, so they never
wait for a receiver. ``close()`` (the app's shutdown) cancels what is still due and closes
the client; ``reset()`` cancels and forgets.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

import httpx

from lqs.simulator.config import CallbacksConfig
from lqs.simulator.records import CallbackAttempt, CallbackEvent

_log = logging.getLogger(__name__)

Signer = Callable[[int], dict[str, str]]
"""The signature headers of a callback for an attempt made at the given unix time."""


@dataclass(frozen=True)
class Callback:
    """One delivery event, ready to POST: fixed body bytes, headers signed per attempt.

    ``event`` says which event it is and where it goes; ``due`` is when the event happens,
    in seconds after its message was accepted.
    """

    event: CallbackEvent
    due: float
    body: bytes
    headers: dict[str, str]
    sign: Signer

    def headers_at(self, unix_time: int) -> dict[str, str]:
        """Every header of an attempt made at ``unix_time``, signature included."""
        return {**self.headers, **self.sign(unix_time)}


MAX_IN_FLIGHT = 16
"""Callback requests open at once, over all receivers."""


class CallbackDispatcher:
    """Delivers scheduled callbacks and remembers every attempt (``attempts``)."""

    def __init__(self, next_id: Callable[[str], str]) -> None:
        self.attempts: list[CallbackAttempt] = []
        self._next_id = next_id
        self._tasks: set[asyncio.Task[None]] = set()
        self._client: httpx.AsyncClient | None = None
        self._slots: asyncio.Semaphore | None = None

    @property
    def pending(self) -> int:
        """How many messages still have callbacks to deliver."""
        return len(self._tasks)

    def schedule(self, sequence: Sequence[Callback], config: CallbacksConfig) -> None:
        """Start delivering one message's events (in their true order) from a new task.

        Must be called on the server's event loop. ``config`` is the timing, retry and
        duplicate policy in force when the message was accepted.
        """
        if not sequence:
            return
        task = asyncio.get_running_loop().create_task(self._deliver_sequence(sequence, config))
        self._tasks.add(task)
        task.add_done_callback(self._forget)

    async def wait(self, seconds: float) -> bool:
        """Wait up to ``seconds`` for every scheduled callback to be done; ``True`` if all are."""
        deadline = time.monotonic() + seconds
        while self._tasks:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return False
            await asyncio.wait(set(self._tasks), timeout=remaining)
        return True

    def reset(self) -> None:
        """Cancel every callback still due and forget every attempt."""
        for task in self._tasks:
            task.cancel()
        self.attempts.clear()

    async def close(self) -> None:
        """Cancel every callback still due, wait for the tasks to end, close the client."""
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        if self._client is not None:
            await self._client.aclose()
            self._client = None

    def _forget(self, task: asyncio.Task[None]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            _log.error("delivery callbacks failed", exc_info=task.exception())

    def _http(self) -> httpx.AsyncClient:
        # Created on first use, on the loop that serves the app: the app may be built in
        # one thread and served in another, and may never send a callback at all.
        if self._client is None:
            self._client = httpx.AsyncClient(
                follow_redirects=False,
                limits=httpx.Limits(
                    max_connections=MAX_IN_FLIGHT, max_keepalive_connections=MAX_IN_FLIGHT
                ),
            )
        return self._client

    def _slot(self) -> asyncio.Semaphore:
        # Requests wait here, not in httpx's pool: a pool with hundreds of waiters spends
        # its time rescanning them (and times them out with PoolTimeout). A real provider
        # also caps the requests it has open to one receiver.
        if self._slots is None:
            self._slots = asyncio.Semaphore(MAX_IN_FLIGHT)
        return self._slots

    async def _deliver_sequence(
        self, sequence: Sequence[Callback], config: CallbacksConfig
    ) -> None:
        loop = asyncio.get_running_loop()
        start = loop.time()
        # Out of order, the events swap places but not moments: the receiver sees the
        # last event first, at the moment the first one happened, and so on.
        order = list(reversed(sequence)) if config.out_of_order else list(sequence)
        for moment, callback in zip((c.due for c in sequence), order, strict=True):
            await asyncio.sleep(max(0.0, start + moment - loop.time()))
            for duplicate in range(config.duplicates + 1):
                await self._deliver(callback, duplicate, config)

    async def _deliver(self, callback: Callback, duplicate: int, config: CallbacksConfig) -> None:
        backoff = config.retry_backoff_seconds
        for attempt in range(1, config.max_attempts + 1):
            if attempt > 1:
                await asyncio.sleep(backoff)
                backoff *= 2
            if await self._attempt(callback, attempt, duplicate, config):
                return

    async def _attempt(
        self, callback: Callback, attempt: int, duplicate: int, config: CallbacksConfig
    ) -> bool:
        status: int | None = None
        error: str | None = None
        async with self._slot():
            sent_at = datetime.now(UTC)
            headers = callback.headers_at(int(sent_at.timestamp()))
            try:
                response = await self._http().post(
                    callback.event.url,
                    content=callback.body,
                    headers=headers,
                    timeout=config.timeout_seconds,
                )
                status = response.status_code
            except httpx.HTTPError as exc:
                error = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
        self.attempts.append(
            CallbackAttempt(
                **callback.event.model_dump(),
                id=self._next_id("cb"),
                attempt=attempt,
                duplicate=duplicate,
                status=status,
                error=error,
                sent_at=sent_at,
                headers=headers,
                body=callback.body.decode("utf-8"),
            )
        )
        return status is not None and 200 <= status < 300
