"""Settings: one object, read from ``LQS_*`` environment variables and an optional ``.env``."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict


class ProviderLimits(BaseModel):
    """Per-process send limits for one provider: ``rate``, requests per second (None:
    unlimited), and ``concurrency``, requests at once. The dispatcher's
    :class:`lqs.worker.limits.ProviderLimiter` enforces them.

    Raises ValueError (pydantic's ValidationError) for a rate not above 0 or a
    concurrency below 1.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    rate: float | None = None
    concurrency: int = Field(default=16, le=1_000)

    @model_validator(mode="after")
    def _sensible(self) -> ProviderLimits:
        if (self.rate is not None and self.rate <= 0) or self.concurrency < 1:
            raise ValueError("rate must be positive (or None) and concurrency at least 1")
        return self


DATA_DIR_NAME = ".lqs"
"""The embedded server's data directory, when LQS_DATA_DIR does not name one."""


def find_data_dir(start: Path | None = None) -> Path:
    """The data directory for a command run in ``start`` (default: the current folder): the
    first ``.lqs`` directory in ``start`` or a folder above it, as git finds ``.git``, so a
    command run from a subfolder uses the project's database rather than creating a
    second, empty one. None found, or the current folder no longer exists: ``.lqs``
    relative to the current folder (created on first use)."""
    try:
        folder = (start or Path.cwd()).absolute()
    except OSError:  # the current folder was removed
        return Path(DATA_DIR_NAME)
    for candidate in (f / DATA_DIR_NAME for f in (folder, *folder.parents)):
        if os.path.isdir(candidate):  # never raises, unlike Path.is_dir on older Pythons
            return candidate
    return Path(DATA_DIR_NAME)


class Settings(BaseSettings):
    """Everything LQS reads from its environment.

    ``database_url`` unset means: start the embedded PostgreSQL under ``data_dir``.
    """

    model_config = SettingsConfigDict(
        env_prefix="LQS_", env_file=".env", env_file_encoding="utf-8", extra="ignore"
    )

    database_url: str | None = Field(
        default=None, description="PostgreSQL URL; unset starts the embedded server"
    )
    database_pooler: Literal["transaction", "session", "none"] | None = Field(
        default=None,
        description="How LQS_DATABASE_URL reaches the server: 'transaction' (PgBouncer or "
        "Supavisor in transaction mode: no prepared statements, only transaction-local "
        "settings, and migrations and LISTEN need LQS_DIRECT_DATABASE_URL), 'session' (a "
        "session-mode pooler) or 'none' (direct). Unset: detected from the URL, where port "
        "6543, or a host ending in pooler.supabase.com on a port other than 5432, means "
        "'transaction'",
    )
    direct_database_url: str | None = Field(
        default=None,
        description="A URL with sessions of its own (Supabase's direct or session-mode URL) "
        "for what a transaction pooler cannot carry: migrations (their advisory lock) and "
        "the worker's LISTEN; only read with LQS_DATABASE_URL",
    )
    data_dir: Path = Field(
        default_factory=find_data_dir,
        description="Where the embedded server keeps its data. Unset: the first `.lqs` "
        "directory found in the current folder or one above it (as git finds `.git`), "
        "else `./.lqs`",
    )
    pool_min_size: int = Field(
        default=1, ge=0, description="Connections each pool (the API's, the worker's) keeps open"
    )
    pool_max_size: int = Field(
        default=10,
        ge=1,
        description="Connections the API's main pool and the worker's pool may open; the "
        "worker's holds at least LQS_WORKER_IN_FLIGHT + 4 whatever this says",
    )
    connect_timeout: int = Field(
        default=10, ge=1, description="Seconds to wait for a new database connection"
    )
    migration_lock_timeout: float = Field(
        default=60.0,
        gt=0,
        description="Seconds `lqs db migrate` waits for another run's migration lock before "
        "failing with the holding session's pid, application, client and state",
    )
    webhook_pool_max_size: int = Field(
        default=5,
        ge=1,
        description="The API's separate pool for delivery webhooks and unsubscribe clicks, "
        "so they cannot starve lead intake",
    )
    api_pool_timeout: float = Field(
        default=5.0, gt=0, le=60, description="Seconds a request waits for a connection (then 503)"
    )
    api_key_cache_seconds: float = Field(
        default=5.0,
        ge=0,
        le=5,
        description="Seconds each API process remembers who an API key speaks for (a key "
        "revoked elsewhere is refused at most this much later); 0: look it up every time",
    )
    api_statement_timeout: float = Field(
        default=5.0,
        ge=0,
        le=600,
        description="Seconds one statement of the API may run, lock waits included, before "
        "it is cancelled and the request answered 503; 0: the server's setting",
    )
    readyz_require_worker: bool = Field(
        default=True,
        description="/readyz also requires a live worker heartbeat (false for an API "
        "deployed without workers)",
    )
    readyz_worker_max_age: float = Field(
        default=30.0, gt=0, description="Seconds since a worker's heartbeat before it is stale"
    )
    worker_batch_size: int = Field(default=100, ge=1, le=10_000)
    worker_in_flight: int = Field(
        default=2, ge=1, le=16, description="Batches the worker processes at once"
    )
    worker_poll_interval: float = Field(
        default=5.0, gt=0, description="Seconds between polls when no NOTIFY arrives"
    )
    worker_park_after: int = Field(
        default=3, ge=1, le=100, description="Failed processing attempts before a lead is parked"
    )
    worker_shutdown_grace: float = Field(
        default=30.0, ge=0, description="Seconds a stopping worker retries recording outcomes"
    )
    dispatch_batch_size: int = Field(
        default=100, ge=1, le=1_000, description="Communications claimed per dispatcher claim"
    )
    dispatch_concurrency: int = Field(
        default=32, ge=1, le=1_000, description="Provider requests in flight per worker"
    )
    dispatch_lease_seconds: float = Field(
        default=60.0, gt=0, description="How long a claim holds a communication"
    )
    dispatch_timeout: float = Field(
        default=15.0, gt=0, le=120, description="Seconds before a provider request times out"
    )
    dispatch_retry_base_delay: float = Field(default=30.0, gt=0, description="First backoff cap")
    dispatch_retry_max_delay: float = Field(default=3_600.0, gt=0, description="Backoff cap")
    dispatch_retry_horizon: float = Field(
        default=23 * 3_600.0,
        gt=0,
        description="No retry is scheduled later than this many seconds after creation "
        "(inside Resend's 24 h idempotency window by default)",
    )
    dispatch_failover_cooldown: float = Field(
        default=30.0, gt=0, description="Seconds before a failing primary is tried again"
    )
    dispatch_settle: float = Field(
        default=0.0,
        ge=0,
        description="With --once, also wait for retries falling due within this many seconds",
    )
    provider_limits: dict[str, ProviderLimits] = Field(
        default_factory=dict,
        description='Per provider, per process, e.g. {"resend": {"rate": 5, "concurrency": 4}}',
    )
    allow_private_webhooks: bool = Field(
        default=False,
        description="Let outbound webhooks reach loopback and private addresses (local testing)",
    )
    public_base_url: str = Field(
        default="http://127.0.0.1:8000",
        pattern=r"^https?://[^\s/?#]+$",
        description="The API's public URL (scheme, host, port): unsubscribe links and "
        "Twilio's signed callback URLs are built on it; https makes the dashboard's "
        "cookies Secure even on requests a TLS-terminating proxy forwards over http",
    )
    unsubscribe_secret: SecretStr | None = Field(
        default=None,
        description="Key signing unsubscribe links (32+ characters); unset: emails carry "
        "no List-Unsubscribe and POST /u/{token} answers 503",
    )
    unsubscribe_ttl_days: int = Field(
        default=60, ge=1, le=3_650, description="How long an unsubscribe link stays valid"
    )
    jwt_secret: SecretStr | None = Field(
        default=None,
        description="HS256 key for users' tokens (32+ characters; Supabase's legacy JWT "
        "secret): verifies bearer tokens and signs those lqs's own sign-in issues. Unset, "
        "with LQS_JWKS_URL unset too: the tenant API and the dashboard answer 503",
    )
    jwks_url: str | None = Field(
        default=None,
        pattern=r"^https?://\S+$",
        description="A JWKS (Supabase's signing keys: .../auth/v1/.well-known/jwks.json) "
        "whose RS256/ES256 keys verify users' tokens",
    )
    jwt_ttl: int = Field(
        default=3_600, ge=60, le=86_400, description="Seconds a token from lqs's sign-in lasts"
    )
    webhook_tolerance: float = Field(
        default=300.0, gt=0, le=3_600, description="Seconds a signed webhook timestamp may be off"
    )


def load_settings() -> Settings:
    """Read settings from the environment (and ``.env``)."""
    return Settings()
