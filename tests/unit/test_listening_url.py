"""The URL ``lqs serve`` announces: the host asked for, the port the socket got."""

from __future__ import annotations

import socket

from lqs.cli.run import listening_url


def test_the_port_is_the_one_the_system_chose() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]

        assert listening_url("127.0.0.1", [sock]) == f"http://127.0.0.1:{port}"


def test_an_ipv6_host_is_bracketed() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]

        assert listening_url("::1", [sock]) == f"http://[::1]:{port}"
