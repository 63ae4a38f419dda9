"""Fixtures for the provider adapter tests: the fakes they talk to (``tests.provider_fakes``)."""

from tests.provider_fakes import closed_port, http  # noqa: F401  (imported to register the fixtures)
