"""Every ``LQS_*`` variable reaches the object that uses it.

Each variable Settings reads is set to a distinctive value in the environment; the
settings are loaded as the CLI loads them and composed as the CLI composes them
(:mod:`lqs.cli.compose`), and each value is found where it is used: the API's
configuration, the worker's (its pool, its processor, its dispatcher), the
administrative commands', or where the database is found. A setting added without a
line here fails the first test.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from lqs.api.app import ApiConfig
from lqs.cli import compose
from lqs.cli._common import database_url, session_url
from lqs.config import ProviderLimits, Settings, load_settings
from lqs.db.connection import transaction_pooled
from lqs.db.errors import EmbeddedServerError
from lqs.domain.delivery import RetryPolicy
from lqs.errors import ConfigurationError
from lqs.worker.dispatcher import DispatcherOptions
from lqs.worker.run import WorkerConfig
from tests.configs import default_settings

URL = "postgresql://reach@pooled.example:6000/reach"
DIRECT = "postgresql://reach@direct.example:5432/reach"
SECRET = "a-distinctive-unsubscribe-secret-of-40-chars"
JWT_SECRET = "a-distinctive-jwt-secret-of-at-least-32-chars"


@dataclass(frozen=True)
class Composed:
    settings: Settings
    api: ApiConfig
    worker: WorkerConfig
    admin: compose.AdminConfig
    url: str
    """What ``database_url(settings)`` yields."""
    pooled: bool
    """Whether that URL was declared to go through a transaction pooler."""


# variable -> (value in the environment, where it must arrive, the value expected there)
REACH: dict[str, tuple[str, Callable[[Composed], Any], Any]] = {
    "LQS_DATABASE_URL": (URL, lambda c: c.url, URL),
    "LQS_DATABASE_POOLER": ("transaction", lambda c: c.pooled, True),
    "LQS_DIRECT_DATABASE_URL": (
        DIRECT,
        lambda c: (c.worker.direct_url, session_url(c.settings, c.url)),
        (DIRECT, DIRECT),
    ),
    # LQS_DATA_DIR is only read without LQS_DATABASE_URL: its own test below.
    "LQS_DATA_DIR": ("reach-data", lambda c: c.settings.data_dir, Path("reach-data")),
    "LQS_POOL_MIN_SIZE": (
        "3",
        lambda c: (c.api.pool_min_size, c.worker.pool_min_size),
        (3, 3),
    ),
    "LQS_POOL_MAX_SIZE": (
        "17",
        lambda c: (c.api.pool_max_size, c.worker.pool_max_size),
        (17, 17),
    ),
    "LQS_CONNECT_TIMEOUT": (
        "13",
        lambda c: (c.api.connect_timeout, c.worker.connect_timeout, c.admin.connect_timeout),
        (13, 13, 13),
    ),
    "LQS_MIGRATION_LOCK_TIMEOUT": ("41.5", lambda c: c.admin.migration_lock_timeout, 41.5),
    "LQS_WEBHOOK_POOL_MAX_SIZE": ("6", lambda c: c.api.webhook_pool_max_size, 6),
    "LQS_API_POOL_TIMEOUT": ("4.25", lambda c: c.api.pool_timeout, 4.25),
    "LQS_API_STATEMENT_TIMEOUT": ("7.75", lambda c: c.api.statement_timeout, 7.75),
    "LQS_API_KEY_CACHE_SECONDS": ("2.5", lambda c: c.api.api_key_cache_seconds, 2.5),
    "LQS_READYZ_REQUIRE_WORKER": ("false", lambda c: c.api.readiness.require_worker, False),
    "LQS_READYZ_WORKER_MAX_AGE": ("44", lambda c: c.api.readiness.worker_max_age, 44.0),
    "LQS_WORKER_BATCH_SIZE": ("123", lambda c: c.worker.batch_size, 123),
    "LQS_WORKER_IN_FLIGHT": ("7", lambda c: c.worker.in_flight, 7),
    "LQS_WORKER_POLL_INTERVAL": ("2.5", lambda c: c.worker.poll_interval, 2.5),
    "LQS_WORKER_PARK_AFTER": ("9", lambda c: c.worker.park_after, 9),
    "LQS_WORKER_SHUTDOWN_GRACE": ("12.5", lambda c: c.worker.shutdown_grace, 12.5),
    "LQS_DISPATCH_BATCH_SIZE": ("55", lambda c: c.worker.dispatcher.batch_size, 55),
    "LQS_DISPATCH_CONCURRENCY": ("21", lambda c: c.worker.dispatcher.concurrency, 21),
    "LQS_DISPATCH_LEASE_SECONDS": ("66.5", lambda c: c.worker.dispatcher.lease_seconds, 66.5),
    "LQS_DISPATCH_TIMEOUT": ("14.5", lambda c: c.worker.dispatcher.timeout, 14.5),
    "LQS_DISPATCH_RETRY_BASE_DELAY": (
        "11",
        lambda c: c.worker.dispatcher.policy.base_delay,
        11.0,
    ),
    "LQS_DISPATCH_RETRY_MAX_DELAY": ("1234", lambda c: c.worker.dispatcher.policy.max_delay, 1234),
    "LQS_DISPATCH_RETRY_HORIZON": ("5678", lambda c: c.worker.dispatcher.policy.horizon, 5678),
    "LQS_DISPATCH_FAILOVER_COOLDOWN": (
        "31.5",
        lambda c: c.worker.dispatcher.failover_cooldown,
        31.5,
    ),
    "LQS_DISPATCH_SETTLE": ("1.5", lambda c: c.worker.settle, 1.5),
    "LQS_PROVIDER_LIMITS": (
        json.dumps({"resend": {"rate": 7.5, "concurrency": 3}}),
        lambda c: dict(c.worker.dispatcher.limits),
        {"resend": ProviderLimits(rate=7.5, concurrency=3)},
    ),
    "LQS_ALLOW_PRIVATE_WEBHOOKS": (
        "true",
        lambda c: c.worker.dispatcher.allow_private_webhooks,
        True,
    ),
    "LQS_PUBLIC_BASE_URL": (
        "https://reach.example:8443",
        lambda c: (c.api.webhook.public_base_url, _links(c).base_url),
        ("https://reach.example:8443", "https://reach.example:8443"),
    ),
    "LQS_UNSUBSCRIBE_SECRET": (
        SECRET,
        lambda c: (_secret(c.api.unsubscribe_links), _secret(c.worker.dispatcher.unsubscribe)),
        (SECRET, SECRET),
    ),
    "LQS_UNSUBSCRIBE_TTL_DAYS": ("17", lambda c: _links(c).ttl, timedelta(days=17)),
    "LQS_WEBHOOK_TOLERANCE": ("123.5", lambda c: c.api.webhook.tolerance, 123.5),
    "LQS_JWT_SECRET": (JWT_SECRET, lambda c: c.api.tokens._secret, JWT_SECRET),
    "LQS_JWKS_URL": (
        "https://reach.example/auth/v1/.well-known/jwks.json",
        lambda c: c.api.tokens._jwks._url,
        "https://reach.example/auth/v1/.well-known/jwks.json",
    ),
    "LQS_JWT_TTL": ("901", lambda c: c.api.tokens.ttl_seconds, 901),
}


def _links(c: Composed) -> Any:
    """The API's unsubscribe link signer (the dispatcher's is built the same way)."""
    return c.api.unsubscribe_links


def _secret(links: Any) -> str:
    return str(links._secret)


def _variable(field: str) -> str:
    return "LQS_" + field.upper()


@pytest.fixture
def environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> pytest.MonkeyPatch:
    """No ``LQS_*`` variable and no ``.env`` but what a test sets."""
    monkeypatch.chdir(tmp_path)
    for field in Settings.model_fields:
        monkeypatch.delenv(_variable(field), raising=False)
    return monkeypatch


def test_every_setting_has_a_destination_here() -> None:
    assert sorted(REACH) == sorted(_variable(field) for field in Settings.model_fields)


def test_every_variable_reaches_the_object_that_uses_it(
    environment: pytest.MonkeyPatch,
) -> None:
    for variable, (value, _, _) in REACH.items():
        environment.setenv(variable, value)
    settings = load_settings()

    with database_url(settings) as url:
        composed = Composed(
            settings=settings,
            api=compose.api_config(settings),
            worker=compose.worker_config(settings),
            admin=compose.admin_config(settings),
            url=url,
            pooled=transaction_pooled(url),
        )

    arrived = {variable: where(composed) for variable, (_, where, _) in REACH.items()}
    assert arrived == {variable: expected for variable, (_, _, expected) in REACH.items()}


def test_the_data_directory_is_where_the_embedded_server_starts(
    environment: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("not a directory")
    environment.setenv("LQS_DATA_DIR", str(blocker / "data"))

    with pytest.raises(EmbeddedServerError, match="a-file/data"), database_url(load_settings()):
        pass


def test_the_workers_pool_holds_its_batches_in_flight_and_three_more() -> None:
    config = compose.worker_config(default_settings(pool_max_size=2, worker_in_flight=5))

    assert config.pool_max_size == 5 + compose.WORKER_SPARE_CONNECTIONS


def test_the_dispatchers_own_defaults_are_the_settings_defaults() -> None:
    # DispatcherOptions keeps defaults for tests that build one by hand; they must not
    # drift from what a deployment gets.
    assert compose.dispatcher_options(default_settings()) == DispatcherOptions()
    assert compose.dispatcher_options(default_settings()).policy == RetryPolicy()


def test_a_short_jwt_secret_is_a_configuration_error() -> None:
    with pytest.raises(ConfigurationError, match="LQS_JWT_SECRET"):
        compose.api_config(default_settings(jwt_secret="short"))


def test_without_a_jwt_secret_or_jwks_url_the_api_verifies_no_tokens() -> None:
    assert compose.api_config(default_settings()).tokens is None


def test_an_unusable_unsubscribe_secret_is_a_configuration_error() -> None:
    with pytest.raises(ConfigurationError, match="LQS_UNSUBSCRIBE_SECRET"):
        compose.api_config(default_settings(unsubscribe_secret="short"))
