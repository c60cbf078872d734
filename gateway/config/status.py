"""The ``status:`` block (design.md 5.10), checked key by key.

``secret`` (at least ``MIN_SECRET_BYTES`` bytes: the marketplace signs the buyers' tokens
with it), ``allow_origins`` (the marketplace's pages, each ``scheme://host[:port]``; no
wildcard: a listed origin is one the operator vouches for), ``max_streams`` and
``max_streams_per_ip`` (per process). Without the block the status streams are off.
"""

from __future__ import annotations

from collections.abc import Mapping
from urllib.parse import urlsplit

from gateway.config.model import SourceConfig, StatusConfig
from gateway.config.reader import Reader, positive_int, secret
from gateway.secret import Secret

_KEYS = {"secret", "allow_origins", "max_streams", "max_streams_per_ip"}
#: Fewest bytes a token secret may have: HMAC-SHA256's own output length (RFC 2104 section 3
#: advises a key no shorter than the hash's output).
MIN_SECRET_BYTES = 32
_DEFAULT_PORTS = {"http": 80, "https": 443}


def _secret(value: object) -> Secret:
    parsed = secret(value)
    if len(parsed.encode()) < MIN_SECRET_BYTES:
        raise ValueError(
            f"must be at least {MIN_SECRET_BYTES} bytes (a random string the marketplace holds"
            " too, e.g. from: openssl rand -base64 48)"
        )
    return parsed


def parse_origin(value: object) -> str:
    """An origin as a browser writes it in ``Origin``: ``scheme://host[:port]``, lower case,
    the scheme's default port left out; ``ValueError`` for anything else."""
    if not isinstance(value, str):
        raise ValueError("expected an origin such as https://market.example")
    text = value.strip()
    if text == "*":
        raise ValueError("a wildcard would let any site follow payments: list each origin")
    try:
        parts = urlsplit(text)
        port = parts.port
    except ValueError:
        raise ValueError(f"{text!r} is not an origin (https://host[:port])") from None
    if parts.scheme.lower() not in _DEFAULT_PORTS or not parts.hostname:
        raise ValueError(f"{text!r} is not an http(s) origin such as https://market.example")
    if parts.path not in ("", "/") or parts.query or parts.fragment or parts.username:
        raise ValueError(f"{text!r}: an origin is scheme://host[:port], with no path or query")
    scheme, host = parts.scheme.lower(), parts.hostname.lower()
    if ":" in host:
        host = f"[{host}]"
    if port is None or port == _DEFAULT_PORTS[scheme]:
        return f"{scheme}://{host}"
    return f"{scheme}://{host}:{port}"


def parse_status(
    reader: Reader, raw: object, sources: Mapping[str, SourceConfig]
) -> StatusConfig | None:
    """The ``status:`` block, ``None`` without one; problems reported by key."""
    if raw is None:
        return None
    data = reader.mapping(raw, _KEYS)
    if not isinstance(raw, dict):
        return None
    token = reader.field(data, "secret", _secret, None)
    if token is None and not reader.reported(reader.key("secret")):
        reader.problem(reader.key("secret"), "required: the secret status tokens are signed with")
    origins = reader.list_of(data, "allow_origins", parse_origin)
    if not origins and not reader.reported(reader.key("allow_origins")):
        reader.problem(
            reader.key("allow_origins"),
            "required: the origins of the marketplace's pages, e.g. [https://market.example]",
        )
    d = StatusConfig(Secret("-"), frozenset())
    max_streams = reader.field(data, "max_streams", positive_int, d.max_streams)
    per_ip = reader.field(data, "max_streams_per_ip", positive_int, d.max_streams_per_ip)
    _check_sources(reader, sources)
    if token is None:
        return None
    return StatusConfig(token, frozenset(origins), max_streams, per_ip)


def _check_sources(reader: Reader, sources: Mapping[str, SourceConfig]) -> None:
    """Some source keeps payments (else there is nothing to show), and no two source names
    make one token fit both: the signed text ``v1.<source>.<key>.<expiry>`` of source ``a``
    and key ``b.c`` is that of source ``a.b`` and key ``c``."""
    if sources and not any(source.payment is not None for source in sources.values()):
        reader.problem(
            reader.key(),
            "no source keeps payments (a source's payment: block), so there is no status to show",
        )
    for name in sorted(sources):
        for other in sorted(sources):
            if other.startswith(name + "."):
                reader.problem(
                    reader.key(),
                    f"sources {name} and {other}: a status token for one could be read as one"
                    f" for the other (its signed text joins source and key with a dot);"
                    f" rename one",
                )
