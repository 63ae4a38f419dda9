"""Fixtures for the provider adapter tests: the fakes they talk to (``tests.providers.fakes``)
and the provider simulator (``lqs.simulator``), served once per test module."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

import httpx
import pytest

from lqs.simulator import SimulatorConfig, SimulatorControl, running_simulator
from tests.providers.fakes import (  # noqa: F401  (imported to register the fixtures)
    closed_port,
    dns,
    http,
    listener,
    local_server,
    receiver,
    receiver_status,
    recording_transport,
)
from tests.providers.simulated import CLIENT_TIMEOUT


@pytest.fixture(scope="module")
def simulator() -> Iterator[str]:
    with running_simulator(SimulatorConfig(seed=11)) as base_url:
        yield base_url


@pytest.fixture(scope="module")
def _control(simulator: str) -> Iterator[SimulatorControl]:
    with SimulatorControl(simulator) as control:
        yield control


@pytest.fixture
def sim(_control: SimulatorControl) -> SimulatorControl:
    """The simulator's control client, reset to the default configuration."""
    _control.configure(SimulatorConfig())
    _control.reset()
    return _control


@pytest.fixture(scope="module")
async def impatient() -> AsyncIterator[httpx.AsyncClient]:
    """A client that gives up long before an injected hang ends."""
    async with httpx.AsyncClient(timeout=CLIENT_TIMEOUT) as client:
        yield client
