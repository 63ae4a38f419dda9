"""Where a request to a tenant-supplied URL may connect (the SSRF guard).

A tenant's webhook URL could name our own network: ``http://169.254.169.254/`` (the cloud
metadata service), ``http://localhost:5432/``, or a public name whose DNS answer is a
private address. The guard resolves the host once with :func:`resolve`, refuses any
answer :func:`refusal_reason` names, and connects to the checked address itself with
:func:`pinned`: httpx never resolves the name again, so a DNS answer that changes between
the check and the connection (DNS rebinding) cannot slip through.

A host no resolver could look up (an empty or over-long label: ``http://..../``) is
refused before any lookup, permanently: Python's resolver raises ``UnicodeError`` for
it, and retrying cannot help.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from collections.abc import Iterable
from typing import Any, ClassVar, Self

import httpx

from lqs.domain.delivery import host_problem
from lqs.providers.base import (
    AdapterOptions,
    ClientFactory,
    HttpProvider,
    SendResult,
    refused,
    transport_failure,
)

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

_PRIVATE_IPV4 = tuple(
    ipaddress.IPv4Network(net) for net in ("10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16")
)
_SHARED_ADDRESS_SPACE = ipaddress.IPv4Network("100.64.0.0/10")  # carrier-grade NAT
_UNIQUE_LOCAL = ipaddress.IPv6Network("fc00::/7")
_IPV4_COMPATIBLE = ipaddress.IPv6Network("::/96")
_NAT64 = ipaddress.IPv6Network("64:ff9b::/96")


def embedded_ipv4(address: ipaddress.IPv6Address) -> ipaddress.IPv4Address | None:
    """The IPv4 address an IPv6 address stands for, if it embeds one.

    IPv4-mapped (``::ffff:a.b.c.d``), IPv4-compatible (``::a.b.c.d``), NAT64 well-known
    prefix (``64:ff9b::a.b.c.d``) and 6to4 (``2002:AABB:CCDD::/48``) addresses all reach
    the IPv4 host they embed, so they are checked as that host.
    """
    if address.ipv4_mapped is not None:
        return address.ipv4_mapped
    if address in _NAT64 or (address in _IPV4_COMPATIBLE and int(address) > 1):
        return ipaddress.IPv4Address(int(address) & 0xFFFF_FFFF)
    return address.sixtofour


def refusal_reason(address: IPAddress) -> str | None:
    """Why a tenant-supplied URL must not connect to ``address`` (e.g. ``"loopback"``), or
    None for a public unicast address."""
    if isinstance(address, ipaddress.IPv6Address):
        inner = embedded_ipv4(address)
        if inner is not None:
            reason = refusal_reason(inner)
            return None if reason is None else f"{reason} {inner} in IPv6 form"
    if address.is_unspecified:
        return "unspecified"
    if address.is_loopback:
        return "loopback"
    if address.is_link_local:
        return "link-local"
    if address.is_multicast:
        return "multicast"
    if isinstance(address, ipaddress.IPv4Address):
        if any(address in net for net in _PRIVATE_IPV4):
            return "private"
        if address in _SHARED_ADDRESS_SPACE:
            return "shared address space (carrier-grade NAT)"
    else:
        if address in _UNIQUE_LOCAL:
            return "unique-local"
        if address.is_site_local:
            return "site-local"
    if address.is_reserved:
        return "reserved"
    # Documentation, benchmarking, "this network" and other special-purpose ranges.
    if not address.is_global:
        return "not globally routable"
    return None


async def resolve(host: str, port: int) -> tuple[IPAddress, ...]:
    """The addresses ``host`` resolves to, in the resolver's order of preference, each
    once. An IP literal (in any form the system resolver accepts, e.g. ``2130706433``)
    resolves to itself without a DNS query.

    Raises:
        OSError: the name does not resolve (``socket.gaierror``) or has no address.
        ValueError: the name cannot even be looked up (``UnicodeError`` from the IDNA
            codec for an empty or over-long label; see :func:`host_problem`).
    """
    answers = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
    addresses = dict.fromkeys(
        ipaddress.ip_address(sockaddr[0])
        for family, _, _, _, sockaddr in answers
        if family in (socket.AF_INET, socket.AF_INET6)
    )
    if not addresses:
        raise OSError(f"{host} has no IPv4 or IPv6 address")
    return tuple(addresses)


def pinned(url: httpx.URL, address: IPAddress) -> tuple[httpx.URL, dict[str, str], dict[str, Any]]:
    """The URL, headers and request extensions that make httpx connect to ``address``
    while speaking to ``url``'s host.

    The URL names the address (so httpx resolves nothing); the ``Host`` header keeps the
    original name; for https the ``sni_hostname`` extension makes httpcore send the name
    as SNI and check the certificate against it, not against the address.
    """
    if _is_ip_literal(url.raw_host):
        return url, {}, {}
    headers = {"Host": url.netloc.decode("ascii")}
    extensions: dict[str, Any] = {}
    if url.scheme == "https":
        extensions["sni_hostname"] = url.raw_host.decode("ascii")
        # httpcore pools connections by scheme, address and port only, so a connection
        # whose certificate was checked for one name would be reused for another name on
        # the same address without a check: never keep a pinned TLS connection.
        headers["Connection"] = "close"
    return url.copy_with(host=str(address)), headers, extensions


def _is_ip_literal(raw_host: bytes) -> bool:
    try:
        ipaddress.ip_address(raw_host.decode("ascii"))
    except ValueError:
        return False
    return True


def shown(host: str, address: IPAddress) -> str:
    """``address`` as the URL wrote it, or as the address ``host`` resolves to."""
    try:
        literal = ipaddress.ip_address(host)
    except ValueError:
        return f"{address}, the address of {host}"
    return host if literal == address else f"{address}, the address of {host}"


async def post_pinned(
    http: httpx.AsyncClient,
    url: httpx.URL,
    body: bytes,
    headers: dict[str, str],
    *,
    allow_private: bool,
    allowed_hosts: frozenset[str],
    what: str,
    request_timeout: float | None = None,
    stream: bool = False,
) -> SendResult | httpx.Response:
    """POST to a destination someone else chose, connecting only to checked addresses.

    The host is resolved once; unless ``allow_private`` (or the host is in
    ``allowed_hosts``) every address must be public, else the request is refused
    (``ssrf_refused``, naming the address and ``what`` must reach) without connecting. The
    request then goes to a checked address itself (:func:`pinned`), the next one if it
    cannot be reached, never following redirects and never sending cookies. Returns the
    response (unread if ``stream``), or the result that says why there is none. A host
    that can never resolve (:func:`~lqs.domain.delivery.host_problem`) is ``invalid_url``.
    """
    host = url.raw_host.decode("ascii", "replace")
    problem = host_problem(host)
    if problem is not None:
        return refused("invalid_url", f"{what} must name a host that can exist: {problem}")
    try:
        addresses = await resolve(host, url.port or (443 if url.scheme == "https" else 80))
    except OSError as exc:
        return transport_failure(httpx.ConnectError(f"cannot resolve {host}: {exc}"))
    except ValueError as exc:  # UnicodeError: a name the resolver cannot even encode
        return refused("invalid_url", f"cannot look up {host!r}: {exc}")
    if not allow_private and host.lower().rstrip(".") not in allowed_hosts:
        for address in addresses:
            reason = refusal_reason(address)
            if reason is not None:
                return refused(
                    "ssrf_refused",
                    f"refusing to connect to {shown(host, address)} ({reason}): "
                    f"{what} must reach a public address",
                )
    failure: httpx.ConnectError | None = None
    # Every address was checked; if one cannot be reached (say IPv6 without a route) the
    # next is tried, as a connection to the name itself would.
    for address in addresses:
        target, pinning, extensions = pinned(url, address)
        request = http.build_request(
            "POST",
            target,
            content=body,
            headers={**headers, **pinning},
            extensions=extensions,
            timeout=(request_timeout if request_timeout is not None else httpx.USE_CLIENT_DEFAULT),
        )
        # One client serves every tenant: never pass one destination's cookies to another.
        request.headers.pop("cookie", None)
        try:
            return await http.send(request, follow_redirects=False, stream=stream)
        except httpx.ConnectError as exc:
            failure = exc
        except httpx.HTTPError as exc:
            return transport_failure(exc)
    assert failure is not None  # resolve() returns at least one address
    return transport_failure(failure)


class PinnedProvider(HttpProvider):
    """An adapter whose destinations its tenants choose (webhook URLs, push endpoints): it
    posts only through :func:`post_pinned`.

    ``allow_private`` lets destinations reach loopback and private addresses (the local
    simulator); ``allowed_hosts`` exempts the named hosts from the address check only.
    """

    destinations: ClassVar[str]
    """What the destinations are called in a refusal (``"webhook URLs"``)."""

    def __init__(
        self,
        http: httpx.AsyncClient,
        *,
        allow_private: bool = False,
        allowed_hosts: Iterable[str] = (),
    ) -> None:
        super().__init__(http)
        self._allow_private = allow_private
        self._allowed_hosts = frozenset(host.lower().rstrip(".") for host in allowed_hosts)

    @classmethod
    def build(cls, clients: ClientFactory, options: AdapterOptions) -> Self:
        # The request goes to the address that was checked: a proxy from the environment
        # would check the certificate against that address instead of the host name.
        return cls(clients(trust_env=False), allow_private=options.allow_private)

    async def _post_pinned(
        self,
        url: httpx.URL,
        body: bytes,
        headers: dict[str, str],
        *,
        request_timeout: float | None = None,
        stream: bool = False,
    ) -> SendResult | httpx.Response:
        """The destination's answer (unread if ``stream``); or why there is none."""
        return await post_pinned(
            self._http,
            url,
            body,
            headers,
            allow_private=self._allow_private,
            allowed_hosts=self._allowed_hosts,
            what=self.destinations,
            request_timeout=request_timeout,
            stream=stream,
        )
