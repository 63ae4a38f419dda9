"""Errors the database layer raises. Each one's ``str()`` is one line a user can act on."""

from __future__ import annotations

from lqs.errors import LqsError


class DatabaseError(LqsError):
    """Base class: a database problem with a message that names it and what to do."""


class DatabaseUnavailable(DatabaseError):
    """Raised when the server cannot be reached or refuses the credentials or database."""


class UnsupportedServer(DatabaseError):
    """Raised when the server is older than the oldest PostgreSQL LQS supports (15)."""


class EmbeddedServerError(DatabaseError):
    """Raised when the embedded PostgreSQL cannot be initialised or started."""


class DatabaseNotMigrated(DatabaseError):
    """Raised when LQS's tables are missing because migrations are pending: a fresh database,
    or one not migrated since an upgrade. ``database`` names it as the user would recognise
    it (``embedded at PATH`` or the URL without its password)."""

    def __init__(self, database: str) -> None:
        super().__init__(
            f"this database is not migrated: run `lqs db migrate` (database: {database})"
        )
        self.database = database


class MigrationError(DatabaseError):
    """Raised when a migration cannot be loaded or fails to apply (it is rolled back)."""


class MigrationDrift(MigrationError):
    """Raised when applied migrations no longer match the shipped files (edited or missing)."""


def is_transient(exc: BaseException) -> bool:
    """True when ``exc`` says the database was briefly unusable, not that a statement is wrong.

    Lost or refused connections (a terminated backend, a restart, a failover), a pool with
    no connection to give, a statement cancelled by ``statement_timeout`` or by an
    administrator, serialization failures and deadlocks, too many connections, a server
    shutting down or still starting up: retrying the same work later, on a fresh
    connection, can succeed. psycopg maps all of these (SQLSTATE classes 08, 40, 53, 55,
    57) to ``OperationalError``. Anything else (bad data, a constraint, a bug) would fail
    again the same way.
    """
    # Imported here: the CLI imports this module at start-up, most commands never need it.
    import psycopg
    from psycopg_pool import PoolTimeout, TooManyRequests

    return isinstance(
        exc,
        psycopg.OperationalError
        | psycopg.InterfaceError
        | psycopg.errors.IdleInTransactionSessionTimeout
        | PoolTimeout
        | TooManyRequests
        | DatabaseUnavailable,
    )


def log_fields(exc: BaseException) -> dict[str, str]:
    """How a log line names a database failure: its class, and its message on one line."""
    return {"error": type(exc).__name__, "detail": " ".join(str(exc).split())}
