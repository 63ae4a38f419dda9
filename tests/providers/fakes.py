"""What the provider adapter tests talk to instead of the internet, and their fixtures.

A recording ASGI app served by uvicorn on 127.0.0.1, a resolver the test controls, a
transport that only records, and sockets that never answer or are not listening. The
fixtures reach the tests through ``tests/providers/conftest.py``; a module changes what
the receiver answers by default by overriding ``receiver_status``.
"""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass, field
from typing import Any, NamedTuple

import httpx
import pytest
import uvicorn

# --- a receiver that records requests and answers as told ----------------------------


@dataclass
class Received:
    path: str
    headers: dict[str, str]
    body: bytes


@dataclass
class RecordingApp:
    """An ASGI app: records each request and answers ``status``, ``headers``, ``body``.
    With ``hang`` it answers only once ``released`` is set; with ``drip`` it sends the
    status and then body chunks every ``drip`` seconds until ``released`` is set.
    ``reset`` forgets the requests and goes back to answering ``default_status``."""

    default_status: int = 200
    requests: list[Received] = field(default_factory=list)
    status: int = field(init=False)
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes = b""
    hang: bool = False
    drip: float | None = None
    released: asyncio.Event = field(default_factory=asyncio.Event)

    def __post_init__(self) -> None:
        self.status = self.default_status

    def reset(self) -> None:
        self.requests.clear()
        self.status, self.headers, self.body = self.default_status, {}, b""
        self.hang, self.drip = False, None
        self.released = asyncio.Event()

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        assert scope["type"] == "http"
        body, more = b"", True
        while more:
            event = await receive()
            body += event.get("body", b"")
            more = event.get("more_body", False)
        self.requests.append(
            Received(scope["path"], {k.decode(): v.decode() for k, v in scope["headers"]}, body)
        )
        if self.hang:
            await self.released.wait()
        headers = [(k.encode(), v.encode()) for k, v in self.headers.items()]
        await send({"type": "http.response.start", "status": self.status, "headers": headers})
        while self.drip is not None and not self.released.is_set():
            await send({"type": "http.response.body", "body": b"x" * 16384, "more_body": True})
            await asyncio.sleep(self.drip)
        await send({"type": "http.response.body", "body": self.body})


@asynccontextmanager
async def serving(app: Any, **tls: Any) -> AsyncIterator[int]:
    """Run ``app`` on 127.0.0.1 (with ``ssl_certfile``/``ssl_keyfile``: TLS); yields the
    port."""
    # A socket that listens before the server starts: connections wait in its backlog, so
    # nothing has to wait for the server to be up.
    sock = socket.create_server(("127.0.0.1", 0))
    server = uvicorn.Server(uvicorn.Config(app, lifespan="off", log_level="warning", **tls))
    task = asyncio.create_task(server.serve(sockets=[sock]))
    try:
        yield sock.getsockname()[1]
    finally:
        server.should_exit = True
        await task
        sock.close()


class LocalServer(NamedTuple):
    app: RecordingApp
    port: int


@pytest.fixture(scope="module")
def receiver_status() -> int:
    """The status the receiver and the recording transport answer unless told otherwise."""
    return 200


@pytest.fixture(scope="module")
async def local_server(receiver_status: int) -> AsyncIterator[LocalServer]:
    """A ``RecordingApp`` served on 127.0.0.1 for the whole module."""
    app = RecordingApp(default_status=receiver_status)
    async with serving(app) as port:
        yield LocalServer(app, port)


@pytest.fixture
async def receiver(local_server: LocalServer) -> AsyncIterator[RecordingApp]:
    """The module's ``RecordingApp``, reset; a request it holds is released afterwards."""
    app = local_server.app
    app.reset()
    yield app
    app.released.set()


# --- a resolver the tests control ----------------------------------------------------


class FakeDns:
    """Answers for the names in ``answers`` (addresses, or an error to raise); other names
    and literals go to the real resolver. ``asked`` lists the faked names looked up."""

    def __init__(self, real: Any) -> None:
        self._real = real
        self.answers: dict[str, list[str] | OSError] = {}
        self.asked: list[str] = []

    async def getaddrinfo(self, host: Any, port: Any, *args: Any, **kwargs: Any) -> Any:
        name = host.decode() if isinstance(host, bytes) else host
        if name not in self.answers:
            return await self._real(host, port, *args, **kwargs)
        self.asked.append(name)
        answer = self.answers[name]
        if isinstance(answer, OSError):
            raise answer
        return [
            (socket.AF_INET6, socket.SOCK_STREAM, 6, "", (a, port, 0, 0))
            if ":" in a
            else (socket.AF_INET, socket.SOCK_STREAM, 6, "", (a, port))
            for a in answer
        ]


@pytest.fixture
async def dns(monkeypatch: pytest.MonkeyPatch) -> FakeDns:
    """A ``FakeDns`` in place of the event loop's resolver for this test."""
    loop = asyncio.get_running_loop()
    fake = FakeDns(loop.getaddrinfo)
    monkeypatch.setattr(loop, "getaddrinfo", fake.getaddrinfo)
    return fake


# --- clients --------------------------------------------------------------------------


@pytest.fixture(scope="module")
async def http() -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(timeout=5.0) as client:
        yield client


@pytest.fixture
async def recording_transport(
    receiver_status: int,
) -> AsyncIterator[tuple[httpx.AsyncClient, list[httpx.Request]]]:
    """A client whose transport only records and answers ``receiver_status``: nothing can
    leave the test."""
    seen: list[httpx.Request] = []

    def handle(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(receiver_status)

    async with httpx.AsyncClient(transport=httpx.MockTransport(handle)) as client:
        yield client, seen


# --- ports that refuse, sockets that never answer -------------------------------------


@pytest.fixture
def closed_port() -> int:
    """A port on 127.0.0.1 that nothing listens on."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
    return port


@contextmanager
def silent_socket(host: str) -> Iterator[socket.socket]:
    """A socket listening on ``host`` that nothing accepts from: a connection attempt
    leaves a connection in its backlog (see ``was_connected``)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.create_server((host, 0), family=family) as sock:
        sock.setblocking(False)
        yield sock


@pytest.fixture
def listener() -> Iterator[socket.socket]:
    """A ``silent_socket`` on 127.0.0.1."""
    with silent_socket("127.0.0.1") as sock:
        yield sock


def was_connected(sock: socket.socket) -> bool:
    """Whether anything connected to the ``silent_socket`` (consumes one connection)."""
    try:
        connection, _ = sock.accept()
    except BlockingIOError:
        return False
    connection.close()
    return True
