"""The simulator's ASGI app: every provider's routes, the webhook sink and ``/_sim``."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from starlette.applications import Starlette

from lqs.simulator import inspection, push, resend, sendgrid, sink, twilio
from lqs.simulator.config import SimulatorConfig
from lqs.simulator.state import SimulatorState


@asynccontextmanager
async def _lifespan(app: Starlette) -> AsyncIterator[None]:
    yield
    # Callbacks still due die with the server, and their HTTP client is closed.
    state: SimulatorState = app.state.simulator
    await state.callbacks.close()


def create_app(config: SimulatorConfig | None = None) -> Starlette:
    """Build the simulator app; its state (records, configuration) is ``app.state.simulator``.

    Provider paths are the providers' own (``/emails``, ``/v3/mail/send``,
    ``/2010-04-01/Accounts/{sid}/Messages.json``), so an SDK needs only its base URL
    changed; web push is ``/push/{subscription_id}`` and the sink ``/hooks/{name}``.
    Delivery callbacks run on the serving loop; the app's lifespan shutdown cancels them.
    """
    app = Starlette(
        routes=[
            *resend.ROUTES,
            *sendgrid.ROUTES,
            *twilio.ROUTES,
            *push.ROUTES,
            *sink.ROUTES,
            *inspection.ROUTES,
        ],
        lifespan=_lifespan,
    )
    app.state.simulator = SimulatorState(config or SimulatorConfig())
    return app
