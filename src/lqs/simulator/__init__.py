"""A local stand-in for Resend, SendGrid, Twilio, a web-push service and webhook receivers.

It speaks each provider's send API as documented (paths, authentication, validation, status
codes and error bodies), records what it accepts, and injects faults from its configuration,
so that LQS's provider adapters, and the official SDKs, can be tested without the network.
It imports nothing from the rest of ``lqs``: it checks the adapters independently.

- :func:`create_app` builds the ASGI app; :func:`running_simulator` serves one on a free
  port for a test; ``lqs simulate`` serves one from the command line.
- :class:`SimulatorConfig` is the configuration (also ``PUT /_sim/config``).
- :class:`SimulatorControl` is a small client for the ``/_sim`` inspection API.
- After accepting a message, the simulator calls the sender back with the provider's
  signed delivery events (``callbacks`` in the configuration, ``/_sim/webhooks`` to say
  where Resend and SendGrid events go, ``/_sim/callbacks`` to see what was sent).
"""

from lqs.simulator.app import create_app
from lqs.simulator.config import (
    CallbacksConfig,
    EmailOutcomeRule,
    EmailOutcomes,
    Faults,
    HookConfig,
    Latency,
    PushConfig,
    ResendConfig,
    SendGridConfig,
    SimulatorConfig,
    SinkConfig,
    SmsOutcomeRule,
    SmsOutcomes,
    TwilioConfig,
    WebhookRegistration,
    load_config,
)
from lqs.simulator.control import SimulatorControl
from lqs.simulator.records import (
    CallbackAttempt,
    HookDelivery,
    MessageRecord,
    RegisteredWebhook,
    RequestRecord,
)
from lqs.simulator.runner import SimulatorStartError, running_simulator

__all__ = [
    "CallbackAttempt",
    "CallbacksConfig",
    "EmailOutcomeRule",
    "EmailOutcomes",
    "Faults",
    "HookConfig",
    "HookDelivery",
    "Latency",
    "MessageRecord",
    "PushConfig",
    "RegisteredWebhook",
    "RequestRecord",
    "ResendConfig",
    "SendGridConfig",
    "SimulatorConfig",
    "SimulatorControl",
    "SimulatorStartError",
    "SinkConfig",
    "SmsOutcomeRule",
    "SmsOutcomes",
    "TwilioConfig",
    "WebhookRegistration",
    "create_app",
    "load_config",
    "running_simulator",
]
