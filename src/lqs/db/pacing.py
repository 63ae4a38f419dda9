"""Pacing for long batched maintenance (retention, erasure): after each batch, wait a
multiple of the time the batch took, so that the pipeline sharing the database keeps its
pace; a ``stop`` event ends the run between batches."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable, Iterator


class _Stopped(Exception):
    """``stop`` was set: the run ends after its last whole batch."""


@contextlib.contextmanager
def stoppable() -> Iterator[None]:
    """The block of a paced run: it ends quietly when a :class:`Pacer` in it was stopped."""
    with contextlib.suppress(_Stopped):
        yield


class Pacer:
    """After each batch: tell ``after_batch``, then wait ``idle_ratio`` times as long as
    the batch took (since the pacer was made, or since the last wait ended), or until
    ``stop`` (then the run ends: see :func:`stoppable`)."""

    def __init__(
        self,
        idle_ratio: float,
        after_batch: Callable[[], None] = lambda: None,
        stop: asyncio.Event | None = None,
    ) -> None:
        self._idle_ratio = idle_ratio
        self._after_batch = after_batch
        self._stop = stop or asyncio.Event()
        self._started = time.monotonic()

    async def batch_done(self) -> None:
        self._after_batch()
        idle = (time.monotonic() - self._started) * self._idle_ratio
        if self._stop.is_set():
            raise _Stopped
        if idle > 0:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stop.wait(), idle)
            if self._stop.is_set():
                raise _Stopped
        self._started = time.monotonic()
