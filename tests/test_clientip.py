"""Client IP resolution through trusted proxies (design.md 5.2)."""

from __future__ import annotations

import ipaddress

import pytest

from gateway.http.clientip import client_ip, in_networks, parse_address
from gateway.ingress.plan import plan_source
from gateway.ratelimit.memory import MemoryLimiter
from tests.support import build_config, config_dict, payments_source

PROXIES = [ipaddress.ip_network("10.0.0.0/8"), ipaddress.ip_network("fd00::/8")]


def ip(text):
    return ipaddress.ip_address(text)


def test_peer_is_the_client_without_trusted_proxies():
    assert client_ip("203.0.113.9", ["198.51.100.1"], []) == ip("203.0.113.9")


def test_header_from_an_untrusted_peer_is_never_read():
    assert client_ip("203.0.113.9", ["198.51.100.1"], PROXIES) == ip("203.0.113.9")


def test_walks_from_the_right_skipping_trusted_hops():
    header = ["198.51.100.1, 203.0.113.5", "10.1.1.1"]
    assert client_ip("10.0.0.2", header, PROXIES) == ip("203.0.113.5")


def test_spoofed_leftmost_entries_are_not_believed():
    # The sender wrote "1.2.3.4"; our proxy appended the real address on the right.
    assert client_ip("10.0.0.2", ["1.2.3.4, 203.0.113.5"], PROXIES) == ip("203.0.113.5")


def test_all_hops_trusted_gives_the_leftmost():
    assert client_ip("10.0.0.2", ["10.9.9.9, 10.1.1.1"], PROXIES) == ip("10.9.9.9")


def test_garbage_entry_stops_at_the_last_trusted_hop():
    assert client_ip("10.0.0.2", ["203.0.113.5, garbage"], PROXIES) == ip("10.0.0.2")


def test_ipv6_peer_and_hops():
    assert client_ip("fd00::1", ["2001:db8::7"], PROXIES) == ip("2001:db8::7")
    assert client_ip("2001:db8::1", [], PROXIES) == ip("2001:db8::1")


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("::ffff:192.0.2.1", "192.0.2.1"),
        ("[2001:db8::1]:443", "2001:db8::1"),
        ("192.0.2.1:8080", "192.0.2.1"),
        ("fe80::1%eth0", "fe80::1"),
    ],
)
def test_address_forms(text, expected):
    assert parse_address(text) == ip(expected)


def test_ipv4_mapped_peer_matches_its_ipv4_allow_list_entry():
    address = client_ip("::ffff:127.0.0.1", [], [])
    assert address is not None
    assert in_networks(address, [ipaddress.ip_network("127.0.0.1/32")])
    assert not in_networks(address, [ipaddress.ip_network("::1/128")])


def test_unparsable_peer_is_none():
    assert client_ip("not-an-ip", [], PROXIES) is None
    assert client_ip(None, [], []) is None


@pytest.mark.parametrize("cache_size", [4096, 1])
def test_a_sources_verdict_on_a_peer_is_its_allow_list(monkeypatch, cache_size):
    # Remembered per address, and the same past the cache's size (then worked out afresh).
    monkeypatch.setattr("gateway.ingress.plan.PEER_CACHE_SIZE", cache_size)
    open_source = payments_source(allow_ips=[], path="/hooks/open")
    config = build_config(
        config_dict(
            "http://127.0.0.1:1/hooks",
            store_url="sqlite:///x.db",
            sources={"payments": payments_source(), "open": open_source},
        )
    )
    plans = {
        name: plan_source(
            source, MemoryLimiter(), limits_in_store=False, on_limiter_failure=lambda _e: None
        )
        for name, source in config.sources.items()
    }
    for _ in range(2):
        assert plans["payments"].peer(ip("10.2.3.4")) == (True, "ip:payments:10.2.3.4")
        assert plans["payments"].peer(ip("203.0.113.9")) == (False, "ip:payments:203.0.113.9")
        assert plans["payments"].peer(ip("::1")) == (True, "ip:payments:::1")
        assert plans["payments"].peer(None) == (False, "ip:payments:None")
        assert plans["open"].peer(ip("203.0.113.9")) == (True, "ip:open:203.0.113.9")
        assert plans["open"].peer(None) == (True, "ip:open:None")
