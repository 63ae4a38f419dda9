"""Settings: one object, read from ``LQS_*`` environment variables and an optional ``.env``."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


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
    data_dir: Path = Field(
        default=Path(".lqs"), description="Where the embedded server keeps its data"
    )
    pool_min_size: int = Field(default=1, ge=0)
    pool_max_size: int = Field(default=10, ge=1)
    connect_timeout: int = Field(default=10, ge=1, description="Seconds to wait for a connection")
    worker_batch_size: int = Field(default=100, ge=1, le=10_000)
    worker_in_flight: int = Field(
        default=2, ge=1, le=16, description="Batches the worker processes at once"
    )
    worker_poll_interval: float = Field(
        default=5.0, gt=0, description="Seconds between polls when no NOTIFY arrives"
    )


def load_settings() -> Settings:
    """Read settings from the environment (and ``.env``)."""
    return Settings()
