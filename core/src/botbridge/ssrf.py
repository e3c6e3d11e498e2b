"""Refuse webhook URLs that point inside the operator's network.

Checked when a subscription is created and again before every delivery
(DNS can change in between). BOTBRIDGE_ALLOW_PRIVATE_WEBHOOK_URLS lifts it.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from urllib.parse import urlsplit


class UnsafeURL(ValueError):
    pass


def _is_public(address: str) -> bool:
    ip = ipaddress.ip_address(address.split("%", 1)[0])
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return ip.is_global and not ip.is_multicast


def check_syntax(url: str) -> tuple[str, int]:
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https"):
        raise UnsafeURL("url must be http or https")
    if not parts.hostname:
        raise UnsafeURL("url has no host")
    if parts.username or parts.password:
        raise UnsafeURL("url must not carry credentials")
    try:
        port = parts.port or (443 if parts.scheme == "https" else 80)
    except ValueError:
        raise UnsafeURL("url has an invalid port") from None
    return parts.hostname, port


async def check_url(url: str, *, allow_private: bool) -> None:
    """Raise UnsafeURL unless every address the host resolves to is public."""
    host, port = check_syntax(url)
    if allow_private:
        return
    try:
        infos = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except socket.gaierror:
        raise UnsafeURL(f"host {host!r} does not resolve") from None
    addresses = {info[4][0] for info in infos}
    if not addresses or not all(_is_public(str(a)) for a in addresses):
        raise UnsafeURL("url resolves to a private, loopback or link-local address")
