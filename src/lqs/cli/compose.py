"""The composition root: the one place that turns :class:`lqs.config.Settings` into what
the API and the worker run with.

Below this module nothing falls back on a default of its own: ``create_app`` takes an
:class:`~lqs.api.app.ApiConfig` and ``run_worker`` a :class:`~lqs.worker.run.WorkerConfig`,
every field of them set here from a setting (``tests/unit/test_settings_reach.py`` holds each
``LQS_*`` variable to it).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from typing import TYPE_CHECKING

from lqs.config import Settings
from lqs.domain.unsubscribe import UnsubscribeLinks
from lqs.errors import ConfigurationError

if TYPE_CHECKING:
    from lqs.api.app import ApiConfig
    from lqs.api.tokens import TokenVerifier
    from lqs.worker.dispatcher import DispatcherOptions
    from lqs.worker.run import WorkerConfig

WORKER_SPARE_CONNECTIONS = 4
"""The worker's pool holds this many connections beyond one per batch in flight: the
dispatcher's claims and outcomes, its next-due check, the event applier and the heartbeat."""


@dataclass(frozen=True)
class AdminConfig:
    """What the administrative commands (``lqs db ...``) take from the settings."""

    connect_timeout: int
    migration_lock_timeout: float


def admin_config(settings: Settings) -> AdminConfig:
    """The administrative commands' configuration."""
    return AdminConfig(
        connect_timeout=settings.connect_timeout,
        migration_lock_timeout=settings.migration_lock_timeout,
    )


def unsubscribe_links(settings: Settings) -> UnsubscribeLinks | None:
    """The unsubscribe link signer, if a secret is configured.

    Raises:
        ConfigurationError: LQS_UNSUBSCRIBE_SECRET cannot sign (too short).
    """
    if settings.unsubscribe_secret is None:
        return None
    try:
        return UnsubscribeLinks(
            settings.unsubscribe_secret.get_secret_value(),
            settings.public_base_url,
            timedelta(days=settings.unsubscribe_ttl_days),
        )
    except ValueError as exc:
        raise ConfigurationError(f"LQS_UNSUBSCRIBE_SECRET: {exc}") from None


def token_verifier(settings: Settings) -> TokenVerifier | None:
    """The users' token verifier, if a JWT secret or a JWKS URL is configured.

    Raises:
        ConfigurationError: LQS_JWT_SECRET is too short.
    """
    from lqs.api.tokens import TokenVerifier

    if settings.jwt_secret is None and settings.jwks_url is None:
        return None
    try:
        return TokenVerifier(
            secret=settings.jwt_secret.get_secret_value() if settings.jwt_secret else None,
            jwks_url=settings.jwks_url,
            ttl_seconds=settings.jwt_ttl,
        )
    except ValueError as exc:
        raise ConfigurationError(f"LQS_JWT_SECRET: {exc}") from None


def csrf_key(settings: Settings) -> bytes:
    """The key signing the dashboard's CSRF tokens: derived from LQS_JWT_SECRET, so every
    API process signs alike. Without it, a random key per process (a form then verifies
    only on the process that rendered it; without that secret lqs's own sign-in, which
    issues HS256 tokens, is off anyway)."""
    import secrets

    from lqs.api.browser_session import derive_csrf_key

    if settings.jwt_secret is None:
        return secrets.token_bytes(32)
    return derive_csrf_key(settings.jwt_secret.get_secret_value())


def api_config(settings: Settings) -> ApiConfig:
    """The API's configuration.

    Raises:
        ConfigurationError: a setting is unusable (see :func:`unsubscribe_links`).
    """
    # Imported here: the web stack is most of the CLI's start-up time, and other commands
    # (a CSV import, say) need none of it.
    from lqs.api.app import ApiConfig
    from lqs.api.deps import WebhookConfig
    from lqs.api.readiness import ReadinessOptions

    return ApiConfig(
        pool_min_size=settings.pool_min_size,
        pool_max_size=settings.pool_max_size,
        webhook_pool_max_size=settings.webhook_pool_max_size,
        connect_timeout=settings.connect_timeout,
        pool_timeout=settings.api_pool_timeout,
        statement_timeout=settings.api_statement_timeout or None,
        api_key_cache_seconds=settings.api_key_cache_seconds,
        webhook=WebhookConfig(settings.public_base_url, settings.webhook_tolerance),
        unsubscribe_links=unsubscribe_links(settings),
        tokens=token_verifier(settings),
        csrf_key=csrf_key(settings),
        readiness=ReadinessOptions(
            require_worker=settings.readyz_require_worker,
            worker_max_age=settings.readyz_worker_max_age,
        ),
    )


def dispatcher_options(settings: Settings) -> DispatcherOptions:
    """The dispatcher's options.

    Raises:
        ConfigurationError: a setting is unusable (see :func:`unsubscribe_links`).
    """
    # Imported here: the providers pull in HTTP and crypto libraries other commands skip.
    from lqs.domain.delivery import RetryPolicy
    from lqs.worker.dispatcher import DispatcherOptions

    return DispatcherOptions(
        batch_size=settings.dispatch_batch_size,
        concurrency=settings.dispatch_concurrency,
        lease_seconds=settings.dispatch_lease_seconds,
        timeout=settings.dispatch_timeout,
        policy=RetryPolicy(
            base_delay=settings.dispatch_retry_base_delay,
            max_delay=max(settings.dispatch_retry_max_delay, settings.dispatch_retry_base_delay),
            horizon=settings.dispatch_retry_horizon,
        ),
        limits=dict(settings.provider_limits),
        failover_cooldown=settings.dispatch_failover_cooldown,
        allow_private_webhooks=settings.allow_private_webhooks,
        unsubscribe=unsubscribe_links(settings),
    )


def worker_config(settings: Settings) -> WorkerConfig:
    """The worker's configuration. Its pool holds at least
    ``LQS_WORKER_IN_FLIGHT`` + :data:`WORKER_SPARE_CONNECTIONS` connections, whatever
    ``LQS_POOL_MAX_SIZE`` says: fewer would stall the batches in flight.

    Raises:
        ConfigurationError: a setting is unusable (see :func:`unsubscribe_links`).
    """
    from lqs.worker.run import WorkerConfig

    return WorkerConfig(
        batch_size=settings.worker_batch_size,
        in_flight=settings.worker_in_flight,
        park_after=settings.worker_park_after,
        poll_interval=settings.worker_poll_interval,
        settle=settings.dispatch_settle,
        shutdown_grace=settings.worker_shutdown_grace,
        pool_min_size=settings.pool_min_size,
        pool_max_size=max(
            settings.pool_max_size, settings.worker_in_flight + WORKER_SPARE_CONNECTIONS
        ),
        connect_timeout=settings.connect_timeout,
        # The embedded server (no LQS_DATABASE_URL) needs no direct URL.
        direct_url=settings.direct_database_url if settings.database_url else None,
        dispatcher=dispatcher_options(settings),
    )
