"""Fixtures for the provider adapter tests: the fakes they talk to (``tests.provider_fakes``)."""

from tests.provider_fakes import (  # noqa: F401  (imported to register the fixtures)
    closed_port,
    dns,
    http,
    listener,
    local_server,
    receiver,
    receiver_status,
    recording_transport,
)
