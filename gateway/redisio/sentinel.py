"""Redis Sentinel: the store URL that names a watched master, and the clients that find it.

``parse_sentinel_url`` reads the URL without connecting anywhere (the config loader checks it
too); ``sentinel_client`` makes the Sentinel clients and a client of the master they name.

Form (design.md 7: replicas share "Redis (Sentinel or Cluster)")::

    redis+sentinel://[[username]:password@]host[:port][,host[:port]...]/service[/db][?options]
    rediss+sentinel://...        the same, with TLS to the master

The hosts are the Sentinels (port 26379 unless given; an IPv6 address goes in brackets), the
first path segment is the service name the Sentinels monitor (``sentinel monitor <service>
...``), the second the database number (default 0). Username and password are the master's,
as in a ``redis://`` URL. Options, in the query string:

* ``sentinel_username``, ``sentinel_password``: credentials for the Sentinels themselves
  (their ``requirepass`` or ACL user; by default none are sent);
* ``sentinel_tls=yes``: speak TLS to the Sentinels as well (``rediss+sentinel`` alone means
  TLS to the master only, which is what Sentinels without a ``tls-port`` need);
* ``ssl_ca_certs=/path/ca.pem``: the CA bundle that TLS connections verify against.

Percent-encode any of ``@ : / , ? # & =`` inside a name or password.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, cast
from urllib.parse import parse_qsl, unquote, urlsplit

from redis.asyncio import Redis
from redis.asyncio.retry import Retry
from redis.asyncio.sentinel import Sentinel
from redis.backoff import NoBackoff

#: The schemes of this form (``gateway.store.urls`` maps them to the Sentinel kind).
SCHEMES = ("redis+sentinel", "rediss+sentinel")
DEFAULT_PORT = 26379
_OPTIONS = frozenset({"sentinel_username", "sentinel_password", "sentinel_tls", "ssl_ca_certs"})
_YES, _NO = frozenset({"yes", "true", "1"}), frozenset({"no", "false", "0"})


@dataclass(frozen=True)
class SentinelURL:
    """Where the Sentinels are, which service they name the master of, and how to log in."""

    sentinels: tuple[tuple[str, int], ...]
    service_name: str
    db: int = 0
    username: str | None = None
    password: str | None = field(default=None, repr=False)
    tls: bool = False
    sentinel_username: str | None = None
    sentinel_password: str | None = field(default=None, repr=False)
    sentinel_tls: bool = False
    ssl_ca_certs: str | None = None


def parse_sentinel_url(url: str) -> SentinelURL:
    """Parse a ``redis[s]+sentinel://`` URL; ``ValueError`` says what is wrong.

    The messages never repeat the URL, since it may carry a password.
    """
    try:
        parts = urlsplit(url)
    except ValueError as exc:
        raise ValueError(f"not a URL ({exc})") from None
    if parts.scheme not in SCHEMES or not url.startswith(f"{parts.scheme}://"):
        raise ValueError("a Sentinel URL starts with redis+sentinel:// or rediss+sentinel://")
    if parts.fragment:
        raise ValueError("a Sentinel URL has no #fragment")
    userinfo, at, hostlist = parts.netloc.rpartition("@")
    username = password = None
    if at:
        user, colon, secret = userinfo.partition(":")
        username = unquote(user) or None
        password = unquote(secret) if colon else None
    sentinels = tuple(_host_port(item) for item in hostlist.split(","))
    service_name, db = _path(parts.path)
    options = _options(parts.query)
    return SentinelURL(
        sentinels=sentinels,
        service_name=service_name,
        db=db,
        username=username,
        password=password,
        tls=parts.scheme == "rediss+sentinel",
        sentinel_username=options.get("sentinel_username") or None,
        sentinel_password=options.get("sentinel_password") or None,
        sentinel_tls=_flag(options.get("sentinel_tls", "no"), "sentinel_tls"),
        ssl_ca_certs=options.get("ssl_ca_certs") or None,
    )


def _host_port(item: str) -> tuple[str, int]:
    """``host``, ``host:port``, ``[v6]`` or ``[v6]:port`` as (host, port)."""
    if not item:
        raise ValueError("list one or more Sentinels as host:port, separated by commas")
    if item.startswith("["):
        host, bracket, rest = item[1:].partition("]")
        if not bracket or not host or (rest and not rest.startswith(":")):
            raise ValueError("an IPv6 Sentinel address is written [address]:port")
        port_text = rest[1:] if rest else None
    else:
        if item.count(":") > 1:
            raise ValueError("put an IPv6 Sentinel address in brackets: [address]:port")
        host, colon, port_text_or_empty = item.partition(":")
        if not host:
            raise ValueError("a Sentinel is host:port; one of them has no host")
        port_text = port_text_or_empty if colon else None
    if port_text is None:
        return host, DEFAULT_PORT
    if not port_text.isdigit() or not 0 < int(port_text) < 65536:
        raise ValueError(f"Sentinel port {port_text!r} is not a number from 1 to 65535")
    return host, int(port_text)


def _path(path: str) -> tuple[str, int]:
    """``/service`` or ``/service/db`` as (service name, db)."""
    segments = path.split("/")[1:]
    if segments and segments[-1] == "" and len(segments) > 1:
        segments.pop()  # a trailing slash
    if not segments or not segments[0]:
        raise ValueError(
            "name the Sentinel service after the hosts: redis+sentinel://host:26379/mymaster"
        )
    if len(segments) > 2:
        raise ValueError("the path is /<service name>[/<db>], nothing more")
    db_text = segments[1] if len(segments) == 2 else "0"
    if not db_text.isdigit():
        raise ValueError(f"database {db_text!r} is not a number")
    return unquote(segments[0]), int(db_text)


def _options(query: str) -> dict[str, str]:
    """The query options, each known and given once."""
    try:
        pairs = parse_qsl(query, keep_blank_values=True, strict_parsing=bool(query))
    except ValueError:
        raise ValueError("the query string is name=value pairs joined by &") from None
    options: dict[str, str] = {}
    for name, value in pairs:
        if name not in _OPTIONS:
            known = ", ".join(sorted(_OPTIONS))
            raise ValueError(f"unknown Sentinel URL option {name!r} (known: {known})")
        if name in options:
            raise ValueError(f"Sentinel URL option {name!r} is given twice")
        options[name] = value
    return options


def _flag(value: str, name: str) -> bool:
    if value.lower() in _YES:
        return True
    if value.lower() in _NO:
        return False
    raise ValueError(f"{name} is yes or no, not {value!r}")


def sentinel_client(target: SentinelURL, options: dict[str, Any]) -> tuple[Sentinel, Redis]:
    """The Sentinel clients for ``target`` and a client of the master they name.

    Both sides get the caller's socket ``options`` (timeouts), so an unreachable Sentinel is
    skipped after the connect timeout at most rather than hanging discovery.
    """
    tls: dict[str, Any] = {"ssl": True}
    if target.ssl_ca_certs is not None:
        tls["ssl_ca_certs"] = target.ssl_ca_certs
    sentinel_kwargs: dict[str, Any] = {
        **options,
        # No retries against one Sentinel: discovery moves on to the next one itself, and
        # redis-py's default (ten tries with backoff) made a dead first Sentinel cost seconds.
        "retry": Retry(NoBackoff(), 0),
        "username": target.sentinel_username,
        "password": target.sentinel_password,
        **(tls if target.sentinel_tls else {}),
    }
    hosts = list(target.sentinels)
    sentinel = Sentinel(hosts, sentinel_kwargs=sentinel_kwargs)
    # TLS keys only when TLS is on: the plain connection class refuses ssl_* arguments.
    master = sentinel.master_for(
        target.service_name,
        db=target.db,
        username=target.username,
        password=target.password,
        **options,
        **(tls if target.tls else {}),
    )
    return sentinel, cast(Redis, master)
