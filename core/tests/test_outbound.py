"""The outbound-URL policy: which addresses count as public, and the URL checks."""

from __future__ import annotations

import ipaddress

import pytest
from hypothesis import given
from hypothesis import strategies as st

from botbridge.outbound import OutboundPolicy, UnsafeURL, is_public, parse_allow_list

pytestmark = pytest.mark.anyio

PRIVATE = [
    "127.0.0.1",
    "10.1.2.3",
    "172.16.0.1",
    "192.168.1.1",
    "169.254.169.254",
    "100.64.0.1",
    "0.0.0.0",  # noqa: S104
    "192.0.0.8",
    "192.0.0.9",
    "192.0.0.170",
    "192.0.2.1",
    "198.18.0.1",
    "198.51.100.7",
    "203.0.113.9",
    "192.88.99.1",
    "224.0.0.1",
    "240.0.0.1",
    "255.255.255.255",
    "::1",
    "::",
    "::ffff:127.0.0.1",
    "::7f00:1",  # IPv4-compatible 127.0.0.1
    "::a9fe:a9fe",  # IPv4-compatible 169.254.169.254
    "64:ff9b::7f00:1",  # NAT64 of 127.0.0.1
    "64:ff9b::a9fe:a9fe",
    "64:ff9b:1::1",  # local-use NAT64
    "2002:7f00:1::1",  # 6to4 of 127.0.0.1
    "2002:a9fe:a9fe::1",
    "2001::1",  # Teredo
    "2001:db8::1",
    "3fff::1",
    "fc00::1",
    "fd12:3456::1",
    "fe80::1",
    "fec0::1",
    "ff02::1",
    "100::1",
    "::ffff:0:7f00:1",  # IPv4-translated
    "5f00::1",
]
PUBLIC = ["8.8.8.8", "1.1.1.1", "2606:4700:4700::1111", "2a00:1450:4001::200e", "64:ff9b::808:808", "2002:808:808::1"]


@pytest.mark.parametrize("address", PRIVATE)
def test_special_purpose_addresses_are_not_public(address: str) -> None:
    assert not is_public(address)


@pytest.mark.parametrize("address", PUBLIC)
def test_global_unicast_addresses_are_public(address: str) -> None:
    assert is_public(address)


@given(st.ip_addresses(v=4))
def test_an_ipv4_address_is_judged_the_same_embedded_in_ipv6(ip: ipaddress.IPv4Address) -> None:
    expected = is_public(ip)
    mapped = ipaddress.IPv6Address(f"::ffff:{ip}")
    nat64 = ipaddress.IPv6Address(int(ipaddress.IPv6Address("64:ff9b::")) | int(ip))
    sixtofour = ipaddress.IPv6Address((0x2002 << 112) | (int(ip) << 80) | 1)
    assert is_public(mapped) == is_public(nat64) == is_public(sixtofour) == expected


@given(st.ip_addresses())
def test_nothing_python_calls_non_global_is_public(ip: ipaddress.IPv4Address | ipaddress.IPv6Address) -> None:
    if is_public(ip):
        assert ip.is_global


def stub(table: dict[str, list[str]]):  # type: ignore[no-untyped-def]
    async def resolve(host: str, port: int) -> list[tuple[int, str]]:
        if host not in table:
            raise OSError("no such host")
        return [(10 if ":" in a else 2, a) for a in table[host]]

    return resolve


@pytest.mark.parametrize(
    ("url", "reason"),
    [
        ("ftp://example.com/x", "http or https"),
        ("file:///etc/passwd", "http or https"),
        ("http://user:pw@example.com/", "credentials"),
        ("http://user@example.com/", "credentials"),
        ("http://127.0.0.1:8080/", "private"),
        ("http://[::1]:8080/", "private"),
        ("http://[::7f00:1]/", "private"),
        ("http://[64:ff9b::7f00:1]/", "private"),
        ("http://[2002:7f00:1::1]/", "private"),
        ("http://192.0.0.8/", "private"),
        ("http://localhost:9/", "private"),
        ("http://metadata.test/", "private"),
        ("http://mixed.test/", "private"),
        ("http://nowhere.test/", "does not resolve"),
        ("http://example.com:99999/", "port"),
    ],
)
async def test_check_url_refuses(url: str, reason: str) -> None:
    policy = OutboundPolicy(
        resolver=stub(
            {
                "localhost": ["127.0.0.1", "::1"],
                "metadata.test": ["169.254.169.254"],
                "mixed.test": ["8.8.8.8", "10.0.0.1"],  # one bad address is enough
                "example.com": ["93.184.215.14"],
            }
        )
    )
    with pytest.raises(UnsafeURL, match=reason):
        await policy.check_url(url)


async def test_check_url_passes_public_hosts() -> None:
    policy = OutboundPolicy(resolver=stub({"example.com": ["93.184.215.14", "2606:2800:21f:cb07:6820:80da:af6b:8b2c"]}))
    await policy.check_url("https://example.com/v1")
    await policy.check_url("http://8.8.8.8/")


async def test_the_allow_list_admits_named_hosts_and_networks_only() -> None:
    hosts, networks = parse_allow_list("127.0.0.1/32, Fake.Local ,[::1]")
    policy = OutboundPolicy(
        allowed_hosts=hosts,
        allowed_networks=networks,
        resolver=stub({"fake.local": ["10.9.9.9"], "other.local": ["10.9.9.9"], "localhost": ["127.0.0.1"]}),
    )
    await policy.check_url("http://127.0.0.1:8000/")
    await policy.check_url("http://[::1]:8000/")
    await policy.check_url("http://fake.local/")
    await policy.check_url("http://localhost/")  # resolves into an allowed network
    for url in ("http://127.0.0.2/", "http://other.local/", "http://10.0.0.1/"):
        with pytest.raises(UnsafeURL):
            await policy.check_url(url)


def test_a_bad_allow_list_entry_is_refused() -> None:
    with pytest.raises(ValueError, match="BOTBRIDGE_OUTBOUND_ALLOW"):
        parse_allow_list("10.0.0.0/33")
    with pytest.raises(ValueError, match="BOTBRIDGE_OUTBOUND_ALLOW"):
        parse_allow_list("http://x")


async def test_allow_private_lifts_the_address_check_but_not_the_syntax() -> None:
    policy = OutboundPolicy(allow_private=True, resolver=stub({}))
    await policy.check_url("http://127.0.0.1/")
    await policy.check_url("http://nowhere.test/")
    with pytest.raises(UnsafeURL):
        await policy.check_url("gopher://127.0.0.1/")
    with pytest.raises(UnsafeURL):
        await policy.check_url("http://a:b@127.0.0.1/")
