"""``lqs simulate``: serve the provider simulator (Resend, SendGrid, Twilio, web push, sink)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
import uvicorn
from pydantic import ValidationError

from lqs.cli._common import console, fail


def simulate(
    host: Annotated[str, typer.Option(help="Address to listen on")] = "127.0.0.1",
    port: Annotated[int, typer.Option(min=0, max=65535)] = 8025,
    config_file: Annotated[
        Path | None,
        typer.Option(
            "--config",
            help="JSON or YAML simulator configuration (keys, refused recipients, faults)",
            exists=True,
            dir_okay=False,
            readable=True,
        ),
    ] = None,
) -> None:
    """Serve the provider simulator until interrupted; point provider base URLs at it."""
    # Imported here: other commands need not load the simulator.
    from lqs.simulator import SimulatorConfig, create_app, load_config

    config = SimulatorConfig()
    if config_file is not None:
        try:
            config = load_config(config_file)
        except ValidationError as exc:
            first = exc.errors()[0]
            where = ".".join(str(part) for part in first["loc"]) or "(root)"
            fail(f"{config_file}: {where}: {first['msg']}")
        except (OSError, ValueError) as exc:
            fail(f"{config_file}: {exc}")
    console.print(f"Provider simulator on http://{host}:{port} (inspect at /_sim/messages)")
    uvicorn.run(
        create_app(config),
        host=host,
        port=port,
        log_level="warning",
        access_log=False,
        timeout_graceful_shutdown=2,
    )
