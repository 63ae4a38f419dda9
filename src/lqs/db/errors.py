"""Errors the database layer raises. Each one's ``str()`` is one line a user can act on."""

from __future__ import annotations


class DatabaseError(Exception):
    """Base class: a database problem with a message that names it and what to do."""


class DatabaseUnavailable(DatabaseError):
    """Raised when the server cannot be reached or refuses the credentials or database."""


class UnsupportedServer(DatabaseError):
    """Raised when the server is older than the oldest PostgreSQL LQS supports (15)."""


class EmbeddedServerError(DatabaseError):
    """Raised when the embedded PostgreSQL cannot be initialised or started."""


class MigrationError(DatabaseError):
    """Raised when a migration cannot be loaded or fails to apply (it is rolled back)."""


class MigrationDrift(MigrationError):
    """Raised when applied migrations no longer match the shipped files (edited or missing)."""
