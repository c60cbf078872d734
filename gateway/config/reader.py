"""Reading the raw YAML: key paths, every problem collected, ``${VAR}`` and ``${file:...}``.

``Reader`` walks the parsed YAML remembering where it is, so each problem is reported under
its key (``sources.payments.secrets[0]: ...``), and all of them at once. The scalar parsers
(durations, listen addresses, networks, secrets, ...) raise ``ValueError`` with a message for
the operator; ``Reader.field`` and ``Reader.list_of`` report it under the key.

A value whose reference could not be resolved is reported once, at that reference, and not
parsed again: no second message about an empty secret or a URL that is not a URL, since the
operator has one thing to fix, not three.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import urlsplit

from gateway.config.model import HostPort, IPNetwork
from gateway.errors import ConfigProblem
from gateway.secret import Secret

T = TypeVar("T")

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)\s*$")
_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}
REFERENCE = re.compile(r"\$\{([^}]*)\}")
NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")


def parse_duration(value: object) -> float:
    """``300ms``, ``5s``, ``10m``, ``72h``, ``1d`` (or a bare number of seconds) to seconds."""
    if isinstance(value, bool):
        raise ValueError("expected a duration like 5s, 10m or 72h")
    if isinstance(value, int | float):
        seconds = float(value)
    else:
        match = _DURATION.match(str(value))
        if not match:
            raise ValueError(f"{value!r} is not a duration (use 300ms, 5s, 10m, 72h)")
        seconds = float(match.group(1)) * _UNITS[match.group(2)]
    if seconds < 0:
        raise ValueError("a duration cannot be negative")
    return seconds


def parse_host_port(value: object) -> HostPort:
    """``host:port`` or ``[v6]:port``."""
    text = str(value).strip()
    host, sep, port = text.rpartition(":")
    if not sep or not port.isdigit() or not 0 <= int(port) < 65536:
        raise ValueError(f"{text!r} is not host:port (e.g. 0.0.0.0:8080 or [::]:8080)")
    host = host.removeprefix("[").removesuffix("]")
    if not host:
        raise ValueError(f"{text!r} has no host (e.g. 0.0.0.0:8080)")
    return HostPort(host, int(port))


def parse_network(value: object) -> IPNetwork:
    """A CIDR or a bare address (a /32 or /128); IPv4-mapped IPv6 becomes its IPv4 form."""
    network = ipaddress.ip_network(str(value).strip(), strict=False)
    if isinstance(network, ipaddress.IPv6Network) and network.network_address.ipv4_mapped:
        mapped = network.network_address.ipv4_mapped
        return ipaddress.IPv4Network(f"{mapped}/{max(0, network.prefixlen - 96)}", strict=False)
    return network


class Reader:
    """Walks the raw YAML, remembering the key path, collecting every problem found."""

    def __init__(self, environ: Mapping[str, str]) -> None:
        self.environ = environ
        self.problems: list[ConfigProblem] = []
        self.path: list[str] = []
        #: Keys whose ``${...}`` reference could not be resolved: reported once, never parsed.
        self.unresolved: set[str] = set()

    # -- key paths and problems -----------------------------------------------------------------

    def key(self, *parts: str | int) -> str:
        out = ""
        for part in [*self.path, *parts]:
            if isinstance(part, int):
                out += f"[{part}]"
            else:
                out += f".{part}" if out else part
        return out

    def problem(self, key: str, message: str) -> None:
        self.problems.append(ConfigProblem(key, message))

    def reported(self, key: str) -> bool:
        """Whether a problem was reported at ``key`` or inside it (``key[0]``, ``key.x``)."""
        return any(p.key == key or p.key.startswith((f"{key}[", f"{key}.")) for p in self.problems)

    @contextmanager
    def at(self, *parts: str | int) -> Iterator[None]:
        saved = list(self.path)
        self.path.extend(str(p) if not isinstance(p, int) else p for p in parts)  # type: ignore[misc]
        try:
            yield
        finally:
            self.path = saved

    # -- shapes ---------------------------------------------------------------------------------

    def mapping(self, raw: object, allowed: set[str], key: str = "") -> dict[str, Any]:
        """A mapping with only ``allowed`` keys; an unknown key is reported, never ignored."""
        where = key or self.key()
        if raw is None:
            return {}
        if not isinstance(raw, dict):
            self.problem(where, f"expected a mapping, got {type(raw).__name__}")
            return {}
        for name in raw:
            if str(name) not in allowed:
                hint = ", ".join(sorted(allowed))
                self.problem(self.key(str(name)), f"unknown key (allowed here: {hint})")
        return {str(k): v for k, v in raw.items() if str(k) in allowed}

    def field(self, raw: Mapping[str, Any], name: str, parse: Callable[[Any], T], default: T) -> T:
        """Parse ``raw[name]`` with ``parse``; report a failure under its key, use the default."""
        if name not in raw or raw[name] is None or self.key(name) in self.unresolved:
            return default
        try:
            return parse(raw[name])
        except (ValueError, TypeError) as exc:
            self.problem(self.key(name), str(exc))
            return default

    def list_of(
        self, raw: Mapping[str, Any], name: str, parse: Callable[[Any], T]
    ) -> tuple[T, ...]:
        value = raw.get(name)
        if value is None:
            return ()
        if not isinstance(value, list):
            self.problem(self.key(name), "expected a list")
            return ()
        out: list[T] = []
        for index, item in enumerate(value):
            if self.key(name, index) in self.unresolved:
                continue
            try:
                out.append(parse(item))
            except (ValueError, TypeError) as exc:
                self.problem(self.key(name, index), str(exc))
        return tuple(out)

    # -- ${VAR} and ${file:/path} ---------------------------------------------------------------

    def interpolate(self, value: object, key: str) -> tuple[object, bool]:
        """Replace references in strings; return (value, whether a reference was used)."""
        if not isinstance(value, str) or "${" not in value:
            return value, False

        def replace(match: re.Match[str]) -> str:
            ref = match.group(1).strip()
            if ref.startswith("file:"):
                path = ref[len("file:") :]
                try:
                    return Path(path).read_text().rstrip("\r\n")
                except OSError as exc:
                    self.problem(key, f"cannot read secret file {path}: {exc.strerror}")
                    self.unresolved.add(key)
                    return ""
            if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", ref):
                self.problem(
                    key, f"${{{ref}}} is not a valid reference (use ${{VAR}} or ${{file:/path}})"
                )
                self.unresolved.add(key)
                return ""
            if ref not in self.environ:
                self.problem(key, f"environment variable {ref} is not set")
                self.unresolved.add(key)
                return ""
            return self.environ[ref]

        return REFERENCE.sub(replace, value), True

    def resolve_tree(self, node: object, key: str, templated: set[str]) -> object:
        """Interpolate every string in the tree; remember keys whose value came from outside."""
        if isinstance(node, dict):
            return {
                k: self.resolve_tree(v, f"{key}.{k}" if key else str(k), templated)
                for k, v in node.items()
            }
        if isinstance(node, list):
            return [self.resolve_tree(v, f"{key}[{i}]", templated) for i, v in enumerate(node)]
        value, used = self.interpolate(node, key)
        if used:
            templated.add(key)
        return value


def secret(value: object) -> Secret:
    if not isinstance(value, str | int) or isinstance(value, bool):
        raise ValueError("expected a secret string")
    text = str(value)
    if not text:
        raise ValueError("secret is empty")
    return Secret(text)


def positive_int(value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError("expected a positive integer")
    return value


def non_negative_int(value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ValueError("expected 0 or a positive integer")
    return value


def boolean(value: object) -> bool:
    if not isinstance(value, bool):
        raise ValueError("expected true or false")
    return value


def choice(*options: str) -> Callable[[object], Any]:
    def parse(value: object) -> str:
        if value not in options:
            raise ValueError(f"expected one of: {', '.join(options)}")
        return str(value)

    return parse


def http_url(value: object) -> str:
    text = str(value)
    parts = urlsplit(text)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(f"{text!r} is not an http(s) URL")
    return text
