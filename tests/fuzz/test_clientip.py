"""Client-IP parsing (design.md 5.2) on any peer name and any ``X-Forwarded-For`` text: it never
raises, and the address it picks is the peer or one written in the header, never one made up."""

from __future__ import annotations

import ipaddress

from hypothesis import given
from hypothesis import strategies as st

from gateway.http.clientip import client_ip, parse_address
from tests.fuzz.settings import fuzz

ADDRESSES = st.one_of(
    st.ip_addresses().map(str),
    st.ip_addresses(v=6).map(lambda a: f"[{a}]:443"),
    st.ip_addresses(v=4).map(lambda a: f"{a}:8080"),
    st.ip_addresses(v=6).map(lambda a: f"{a}%eth0"),
    st.ip_addresses(v=4).map(lambda a: f"::ffff:{a}"),
)
ENTRIES = st.one_of(
    ADDRESSES,
    st.text(max_size=30),
    st.sampled_from(["", " ", ",", "[", "]", "[::1", "unknown", "%", ":", "1.2.3.4:", "::"]),
)
HEADERS = st.lists(st.lists(ENTRIES, max_size=5).map(", ".join), max_size=3)
NETWORKS = st.lists(
    st.one_of(
        st.sampled_from(["127.0.0.0/8", "10.0.0.0/8", "::1/128", "::/0", "0.0.0.0/0"]),
        st.ip_addresses().map(lambda a: str(ipaddress.ip_network(a))),
    ),
    max_size=3,
).map(lambda nets: [ipaddress.ip_network(n) for n in nets])


@fuzz(500)
@given(peer=st.one_of(st.none(), ENTRIES), forwarded=HEADERS, trusted=NETWORKS)
def test_client_ip_never_raises_and_invents_nothing(peer, forwarded, trusted) -> None:
    chosen = client_ip(peer, forwarded, trusted)
    if chosen is None:
        assert parse_address(peer) is None
        return
    candidates = {parse_address(peer)} | {
        parse_address(hop) for header in forwarded for hop in header.split(",")
    }
    assert chosen in candidates


@fuzz(300)
@given(st.one_of(st.text(max_size=60), ENTRIES))
def test_parse_address_never_raises(text: str) -> None:
    address = parse_address(text)
    assert address is None or isinstance(address, ipaddress.IPv4Address | ipaddress.IPv6Address)
