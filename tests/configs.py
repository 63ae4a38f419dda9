"""Configurations for tests, in one line each, built by the composition root.

``api_config(pool_max_size=4)`` is the API's configuration from the default settings with
those fields replaced; ``worker_config(dispatcher=DispatcherOptions(...))`` likewise for
the worker. Going through :mod:`lqs.cli.compose` keeps tests on the defaults a deployment
gets, with no second set of defaults to drift.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from pydantic_settings import BaseSettings

from lqs.api.app import ApiConfig
from lqs.cli import compose
from lqs.config import Settings
from lqs.worker.run import WorkerConfig


class _Given(Settings):
    """Settings from the arguments alone: no ``LQS_*`` variable, no ``.env``."""

    @classmethod
    def settings_customise_sources(
        cls, settings_cls: type[BaseSettings], init_settings: Any, *_: Any, **__: Any
    ) -> tuple[Any, ...]:
        return (init_settings,)


def default_settings(**values: Any) -> Settings:
    """The settings a deployment gets from an empty environment, with ``values`` set."""
    return _Given(**values)


def api_config(**fields: Any) -> ApiConfig:
    """The API's configuration from the default settings, with ``fields`` replaced."""
    return dataclasses.replace(compose.api_config(default_settings()), **fields)


def worker_config(**fields: Any) -> WorkerConfig:
    """The worker's configuration from the default settings, with ``fields`` replaced."""
    return dataclasses.replace(compose.worker_config(default_settings()), **fields)
