"""Which addresses the host may connect to for a tenant.

Every URL a tenant can set (a sender's or connector's `base_url`,
`auth_url`, token endpoints, subscription URLs, media) ends in a request
from the operator's network. The policy refuses anything that is not plainly
a global unicast address: loopback, private, link-local (cloud metadata at
169.254.169.254), and every IANA special-purpose range. An IPv6 address that
embeds an IPv4 one (mapped, compatible, NAT64, 6to4) is judged by the IPv4
address inside, since that is where the packet ends up.

It is checked when a URL is stored (a 4xx naming the field) and again inside
the shared HTTP client on every connection, against the addresses the
connection actually uses, so a name that resolves elsewhere later (DNS
rebinding) is refused too. BOTBRIDGE_ALLOW_PRIVATE_URLS lifts it;
BOTBRIDGE_OUTBOUND_ALLOW lists hosts and CIDRs allowed anyway.
"""

from __future__ import annotations

import asyncio
import ipaddress
import json
import re
import socket
from collections.abc import Awaitable, Callable, Iterable, Iterator
from dataclasses import dataclass, field
from urllib.parse import urlsplit

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network
# (family, address) pairs for a host name
Resolver = Callable[[str, int], Awaitable[list[tuple[int, str]]]]


_URL_KEY = re.compile(r"(url|uri|endpoint)s?$", re.IGNORECASE)


class UnsafeURL(ValueError):
    """A URL the policy refuses; the message names no secret."""


# IANA special-purpose registries (IPv4 and IPv6): none of these is a place a
# provider API lives. Ranges that embed an IPv4 address are decided by it first.
_SPECIAL_V4 = tuple(
    ipaddress.IPv4Network(n)
    for n in (
        "0.0.0.0/8",
        "10.0.0.0/8",
        "100.64.0.0/10",
        "127.0.0.0/8",
        "169.254.0.0/16",
        "172.16.0.0/12",
        "192.0.0.0/24",
        "192.0.2.0/24",
        "192.31.196.0/24",
        "192.52.193.0/24",
        "192.88.99.0/24",
        "192.168.0.0/16",
        "192.175.48.0/24",
        "198.18.0.0/15",
        "198.51.100.0/24",
        "203.0.113.0/24",
        "224.0.0.0/4",
        "240.0.0.0/4",
    )
)
_GLOBAL_UNICAST_V6 = ipaddress.IPv6Network("2000::/3")
_SPECIAL_V6 = tuple(
    ipaddress.IPv6Network(n)
    for n in (
        "2001::/23",  # IETF protocol assignments, Teredo among them
        "2001:db8::/32",
        "3fff::/20",
    )
)
_V4_COMPATIBLE = ipaddress.IPv6Network("::/96")
_NAT64 = ipaddress.IPv6Network("64:ff9b::/96")


def embedded_ipv4(ip: ipaddress.IPv6Address) -> ipaddress.IPv4Address | None:
    """The IPv4 address an IPv6 one carries to, if it is one of the forms that do."""
    if ip.ipv4_mapped is not None:
        return ip.ipv4_mapped
    if ip in _V4_COMPATIBLE or ip in _NAT64:
        return ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)
    return ip.sixtofour


def is_public(address: str | IPAddress) -> bool:
    """True only for a plainly global unicast address."""
    ip = address if not isinstance(address, str) else ipaddress.ip_address(address.split("%", 1)[0])
    if isinstance(ip, ipaddress.IPv6Address):
        inner = embedded_ipv4(ip)
        if inner is not None:
            ip = inner
        elif ip not in _GLOBAL_UNICAST_V6 or any(ip in n for n in _SPECIAL_V6):
            return False
    if isinstance(ip, ipaddress.IPv4Address) and any(ip in n for n in _SPECIAL_V4):
        return False
    return ip.is_global and not ip.is_multicast


def check_syntax(url: str) -> tuple[str, int]:
    """(host, port) of an http(s) URL without credentials, else UnsafeURL."""
    parts = urlsplit(url)
    if parts.scheme.lower() not in ("http", "https"):
        raise UnsafeURL("must be an http or https URL")
    if parts.username is not None or parts.password is not None or "@" in parts.netloc:
        raise UnsafeURL("must not carry credentials")
    if not parts.hostname:
        raise UnsafeURL("has no host")
    try:
        port = parts.port or (443 if parts.scheme.lower() == "https" else 80)
    except ValueError:
        raise UnsafeURL("has an invalid port") from None
    return parts.hostname, port


async def system_resolver(host: str, port: int) -> list[tuple[int, str]]:
    infos = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return [(int(family), str(sockaddr[0])) for family, _, _, _, sockaddr in infos]


def parse_allow_list(value: str | None) -> tuple[frozenset[str], tuple[IPNetwork, ...]]:
    """`127.0.0.1/32,fake.local` as (host names, networks); ValueError for a bad entry."""
    hosts: set[str] = set()
    networks: list[IPNetwork] = []
    for item in (value or "").split(","):
        item = item.strip().lower()
        if not item:
            continue
        try:
            networks.append(ipaddress.ip_network(item.strip("[]"), strict=False))
            continue
        except ValueError:
            pass
        if "/" in item or ":" in item or not all(label and len(label) < 64 for label in item.split(".")):
            raise ValueError(f"BOTBRIDGE_OUTBOUND_ALLOW: {item!r} is neither a host name nor a CIDR")
        hosts.add(item.rstrip("."))
    return frozenset(hosts), tuple(networks)


@dataclass(frozen=True)
class OutboundPolicy:
    """What the host may connect to; `resolver` is replaceable for tests."""

    allow_private: bool = False
    allowed_hosts: frozenset[str] = frozenset()
    allowed_networks: tuple[IPNetwork, ...] = ()
    resolver: Resolver = field(default=system_resolver, compare=False)

    @classmethod
    def from_settings(cls, settings: object, resolver: Resolver | None = None) -> OutboundPolicy:
        allow_private = bool(
            getattr(settings, "allow_private_urls", False) or getattr(settings, "allow_private_webhook_urls", False)
        )
        hosts, networks = parse_allow_list(getattr(settings, "outbound_allow", None))
        return cls(allow_private, hosts, networks, resolver or system_resolver)

    def host_allowed(self, host: str) -> bool:
        return self.allow_private or host.lower().rstrip(".").strip("[]") in self.allowed_hosts

    def address_allowed(self, address: str) -> bool:
        ip = ipaddress.ip_address(address.split("%", 1)[0])
        return self.allow_private or is_public(ip) or any(ip in n for n in self.allowed_networks)

    def check_addresses(self, host: str, addresses: Iterable[str]) -> None:
        found = list(addresses)
        if not found:
            raise UnsafeURL(f"host {host!r} does not resolve")
        if not self.host_allowed(host) and not all(self.address_allowed(a) for a in found):
            raise UnsafeURL(f"host {host!r} is a private, loopback, link-local or reserved address")

    async def resolve(self, host: str, port: int) -> list[tuple[int, str]]:
        """Every address of `host`, each checked; UnsafeURL if any is refused."""
        literal = _literal(host)
        if literal is not None:
            family = int(socket.AF_INET6 if literal.version == 6 else socket.AF_INET)
            found: list[tuple[int, str]] = [(family, str(literal))]
        elif self.host_allowed(host):
            return await self.resolver(host, port)
        else:
            try:
                found = await self.resolver(host, port)
            except (OSError, UnicodeError):
                raise UnsafeURL(f"host {host!r} does not resolve") from None
        self.check_addresses(host, [address for _, address in found])
        return found

    async def check_url(self, url: str) -> None:
        """Raise UnsafeURL unless `url` is http(s), carries no credentials and every address is allowed."""
        host, port = check_syntax(url)
        if not self.allow_private:
            await self.resolve(host, port)

    def check_literal(self, url: str) -> None:
        """The checks that need no DNS: syntax, and the host if it is an IP address."""
        host, _ = check_syntax(url)
        literal = _literal(host)
        if literal is not None:
            self.check_addresses(host, [str(literal)])


def _literal(host: str) -> IPAddress | None:
    try:
        return ipaddress.ip_address(host.strip("[]").split("%", 1)[0])
    except ValueError:
        return None


def urls_in(value: object, path: str) -> Iterator[tuple[str, str]]:
    """(field, url) for every string in a config tree under a key that names a URL.

    Keys decide, not values, so a fallback text that happens to be a link is
    not taken for an endpoint.
    """
    if isinstance(value, dict):
        for key, item in value.items():
            if isinstance(item, str) and _URL_KEY.search(str(key)) and item.strip():
                yield f"{path}.{key}", item
            else:
                yield from urls_in(item, f"{path}.{key}")
    elif isinstance(value, list):
        for index, item in enumerate(value):
            yield from urls_in(item, f"{path}[{index}]")


def urls_in_credentials(credentials: str) -> Iterator[tuple[str, str]]:
    """URLs inside JSON credentials (a service-account key names its token endpoint)."""
    try:
        data = json.loads(credentials)
    except (ValueError, RecursionError):
        return
    yield from urls_in(data, "credentials")
