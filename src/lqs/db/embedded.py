"""The embedded PostgreSQL server (the ``pgserver`` package) used when no URL is configured."""

from __future__ import annotations

import os
import subprocess
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lqs.db.errors import EmbeddedServerError


@dataclass
class EmbeddedServer:
    """A running embedded server; ``stop()`` shuts it down once no other process uses it."""

    url: str
    pgdata: Path
    _handle: Any

    def stop(self) -> None:
        """Stop the server unless another LQS process still holds it (pgserver counts users)."""
        self._handle.cleanup()


def bundled_binary(name: str) -> Path:
    """Where the embedded server's package keeps one of PostgreSQL's programs (``psql``);
    the file may be missing on platforms it has no build for."""
    with warnings.catch_warnings():
        # Importing it asks platformdirs for a runtime directory, which warns when
        # XDG_RUNTIME_DIR is unset (containers, CI); nothing here uses that directory.
        warnings.simplefilter("ignore")
        import pgserver

    return Path(pgserver.__file__).parent / "pginstall" / "bin" / name


def _prepare_data_dir(data_dir: Path) -> Path:
    try:
        data_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise EmbeddedServerError(
            f"cannot create data directory {data_dir}: {exc.strerror or exc}; "
            "set LQS_DATA_DIR to a writable directory"
        ) from exc
    if not os.access(data_dir, os.W_OK | os.X_OK):
        raise EmbeddedServerError(
            f"data directory {data_dir} is not writable; set LQS_DATA_DIR to a writable directory"
        )
    return data_dir.resolve() / "pgdata"


def start_embedded(data_dir: Path) -> EmbeddedServer:
    """Start (or attach to) the embedded PostgreSQL whose data lives under ``data_dir``.

    The data directory is created on first use and reused afterwards.

    Raises:
        EmbeddedServerError: the directory is unusable or the server does not start.
    """
    pgdata = _prepare_data_dir(data_dir)
    with warnings.catch_warnings():
        # platformdirs warns when XDG_RUNTIME_DIR is unset; the fallback is fine.
        warnings.simplefilter("ignore")
        from pgserver.postgres_server import get_server

        try:
            handle = get_server(pgdata, cleanup_mode="stop")
        except (subprocess.CalledProcessError, subprocess.TimeoutExpired) as exc:
            raise EmbeddedServerError(
                f"embedded PostgreSQL did not start (see {pgdata / 'log'}); "
                f"remove {pgdata} to start afresh if it is damaged"
            ) from exc
        except OSError as exc:
            raise EmbeddedServerError(
                f"embedded PostgreSQL cannot use {pgdata}: {exc.strerror or exc}; "
                "set LQS_DATA_DIR to a writable local directory"
            ) from exc
    return EmbeddedServer(url=str(handle.get_uri()), pgdata=pgdata, _handle=handle)
