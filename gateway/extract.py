"""Extractors: where an event keeps its id, type, subject, time and dedupe key.

An extractor reads a header (``header:webhook-id``) or a JSON pointer into the body
(``/offerId``, also written ``body:/offerId``; RFC 6901). The dedupe key may also be ``sha256``,
the digest of the raw body, or a list of extractors whose values are joined with ``:``
(``[/type, /pendingId]``: one key per payment and type, design.md 3). Pure: no I/O, no
framework.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Literal

import orjson

from gateway.errors import InvalidBody

ExtractorKind = Literal["header", "body", "sha256", "list"]


@dataclass(frozen=True)
class Extractor:
    """One place to read a value from: a header, a JSON pointer into the body, or the body hash."""

    kind: ExtractorKind
    name: str = ""  # header name (lower case) or JSON pointer; empty for sha256 and list
    #: The values a ``list`` extractor joins with ``:``, in order.
    parts: tuple[Extractor, ...] = ()
    #: The pointer's reference tokens, split and unescaped once here, not on every request.
    tokens: tuple[str, ...] = field(init=False, repr=False, compare=False, default=())

    def __post_init__(self) -> None:
        if self.kind == "body":
            object.__setattr__(self, "tokens", tuple(_split_pointer(self.name)))

    def __str__(self) -> str:
        if self.kind == "sha256":
            return "sha256"
        if self.kind == "list":
            return "[" + ", ".join(part.spelled for part in self.parts) + "]"
        return f"{self.kind}:{self.name}"

    @property
    def spelled(self) -> str:
        """As a config names it: the JSON pointer alone for the body, else ``str()``."""
        return self.name if self.kind == "body" else str(self)

    @property
    def needs_json(self) -> bool:
        """Whether reading this value requires the body to be parsed as JSON."""
        return self.kind == "body" or any(part.needs_json for part in self.parts)

    @property
    def reads_header(self) -> bool:
        """Whether this value comes from a header (or, for a list, any part of it does)."""
        return self.kind == "header" or any(part.reads_header for part in self.parts)

    def header_names(self) -> tuple[str, ...]:
        """The headers this value is read from."""
        if self.kind == "header":
            return (self.name,)
        return tuple(name for part in self.parts for name in part.header_names())


@dataclass(frozen=True)
class Extractors:
    """The extractors for each event field; ``None`` means "not extracted"."""

    id: Extractor | None = None
    type: Extractor | None = None
    subject: Extractor | None = None
    time: Extractor | None = None
    dedupe: Extractor | None = None


def list_extractor(parts: list[Extractor]) -> Extractor:
    """Values of ``parts`` joined with ``:`` (a dedupe key such as ``[/type, /pendingId]``)."""
    if not parts:
        raise ValueError("a list of extractors names at least one, as in [/type, /pendingId]")
    if any(part.kind in ("sha256", "list") for part in parts):
        raise ValueError("a list holds JSON pointers and header:NAME extractors only")
    return Extractor("list", parts=tuple(parts))


def parse_extractor(spec: str, *, allow_sha256: bool = False) -> Extractor:
    """Parse ``header:NAME``, ``body:/pointer``, ``/pointer`` (and ``sha256`` if allowed)."""
    if allow_sha256 and spec == "sha256":
        return Extractor("sha256")
    if spec.startswith("header:"):
        name = spec[len("header:") :].strip()
        if not name:
            raise ValueError("header extractor needs a header name, as in header:webhook-id")
        if not _TOKEN.fullmatch(name):
            # No request can carry it (RFC 9110, section 5.1); a body pointer starts with "/",
            # which a header name never holds, so ``Payload`` keeps both by name alone.
            raise ValueError(f"{name!r} is not a header name (letters, digits and !#$%&'*+-.^_`|~)")
        return Extractor("header", name.lower())
    pointer = spec[len("body:") :] if spec.startswith("body:") else spec
    if not pointer.startswith("/"):
        hint = ", header:NAME or sha256" if allow_sha256 else " or header:NAME"
        raise ValueError(f"{spec!r} is not an extractor: use a JSON pointer like /id{hint}")
    return Extractor("body", pointer)  # splitting the pointer validates its escapes


def _split_pointer(pointer: str) -> list[str]:
    """Split an RFC 6901 pointer into reference tokens, undoing ``~1`` and ``~0``."""
    out = []
    for part in pointer.split("/")[1:]:
        if "~" in part.replace("~0", "").replace("~1", ""):
            raise ValueError(f"invalid escape in JSON pointer {pointer!r} (RFC 6901 allows ~0, ~1)")
        out.append(part.replace("~1", "/").replace("~0", "~"))
    return out


_MISSING = object()
#: A header name: an RFC 9110 token.
_TOKEN = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")


def resolve_pointer(document: object, tokens: tuple[str, ...]) -> object:
    """Return the value at a pointer's ``tokens`` in a parsed JSON document, or ``KeyError``."""
    node = document
    for part in tokens:
        if isinstance(node, dict):
            node = node.get(part, _MISSING)
        elif isinstance(node, list) and part.isdigit() and (part == "0" or part[0] != "0"):
            index = int(part)
            node = node[index] if index < len(node) else _MISSING
        else:
            node = _MISSING
        if node is _MISSING:
            raise KeyError("/".join(tokens))
    return node


class Payload:
    """The raw body and headers of one request, parsed as JSON at most once and only if needed.

    orjson parses the body (about 5x faster than the standard library on a payment event:
    BENCHMARKS.md#what-each-optimisation-gave, "the body parsed by orjson");
    what it refuses that the standard library takes (``NaN``, a lone surrogate's escape, a
    UTF-8 byte order mark, a number past a double's range) is parsed by the standard
    library, so every body that parsed before still does. orjson turns an integer past 64
    bits into a float, so a value read as a number, an object or an array is taken from the
    standard library's parse (exact integers); strings, booleans and 64-bit integers are the
    same either way.
    """

    __slots__ = ("_decimal", "_exact", "_json", "_read", "body", "headers")

    def __init__(self, body: bytes, headers: Mapping[str, str]) -> None:
        self.body = body
        self.headers = headers
        self._json: object = _MISSING
        self._exact: object = _MISSING
        self._decimal: object = _MISSING
        #: Values read so far by the extractor's name: a request reads the same few (the
        #: required fields, the id, the dedupe key, the type) several times over.
        self._read: dict[str, str | None] = {}

    def json(self) -> object:
        """The body parsed as JSON; ``InvalidBody`` (400) when it is not JSON."""
        if self._json is _MISSING:
            try:
                self._json = orjson.loads(self.body)
            except orjson.JSONDecodeError:
                self._json = self._exact_json()
        return self._json

    def _exact_json(self) -> object:
        """The body parsed by the standard library (exact integers of any length)."""
        if self._exact is _MISSING:
            try:
                self._exact = json.loads(self.body)
            except (ValueError, RecursionError) as exc:
                # ValueError covers JSONDecodeError, UnicodeDecodeError and integers too long
                # to convert; RecursionError a body nested deeper than the parser goes.
                raise InvalidBody("request body is not valid JSON") from exc
        return self._exact

    def number_exact(self, extractor: Extractor) -> object:
        """The value at a body pointer with every JSON number as its exact ``Decimal`` (never
        a float: money is read this way), or a header's text; ``None`` when absent."""
        if extractor.kind == "header":
            return self.headers.get(extractor.name)
        if extractor.kind != "body":
            return self.get(extractor)
        self.json()  # 400 invalid_body for a body that is not JSON, as for any pointer
        if self._decimal is _MISSING:
            try:
                self._decimal = json.loads(self.body, parse_float=Decimal, parse_int=Decimal)
            except (ValueError, RecursionError) as exc:
                raise InvalidBody("request body is not valid JSON") from exc
        try:
            return resolve_pointer(self._decimal, extractor.tokens)
        except KeyError:
            return None

    def missing_parts(self, extractor: Extractor) -> list[str]:
        """For a ``list`` extractor, the parts that are absent (their config spelling)."""
        return [part.spelled for part in extractor.parts if self.get(part) is None]

    def get(self, extractor: Extractor) -> str | None:
        """The extracted value as text, or ``None`` when absent (null counts as absent; a
        ``list`` is absent when any of its parts is)."""
        name = extractor.name
        if not name:  # sha256 or a list
            return self._value(extractor)
        # A header's name never starts with "/", a pointer always does: one namespace.
        read = self._read
        if name in read:
            return read[name]
        value = read[name] = self._value(extractor)
        return value

    def _value(self, extractor: Extractor) -> str | None:
        if extractor.kind == "sha256":
            return hashlib.sha256(self.body).hexdigest()
        if extractor.kind == "header":
            return self.headers.get(extractor.name)
        if extractor.kind == "list":
            values = [self.get(part) for part in extractor.parts]
            if any(value is None for value in values):
                return None
            return ":".join(value for value in values if value is not None)
        document = self.json()
        tokens = extractor.tokens
        try:
            if len(tokens) == 1 and type(document) is dict:
                value = document.get(tokens[0])  # a top-level field (most are): no walk
            else:
                value = resolve_pointer(document, tokens)
            if isinstance(value, _INEXACT):
                value = resolve_pointer(self._exact_json(), tokens)
        except KeyError:
            return None
        if value is None:
            return None
        if isinstance(value, str):
            return value
        if isinstance(value, bool):
            return "true" if value else "false"
        if isinstance(value, int | float):
            return json.dumps(value)
        return json.dumps(value, separators=(",", ":"), sort_keys=True)

    def body_status(self) -> str | None:
        """The body's top-level ``status`` field as text (a payment's "paid"), if it has one.

        Read for the dashboard's payments view only: a body that is not JSON, or not an
        object, simply has none (never an error).
        """
        if self.body[:1] not in (b"{", b" ", b"\n", b"\t", b"\r"):
            return None
        try:
            document = self.json()
        except InvalidBody:
            return None
        if not isinstance(document, dict) or "status" not in document:
            return None
        return self.get(_STATUS)

    def has(self, extractor: Extractor) -> bool:
        """Whether the value is present (used by ``require``)."""
        return self.get(extractor) is not None


_STATUS = Extractor("body", "/status")
#: Values orjson may read otherwise than the standard library (an integer past 64 bits becomes
#: a float, also inside an object or an array): read again from the exact parse.
_INEXACT = (float, dict, list)
