"""Who is the client? Peer address, trusted proxies and ``X-Forwarded-For`` (design.md 5.2).

Pure: no I/O, no framework."""

from __future__ import annotations

import functools
import ipaddress
from collections.abc import Sequence

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network


# Cached: the same few peers (a proxy, a provider's senders) come back request after request,
# and parsing is most of this module's cost. Bounded, as header entries are the sender's text.
@functools.lru_cache(maxsize=1024)
def parse_address(text: str | None) -> IPAddress | None:
    """An address from a peer name or header entry; IPv4-mapped IPv6 becomes IPv4."""
    if not text:
        return None
    text = text.strip()
    if text.startswith("[") and "]" in text:  # "[2001:db8::1]:443" as some proxies write it
        text = text[1 : text.index("]")]
    elif text.count(":") == 1 and "." in text:  # "192.0.2.1:443"
        text = text.split(":", 1)[0]
    text = text.split("%", 1)[0]  # drop an IPv6 zone id
    try:
        address = ipaddress.ip_address(text)
    except ValueError:
        return None
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address


def in_networks(address: IPAddress, networks: Sequence[IPNetwork]) -> bool:
    """Whether ``address`` lies in any of ``networks`` (version mismatches never match)."""
    return any(address.version == net.version and address in net for net in networks)


def client_ip(
    peer: str | None, forwarded_for: Sequence[str], trusted_proxies: Sequence[IPNetwork]
) -> IPAddress | None:
    """The client address: the peer, unless it is a trusted proxy.

    Behind trusted proxies, walk ``X-Forwarded-For`` from the right (the entry our proxy
    appended), skip trusted hops, and take the first untrusted address. The header of an
    untrusted peer is never read: anyone can write it. An unparsable entry stops the walk at
    the last hop we could trust, so garbage cannot make us pick an address further left.
    """
    address = parse_address(peer)
    if address is None or not trusted_proxies or not in_networks(address, trusted_proxies):
        return address
    hops = [hop for header in forwarded_for for hop in header.split(",") if hop.strip()]
    for hop in reversed(hops):
        hop_address = parse_address(hop)
        if hop_address is None:
            return address
        if not in_networks(hop_address, trusted_proxies):
            return hop_address
        address = hop_address
    return address
