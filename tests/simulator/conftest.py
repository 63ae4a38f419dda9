"""One simulator for the whole suite, reset and reconfigured before each test.

The keys and credentials here are obviously fake; the simulator accepts any well-formed
ones unless a test configures a list.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

import httpx
import pytest

from lqs.simulator import SimulatorConfig, SimulatorControl, running_simulator

RESEND_KEY = "re_test_simulator_key"
SENDGRID_KEY = "SG.fake-simulator-key"
TWILIO_SID = "AC" + "0123456789abcdef" * 2
TWILIO_TOKEN = "fake_auth_token"

Configure = Callable[..., None]


@pytest.fixture(scope="session")
def simulator_url() -> Iterator[str]:
    """The base URL of a simulator served for the whole test session."""
    with running_simulator() as url:
        yield url


@pytest.fixture(scope="session")
def _control(simulator_url: str) -> Iterator[SimulatorControl]:
    with SimulatorControl(simulator_url) as control:
        yield control


@pytest.fixture(scope="session")
def _http(simulator_url: str) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=simulator_url, timeout=5.0) as http:
        yield http


@pytest.fixture
def sim(_control: SimulatorControl) -> SimulatorControl:
    """The simulator's control client, after a reset to the default configuration.

    The reset also cancels callbacks still due, and no webhook stays registered.
    """
    _control.configure(SimulatorConfig())
    _control.reset()
    _control.clear_webhooks()
    return _control


@pytest.fixture
def configure(sim: SimulatorControl) -> Configure:
    """Replace the simulator's configuration: ``configure(resend={"faults": {...}})``."""

    def apply(**sections: object) -> None:
        sim.configure(SimulatorConfig.model_validate(sections))

    return apply


@pytest.fixture
def client(sim: SimulatorControl, _http: httpx.Client) -> httpx.Client:
    """A plain HTTP client on the simulator, for speaking the wire formats directly."""
    return _http
