"""A local stand-in for Resend, SendGrid, Twilio, a web-push service and webhook receivers.

It speaks each provider's send API as documented (paths, authentication, validation, status
codes and error bodies), records what it accepts, and injects faults from its configuration,
so that LQS's provider adapters, and the official SDKs, can be tested without the network.
It imports nothing from the rest of ``lqs``: it checks the adapters independently.

- :func:`create_app` builds the ASGI app; :func:`running_simulator` serves one on a free
  port for a test; ``lqs simulate`` serves one from the command line.
- :class:`SimulatorConfig` is the configuration (also ``PUT /_sim/config``).
- :class:`SimulatorControl` is a small client for the ``/_sim`` inspection API.
"""

from lqs.simulator.app import create_app
from lqs.simulator.config import (
    Faults,
    HookConfig,
    Latency,
    PushConfig,
    ResendConfig,
    SendGridConfig,
    SimulatorConfig,
    SinkConfig,
    TwilioConfig,
    load_config,
)
from lqs.simulator.control import SimulatorControl
from lqs.simulator.records import HookDelivery, MessageRecord, RequestRecord
from lqs.simulator.runner import SimulatorStartError, running_simulator

__all__ = [
    "Faults",
    "HookConfig",
    "HookDelivery",
    "Latency",
    "MessageRecord",
    "PushConfig",
    "RequestRecord",
    "ResendConfig",
    "SendGridConfig",
    "SimulatorConfig",
    "SimulatorControl",
    "SimulatorStartError",
    "SinkConfig",
    "TwilioConfig",
    "create_app",
    "load_config",
    "running_simulator",
]
