"""Running the simulator on a free local port in a background thread (for tests)."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

import uvicorn

from lqs.simulator.app import create_app
from lqs.simulator.config import SimulatorConfig


class SimulatorStartError(RuntimeError):
    """Raised when the simulator's server does not start within the allowed time."""


@contextmanager
def running_simulator(
    config: SimulatorConfig | None = None,
    *,
    host: str = "127.0.0.1",
    startup_timeout: float = 10.0,
) -> Iterator[str]:
    """Serve a new simulator on ``host`` and a free port; yield its base URL, then stop it.

    The URL is usable as soon as this yields. Requests still hanging (injected timeouts
    and hangs) and delivery callbacks still due are cancelled on exit.

    Raises:
        SimulatorStartError: the server did not start within ``startup_timeout`` seconds.
    """
    server = uvicorn.Server(
        uvicorn.Config(
            create_app(config),
            host=host,
            port=0,
            loop="asyncio",
            lifespan="on",
            log_level="warning",
            access_log=False,
            timeout_graceful_shutdown=1,
        )
    )
    thread = threading.Thread(target=server.run, name="lqs-simulator", daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + startup_timeout
        while not server.started:
            if not thread.is_alive() or time.monotonic() > deadline:
                raise SimulatorStartError(f"the simulator did not start on {host}")
            time.sleep(0.01)
        port = server.servers[0].sockets[0].getsockname()[1]
        yield f"http://{host}:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=startup_timeout)
