"""PgBouncer in transaction mode in front of the test server: what Supabase's pooled URL
(Supavisor or PgBouncer on port 6543) is.

Debian's ``pgbouncer`` binary is started on a free local port with the settings Supabase
uses or recommends: ``pool_mode = transaction``, no prepared statements kept across
transactions (``max_prepared_statements = 0`` on releases that have the setting; older
ones never keep them), ``ignore_startup_parameters = extra_float_digits,options``, and no
reset between clients, so a session setting really does reach the next client. A small
``default_pool_size`` makes clients share server connections.
"""

from __future__ import annotations

import os
import pwd
import re
import shutil
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from psycopg import conninfo

INSTALL_HINT = (
    "pgbouncer is not installed: run `apt-get install -y pgbouncer` as root "
    "(`make test` does when it can) to run the transaction pooler tests"
)


def pgbouncer_binary() -> str | None:
    """The pgbouncer executable (PATH, or Debian's /usr/sbin, often missing from PATH)."""
    found = shutil.which("pgbouncer")
    if found:
        return found
    debian = Path("/usr/sbin/pgbouncer")
    return str(debian) if os.access(debian, os.X_OK) else None


def _version(binary: str) -> tuple[int, int]:
    out = subprocess.run([binary, "--version"], capture_output=True, text=True, check=False)
    found = re.search(r"PgBouncer (\d+)\.(\d+)", out.stdout + out.stderr)
    return (int(found.group(1)), int(found.group(2))) if found else (0, 0)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _accepting(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
    except OSError:
        return False
    return True


@dataclass
class PgBouncer:
    """A running pgbouncer: ``url(backend_url)`` is that URL reached through it."""

    port: int
    workdir: Path
    process: subprocess.Popen[bytes]

    def url(self, backend_url: str) -> str:
        """``backend_url`` (same user and database) through the pooler."""
        parts = conninfo.conninfo_to_dict(backend_url)
        return conninfo.make_conninfo(
            "",
            host="127.0.0.1",
            port=str(self.port),
            user=str(parts.get("user") or ""),
            dbname=str(parts.get("dbname") or "postgres"),
        )

    def log(self) -> str:
        path = self.workdir / "pgbouncer.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


def _unprivileged_user(host: str) -> str:
    """Who pgbouncer becomes when started as root: the owner of the server's socket
    directory (the embedded server's is private to it), else ``nobody``."""
    if host.startswith("/"):
        return pwd.getpwuid(Path(host).stat().st_uid).pw_name
    return "nobody"


def start_pgbouncer(
    binary: str, backend_url: str, workdir: Path, *, port: int | None = None, pool_size: int = 2
) -> PgBouncer:
    """Start pgbouncer in transaction mode in front of ``backend_url``'s server (every
    database, as ``backend_url``'s user, trusted) and wait until it accepts connections.

    Raises:
        RuntimeError: it did not start (its log is in the message).
    """
    backend = conninfo.conninfo_to_dict(backend_url)
    host = str(backend.get("host") or "/var/run/postgresql")
    user = str(backend.get("user") or "postgres")
    port = port or _free_port()
    workdir.mkdir(parents=True, exist_ok=True)
    lines = [
        "[databases]",
        f"* = host={host} port={backend.get('port') or 5432}",
        "[pgbouncer]",
        "listen_addr = 127.0.0.1",
        f"listen_port = {port}",
        "unix_socket_dir =",
        "auth_type = trust",
        f"auth_file = {workdir / 'users.txt'}",
        "pool_mode = transaction",
        f"default_pool_size = {pool_size}",
        "max_client_conn = 1000",
        "ignore_startup_parameters = extra_float_digits,options",
        # After a refused server login PgBouncer refuses every client for this long (15 s
        # by default): tests that end an outage want the next request to get through.
        "server_login_retry = 1",
        # A client waits this long for a server connection (120 s by default) while the
        # server refuses them: the outage tests would each wait that long for their 503.
        "query_wait_timeout = 10",
        f"logfile = {workdir / 'pgbouncer.log'}",
        f"pidfile = {workdir / 'pgbouncer.pid'}",
    ]
    if _version(binary) >= (1, 21):
        lines.append("max_prepared_statements = 0")
    run_as = _unprivileged_user(host) if os.geteuid() == 0 else None
    if run_as:
        lines.append(f"user = {run_as}")  # pgbouncer refuses to run as root
    (workdir / "users.txt").write_text(f'"{user}" ""\n')
    config = workdir / "pgbouncer.ini"
    config.write_text("\n".join(lines) + "\n")
    if run_as:
        for path in (workdir, *workdir.iterdir()):
            shutil.chown(path, run_as)
    process = subprocess.Popen(
        [binary, str(config)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    bouncer = PgBouncer(port, workdir, process)
    deadline = time.monotonic() + 15
    while not _accepting(port):
        if process.poll() is not None or time.monotonic() > deadline:
            bouncer.stop()
            raise RuntimeError(f"pgbouncer did not start: {bouncer.log()[-2000:]}")
        time.sleep(0.05)
    return bouncer


def main(argv: list[str]) -> int:
    """``python -m tests.pgbouncer BACKEND_URL WORKDIR [PORT] [POOL_SIZE]``: start pgbouncer
    (left running; its pid is in WORKDIR/pgbouncer.pid) and print the pooled URL."""
    binary = pgbouncer_binary()
    if binary is None:
        print(INSTALL_HINT, file=sys.stderr)
        return 1
    backend, workdir = argv[0], Path(argv[1])
    port = int(argv[2]) if len(argv) > 2 else None
    pool_size = int(argv[3]) if len(argv) > 3 else 2
    bouncer = start_pgbouncer(binary, backend, workdir, port=port, pool_size=pool_size)
    print(bouncer.url(backend))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
