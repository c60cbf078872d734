"""Event payloads encrypted at rest: AES-256-GCM under a key ring (design.md 5.4).

Keys come from ``store.encryption_keys``: each is 32 random bytes in standard base64, written
bare or with the prefix ``base64:`` (``base64:q0vC...=``), so a later form (a KMS reference, say)
can get a prefix of its own. The FIRST key seals new payloads; EVERY key opens them. Rotation
across processes sharing a store is therefore: list the new key last and restart all (now all
can open it), then move it first and restart again; drop an old key only once no stored event
was sealed with it (README, "Encryption at rest").

What is sealed is an event's body and its kept headers (they may carry provider data). What
the store must query on (ids, source, dedupe keys, times, status) stays in the clear.

Each sealed field is one envelope::

    b"WGE" | version (1 byte, 0x01) | key id (8 bytes) | nonce (12 bytes) | ciphertext | tag (16)

* the key id is the first 8 bytes of SHA-256 of the key: it picks the key to open with and can
  be shown in errors and logs (it reveals nothing of a 256-bit key); the key itself never is;
* the nonce is fresh from ``os.urandom`` for every envelope (96 bits, as NIST SP 800-38D
  section 8.2.2 recommends for random nonces); that section caps one key at 2**32 random-nonce
  encryptions, two per event here, so rotate well before two billion events per key;
* the associated data (NIST SP 800-38D: authenticated, not encrypted) is the envelope header
  plus the event's source, id and the field name, so a ciphertext copied onto another event, or
  from the body onto the headers, fails to open instead of being delivered.

Rows written before encryption was turned on stay readable: their headers field is JSON text
(always starting with ``[``), a sealed row's headers field is an envelope (starting ``WGE``),
and the body of a row is sealed exactly when its headers are (see ``open_payload``). A body
alone cannot tell: a plaintext body may start with any bytes.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import os
from collections.abc import Sequence
from dataclasses import dataclass, field

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from gateway.errors import StoreError
from gateway.jsontext import dumps, loads
from gateway.store.records import UnreadableEvent

MAGIC = b"WGE"
VERSION = 1
KEY_BYTES = 32
KEY_ID_BYTES = 8
NONCE_BYTES = 12
TAG_BYTES = 16
KEY_PREFIX = "base64:"
_HEADER_BYTES = len(MAGIC) + 1 + KEY_ID_BYTES

Headers = tuple[tuple[str, str], ...]


def parse_key(text: str) -> bytes:
    """A configured key (``base64:...`` or bare base64) as its 32 bytes; ``ValueError`` if not.

    The message never contains the key: it ends up in config errors and logs.
    """
    encoded = text.strip()
    if encoded.startswith(KEY_PREFIX):
        encoded = encoded[len(KEY_PREFIX) :]
    try:
        key = base64.b64decode(encoded, validate=True)
    except (binascii.Error, ValueError):
        raise ValueError(
            'not a base64-encoded key (generate one with: python -c "import os,base64;'
            'print(base64.b64encode(os.urandom(32)).decode())")'
        ) from None
    if len(key) != KEY_BYTES:
        raise ValueError(f"an encryption key is {KEY_BYTES} bytes, this one decodes to {len(key)}")
    return key


def key_id(key: bytes) -> str:
    """The short public id of a key: the first 8 bytes of its SHA-256, in hex."""
    return hashlib.sha256(key).digest()[:KEY_ID_BYTES].hex()


def is_sealed(value: bytes | str) -> bool:
    """Whether a stored field is an envelope (rather than plaintext of a pre-encryption row)."""
    return isinstance(value, bytes) and value[: len(MAGIC)] == MAGIC


@dataclass(frozen=True)
class _Key:
    id: bytes
    aead: AESGCM = field(repr=False)


@dataclass(frozen=True)
class KeyRing:
    """The configured keys: the first seals, every one opens (see the module docstring)."""

    _keys: tuple[_Key, ...] = field(repr=False)

    @classmethod
    def from_config(cls, keys: Sequence[str]) -> KeyRing:
        """A ring from ``store.encryption_keys``; ``StoreError`` naming the bad key's path."""
        ring: list[_Key] = []
        seen: dict[bytes, int] = {}
        for index, text in enumerate(keys):
            where = f"store.encryption_keys[{index}]"
            try:
                key = parse_key(text)
            except ValueError as exc:
                raise StoreError(f"{where}: {exc}") from None
            kid = hashlib.sha256(key).digest()[:KEY_ID_BYTES]
            if kid in seen:
                raise StoreError(f"{where}: repeats store.encryption_keys[{seen[kid]}]")
            seen[kid] = index
            ring.append(_Key(kid, AESGCM(key)))
        if not ring:
            raise StoreError("store.encryption_keys is empty")
        return cls(tuple(ring))

    @property
    def key_ids(self) -> tuple[str, ...]:
        """The ids of the keys, the sealing one first."""
        return tuple(k.id.hex() for k in self._keys)

    def seal(self, plaintext: bytes, context: bytes) -> bytes:
        """An envelope of ``plaintext`` under the first key, bound to ``context``."""
        key = self._keys[0]
        header = MAGIC + bytes([VERSION]) + key.id
        nonce = os.urandom(NONCE_BYTES)
        return header + nonce + key.aead.encrypt(nonce, plaintext, header + context)

    def open(self, envelope: bytes, context: bytes) -> bytes:
        """The plaintext of an envelope sealed with ``context``; ``UnreadableEvent`` if not."""
        if len(envelope) < _HEADER_BYTES + NONCE_BYTES + TAG_BYTES or not is_sealed(envelope):
            raise UnreadableEvent("payload cannot be decrypted: not a valid encrypted envelope")
        version = envelope[len(MAGIC)]
        if version != VERSION:
            raise UnreadableEvent(
                f"payload cannot be decrypted: unknown encryption version {version}"
            )
        header = envelope[:_HEADER_BYTES]
        kid = header[len(MAGIC) + 1 :]
        key = next((k for k in self._keys if k.id == kid), None)
        if key is None:
            raise UnreadableEvent(
                f"payload cannot be decrypted: key id {kid.hex()} not in store.encryption_keys"
                " (list that key again; keep old keys until their events are pruned)"
            )
        nonce = envelope[_HEADER_BYTES : _HEADER_BYTES + NONCE_BYTES]
        sealed = envelope[_HEADER_BYTES + NONCE_BYTES :]
        try:
            return key.aead.decrypt(nonce, sealed, header + context)
        except InvalidTag:
            raise UnreadableEvent(
                f"payload cannot be decrypted: key id {kid.hex()} failed authentication (it was"
                " altered or belongs to another event)"
            ) from None


def _context(source: str, event_id: str, name: str) -> bytes:
    """Associated data binding a sealed field to its event and its field."""
    return json.dumps(["webhook-gateway/payload", source, event_id, name]).encode()


def _headers_json(headers: Headers) -> str:
    return dumps([list(h) for h in headers])


def seal_payload(
    ring: KeyRing | None, source: str, event_id: str, body: bytes, headers: Headers
) -> tuple[bytes, bytes | str]:
    """The body and headers as a store keeps them: sealed under ``ring``, or plain without one.

    Plain headers are JSON text (as every row before encryption); sealed ones are bytes.
    """
    text = _headers_json(headers)
    if ring is None:
        return body, text
    return (
        ring.seal(body, _context(source, event_id, "body")),
        ring.seal(text.encode(), _context(source, event_id, "headers")),
    )


def open_payload(
    ring: KeyRing | None, source: str, event_id: str, body: bytes, headers: bytes | str
) -> tuple[bytes, Headers]:
    """Inverse of ``seal_payload``; plaintext rows (no envelope) are read as they are.

    ``UnreadableEvent`` when the payload cannot be decrypted or its headers are not the JSON
    list of pairs ``seal_payload`` writes (a corrupt row).
    """
    if is_sealed(headers):
        assert isinstance(headers, bytes)  # is_sealed says so; narrows for mypy
        if ring is None:
            raise UnreadableEvent(
                "payload cannot be decrypted: it is encrypted but store.encryption_keys is empty"
                " (configure the keys it was written with)"
            )
        body = ring.open(body, _context(source, event_id, "body"))
        headers = ring.open(headers, _context(source, event_id, "headers"))
    try:
        pairs = loads(headers)
        return body, tuple((str(k), str(v)) for k, v in pairs)
    except (ValueError, TypeError):
        # The message names no content: a corrupt field may hold part of a payload.
        raise UnreadableEvent("stored event is corrupt: its headers do not parse") from None
