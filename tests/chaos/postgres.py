"""A PostgreSQL server of the harness's own, so that it may restart it.

``initdb`` in a temporary directory and ``pg_ctl start`` on a free 127.0.0.1 port, with the
binaries ``pgserver`` ships (what ``make test`` installs on a fresh machine), else the
machine's (``pg_config --bindir``, ``/usr/lib/postgresql/*/bin``). PostgreSQL refuses to run
as root: as root, every ``initdb``/``pg_ctl`` runs as the ``pgserver`` system user, exactly
as the ``pgserver`` package does for the embedded server (it creates that user and makes
its own binaries reachable with the same helpers).
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import warnings
from pathlib import Path

SYSTEM_USER = "pgserver"
"""The user the server runs as when the harness runs as root (the one pgserver uses)."""

SUPERUSER = "postgres"
DATABASE = "lqs"
HARNESS_APPLICATION = "chaos-harness"
"""``application_name`` of the harness's own sessions: faults never terminate them."""


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def pgserver_bindir() -> Path:
    """Where the ``pgserver`` package keeps its PostgreSQL binaries."""
    with warnings.catch_warnings():
        # platformdirs warns on import when XDG_RUNTIME_DIR is unset; the fallback is fine.
        warnings.simplefilter("ignore")
        import pgserver

    return Path(pgserver.__file__).parent / "pginstall" / "bin"


def _version(bindir: Path) -> int:
    out = subprocess.run(
        [str(bindir / "postgres"), "--version"], capture_output=True, text=True, check=True
    ).stdout
    found = re.search(r"(\d+)(?:\.\d+)?", out)
    return int(found.group(1)) if found else 0


def find_bindir() -> Path:
    """The directory holding ``initdb``, ``pg_ctl`` and ``postgres``: pgserver's first.

    Raises:
        RuntimeError: no PostgreSQL 15 or newer was found.
    """
    candidates = [pgserver_bindir()]
    with contextlib.suppress(OSError, subprocess.CalledProcessError):
        configured = subprocess.run(
            ["pg_config", "--bindir"], capture_output=True, text=True, check=True
        ).stdout.strip()
        candidates.append(Path(configured))
    candidates += sorted(Path("/usr/lib/postgresql").glob("*/bin"), reverse=True)
    for bindir in candidates:
        if all((bindir / name).is_file() for name in ("initdb", "pg_ctl", "postgres")):
            with contextlib.suppress(OSError, subprocess.CalledProcessError):
                if _version(bindir) >= 15:
                    return bindir
    raise RuntimeError(
        "no PostgreSQL 15+ binaries found (pgserver's pginstall/bin, pg_config --bindir, "
        "/usr/lib/postgresql/*/bin); run make .venv/.installed"
    )


class OwnPostgres:
    """One PostgreSQL server in a temporary directory; ``stop()`` removes everything.

    ``start()`` runs ``initdb`` and starts the server; ``restart()`` is ``pg_ctl restart -m
    fast``; the server log (``log``) is kept until ``stop()`` so that the harness can count
    the statements the server cancelled.
    """

    def __init__(self, bindir: Path | None = None) -> None:
        self.bindir = bindir or find_bindir()
        self.port = free_port()
        self.run_as = SYSTEM_USER if os.geteuid() == 0 else None
        self.root = Path(tempfile.mkdtemp(prefix="lqs-chaos-pg-"))
        self.pgdata = self.root / "data"
        self.log = self.root / "server.log"
        self._ctl_output = self.root / "pg_ctl.out"
        self.started = False

    def url(self, application_name: str = HARNESS_APPLICATION, dbname: str = DATABASE) -> str:
        """A superuser URL on 127.0.0.1 naming the session's ``application_name``."""
        return (
            f"postgresql://{SUPERUSER}@127.0.0.1:{self.port}/{dbname}"
            f"?application_name={application_name}"
        )

    def harness_url(self, dbname: str = DATABASE) -> str:
        """The harness's own URL: its sessions ignore the ``statement_timeout`` it injects."""
        return self.url(dbname=dbname) + "&options=-c%20statement_timeout%3D0"

    def _run(self, *args: str, timeout: float = 90) -> None:
        # pg_ctl's children inherit its stdout: a pipe would keep the call waiting for the
        # server to exit (pgserver's comment says the same), so output goes to a file.
        with self._ctl_output.open("ab") as out:
            done = subprocess.run(
                [str(self.bindir / args[0]), *args[1:]],
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                user=self.run_as,
                cwd=self.root,
                timeout=timeout,
                check=False,
            )
        if done.returncode != 0:
            tail = self._ctl_output.read_text(errors="replace").strip().splitlines()[-8:]
            raise RuntimeError(f"{args[0]} {args[1:]} exited {done.returncode}: {' | '.join(tail)}")

    def _make_reachable(self) -> None:
        """As root: the pgserver user, owning the data directory, able to run the binaries."""
        if self.run_as is None:
            return
        import pwd
        import stat

        pgserver_bindir()  # imports pgserver quietly first
        from pgserver.utils import (
            ensure_folder_permissions,
            ensure_prefix_permissions,
            ensure_user_exists,
        )

        ensure_user_exists(self.run_as)
        if self.bindir == pgserver_bindir():
            # What pgserver does before it runs its own binaries as that user.
            read = stat.S_IRGRP | stat.S_IROTH
            ensure_prefix_permissions(self.bindir)
            ensure_folder_permissions(self.bindir, stat.S_IXGRP | stat.S_IXOTH | read)
            ensure_folder_permissions(self.bindir.parent / "lib", read)
        entry = pwd.getpwnam(self.run_as)
        os.chown(self.root, entry.pw_uid, entry.pw_gid)

    def start(self) -> None:
        """``initdb`` and start the server; create the ``lqs`` database.

        Raises:
            RuntimeError: initdb or pg_ctl failed (with the tail of their output).
        """
        self._make_reachable()
        self._run(
            "initdb", "-D", str(self.pgdata), "-U", SUPERUSER, "--auth=trust",
            "--encoding=UTF8", "--no-sync", "--no-instructions",
        )  # fmt: skip
        with (self.pgdata / "postgresql.conf").open("a") as conf:
            conf.write(
                "\n# lqs chaos harness\n"
                "listen_addresses = '127.0.0.1'\n"
                f"port = {self.port}\n"
                f"unix_socket_directories = '{self.root}'\n"
                "max_connections = 200\n"
                # Restarts here are clean (-m fast) and the data is thrown away afterwards.
                "fsync = off\n"
                "log_line_prefix = '%m [%p] %q%a '\n"
            )
        self._ctl("start")
        self.started = True
        import psycopg

        with psycopg.connect(self.harness_url("postgres"), autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{DATABASE}"'.encode())

    def _ctl(self, action: str, *extra: str) -> None:
        self._run(
            "pg_ctl", "-D", str(self.pgdata), "-l", str(self.log), "-w", "-t", "60",
            *extra, action,
        )  # fmt: skip

    def restart(self) -> float:
        """``pg_ctl restart -m fast``; the seconds it took.

        Raises:
            RuntimeError: pg_ctl failed.
        """
        began = time.monotonic()
        self._ctl("restart", "-m", "fast")
        return time.monotonic() - began

    def log_count(self, text: str) -> int:
        """How many lines of the server log contain ``text``."""
        try:
            with self.log.open(errors="replace") as lines:
                return sum(text in line for line in lines)
        except FileNotFoundError:
            return 0

    def stop(self) -> None:
        """Stop the server (fast, then immediate, then SIGKILL) and remove its directory."""
        try:
            if self.started:
                for mode in ("fast", "immediate"):
                    try:
                        self._run(
                            "pg_ctl", "-D", str(self.pgdata), "-m", mode, "-w", "-t", "30", "stop"
                        )
                        break
                    except (RuntimeError, subprocess.TimeoutExpired):
                        continue
                self._kill_leftover()
        finally:
            shutil.rmtree(self.root, ignore_errors=True)

    def _kill_leftover(self) -> None:
        pidfile = self.pgdata / "postmaster.pid"
        with contextlib.suppress(OSError, ValueError, IndexError):
            pid = int(pidfile.read_text().splitlines()[0])
            os.kill(pid, signal.SIGKILL)
