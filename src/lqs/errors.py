"""Every error LQS raises on purpose, under one root.

Our exception hierarchy:

* LqsError
  + ConfigurationError
    - ProviderConfigError (ValueError)
    - DeliverySettingsError (ValueError)
    - RulesError (ValueError)
  + InputError
    - LeadValidationError (ValueError)
    - CsvFileError
    - CsvHeaderError
    - TemplateError
    - InvalidUnsubscribeToken (ValueError)
    - InvalidToken (ValueError)
    - InvalidCursor (ValueError)
    - IdempotencyConflict
    - WebhookRejected
    - WebhookMalformed
    - WeakPassword (ValueError)
    - ErasureRequestError (ValueError)
    - SubjectQueryError (ValueError)
  + DatabaseError
    - DatabaseUnavailable
    - UnsupportedServer
    - EmbeddedServerError
    - DatabaseNotMigrated
    - MigrationError
      · MigrationDrift
    - ClientNotFound
    - ClientExists
    - UserNotFound
    - UserExists
  + ApiError
    - SignInRequired
    - SessionEnded
    - Busy

A name in parentheses is a second base kept for callers that catch it. Each class lives
with the code that raises it (``lqs.db.errors``, ``lqs.domain.scoring``, ...); only the
root and two of the groups live here (``DatabaseError`` is ``lqs.db.errors``'s; ``ApiError``,
an HTTP request refused with a status and a code, is ``lqs.api.errors``'s). This
module sits outside the layers, as ``lqs.config`` does: any layer may import it, the
simulator may not.

Every error's ``str()`` names the problem in one line; ``action``, when set, says what
the operator should do about it. The CLI prints both as ``error: <message>; <action>``
and exits 1 (see :func:`lqs.cli.main`).
"""

from __future__ import annotations


class LqsError(Exception):
    """Root of every error LQS raises on purpose.

    ``action``: what the operator should do (None: the message already says it, or there
    is nothing to do but read it). A subclass may set a class-wide default.
    """

    action: str | None = None

    def __init__(self, *args: object, action: str | None = None) -> None:
        super().__init__(*args)
        if action is not None:
            self.action = action

    def one_line(self) -> str:
        """The message and, when there is one, the action: ``<message>; <action>``."""
        message = " ".join(str(self).split()) or type(self).__name__
        return f"{message}; {self.action}" if self.action else message


class ConfigurationError(LqsError):
    """A setting or a client's stored configuration (delivery settings, scoring rules,
    provider credentials) is missing or unusable."""


class InputError(LqsError):
    """Something given to LQS (a lead, a file, a template, a token, a webhook request, an
    idempotency key) is not acceptable; the message says what is wrong with it."""
