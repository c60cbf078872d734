"""Event payloads encrypted at rest (design.md 5.4): the key ring alone, then both real stores."""

from __future__ import annotations

import base64
import hashlib
import logging
import sqlite3
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import cast

import pytest
import redis.asyncio as aioredis
import yaml

from gateway.config import load_config_text
from gateway.errors import ConfigError, StoreError
from gateway.store import Attempt, Event, Store, open_store
from gateway.store.crypto import (
    MAGIC,
    NONCE_BYTES,
    KeyRing,
    is_sealed,
    key_id,
    open_payload,
    parse_key,
    seal_payload,
)
from harness.redis_server import RedisServer
from tests.support import ENV, config_dict

from .conftest import KEY_A, KEY_B, T0, flush, make_event

RAW_A = bytes(range(32))
RAW_B = bytes(range(100, 132))
ID_A = hashlib.sha256(RAW_A).digest()[:8].hex()
ID_B = hashlib.sha256(RAW_B).digest()[:8].hex()
HEADERS = (("content-type", "application/json"), ("x-provider-account", "acct_secret_42"))
WINDOW = 3600.0


def ctx(name: str = "body") -> bytes:
    return f"payments/evt_1/{name}".encode()


# -- keys ----------------------------------------------------------------------------------------


def test_keys_parse_bare_or_with_the_base64_prefix():
    assert parse_key(KEY_A) == RAW_A
    assert parse_key(KEY_B) == RAW_B
    assert parse_key(f"  {KEY_A}\n") == RAW_A  # a ${file:...} secret may end in a newline
    assert key_id(RAW_A) == ID_A


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (base64.b64encode(bytes(16)).decode(), "decodes to 16"),
        (base64.b64encode(bytes(33)).decode(), "decodes to 33"),
        ("base64:" + base64.b64encode(b"short").decode(), "decodes to 5"),
        ("not base64 at all!", "not a base64-encoded key"),
        (base64.urlsafe_b64encode(b"\xfb" * 32).decode(), "not a base64-encoded key"),
        ("", "decodes to 0"),
    ],
)
def test_bad_keys_are_refused_without_showing_them(text: str, message: str):
    with pytest.raises(ValueError, match=message) as info:
        parse_key(text)
    assert not text or text.removeprefix("base64:") not in str(info.value)


def test_ring_errors_name_the_key_path_never_the_key():
    bad = base64.b64encode(b"x" * 31).decode()
    with pytest.raises(StoreError, match=r"store\.encryption_keys\[1\]: .*decodes to 31") as info:
        KeyRing.from_config([KEY_A, bad])
    assert bad not in str(info.value)
    with pytest.raises(StoreError, match=r"encryption_keys\[2\]: repeats .*encryption_keys\[0\]"):
        KeyRing.from_config([KEY_A, KEY_B, "base64:" + KEY_A])
    with pytest.raises(StoreError, match="empty"):
        KeyRing.from_config([])
    assert KeyRing.from_config([KEY_B, KEY_A]).key_ids == (ID_B, ID_A)
    assert KEY_A not in repr(KeyRing.from_config([KEY_A]))


# -- envelopes -----------------------------------------------------------------------------------


def test_seal_and_open_round_trip_with_a_fresh_nonce_each_time():
    ring = KeyRing.from_config([KEY_A])
    one, two = ring.seal(b"hello", ctx()), ring.seal(b"hello", ctx())
    assert ring.open(one, ctx()) == b"hello" == ring.open(two, ctx())
    assert one[:4] == MAGIC + b"\x01"
    assert one[4:12].hex() == ID_A
    assert one[12 : 12 + NONCE_BYTES] != two[12 : 12 + NONCE_BYTES]
    assert b"hello" not in one
    assert ring.open(ring.seal(b"", ctx()), ctx()) == b""


def test_first_key_seals_and_every_key_opens():
    old = KeyRing.from_config([KEY_A]).seal(b"payload", ctx())
    rotated = KeyRing.from_config([KEY_B, KEY_A])
    assert rotated.open(old, ctx()) == b"payload"
    assert rotated.seal(b"payload", ctx())[4:12].hex() == ID_B
    with pytest.raises(StoreError, match=f"key id {ID_A} not in store.encryption_keys") as info:
        KeyRing.from_config([KEY_B]).open(old, ctx())
    for secret in (KEY_A, KEY_B, RAW_A.hex(), RAW_B.hex()):
        assert secret not in str(info.value)


@pytest.mark.parametrize(
    "where", [3, 12, 12 + NONCE_BYTES, -1], ids=["version", "nonce", "ct", "tag"]
)
def test_a_flipped_byte_fails(where: int):
    ring = KeyRing.from_config([KEY_A])
    envelope = bytearray(ring.seal(b"some payload", ctx()))
    envelope[where] ^= 0x01
    with pytest.raises(StoreError):
        ring.open(bytes(envelope), ctx())


def test_a_flipped_key_id_is_an_unknown_key():
    ring = KeyRing.from_config([KEY_A])
    envelope = bytearray(ring.seal(b"some payload", ctx()))
    envelope[5] ^= 0x01
    with pytest.raises(StoreError, match=r"not in store\.encryption_keys"):
        ring.open(bytes(envelope), ctx())


def test_an_envelope_opens_only_in_its_own_context():
    ring = KeyRing.from_config([KEY_A])
    envelope = ring.seal(b"some payload", ctx("body"))
    with pytest.raises(StoreError, match="altered or belongs to another event"):
        ring.open(envelope, ctx("headers"))


@pytest.mark.parametrize("data", [b"", b"WGE", MAGIC + b"\x01" + bytes(8), b"[]"])
def test_truncated_or_foreign_data_is_not_an_envelope(data: bytes):
    with pytest.raises(StoreError, match="not a valid encrypted envelope"):
        KeyRing.from_config([KEY_A]).open(data, ctx())


def test_payloads_bind_to_source_id_and_field():
    ring = KeyRing.from_config([KEY_A])
    body, headers = seal_payload(ring, "payments", "evt_1", b'{"a":1}', HEADERS)
    assert is_sealed(body) and is_sealed(headers)
    assert open_payload(ring, "payments", "evt_1", body, headers) == (b'{"a":1}', HEADERS)
    for source, event_id in [("payments", "evt_2"), ("stripe", "evt_1")]:
        with pytest.raises(StoreError):
            open_payload(ring, source, event_id, body, headers)
    assert isinstance(headers, bytes)
    with pytest.raises(StoreError):  # the body envelope where the headers one belongs
        open_payload(ring, "payments", "evt_1", headers, body)


def test_plain_payloads_pass_through_and_sealed_ones_need_keys():
    body, headers = seal_payload(None, "payments", "evt_1", b"WGE\x01 looks sealed", HEADERS)
    assert (body, is_sealed(headers)) == (b"WGE\x01 looks sealed", False)
    ring = KeyRing.from_config([KEY_A])
    # A plaintext body that happens to start like an envelope is still plaintext: the
    # headers field decides.
    assert open_payload(ring, "payments", "evt_1", body, headers)[0] == body
    assert isinstance(headers, str)  # plain headers are JSON text, as before encryption
    assert open_payload(ring, "payments", "evt_1", body, headers.encode())[1] == HEADERS
    body, headers = seal_payload(ring, "payments", "evt_1", b"x", HEADERS)
    with pytest.raises(StoreError, match="encryption_keys is empty"):
        open_payload(None, "payments", "evt_1", body, headers)


# -- both stores ---------------------------------------------------------------------------------


@dataclass
class Backend:
    """Opens stores on one database with chosen keys and reads or rewrites its raw events."""

    name: str
    url: str
    raw: Callable[[], Awaitable[dict[str, tuple[bytes, bytes]]]]  # event id -> (body, headers)
    write_raw: Callable[[str, bytes, bytes], Awaitable[None]]

    async def open(self, *keys: str) -> Store:
        return await open_store(self.url, encryption_keys=list(keys))


@pytest.fixture(params=["sqlite", "redis"])
async def backend(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Backend]:
    """One empty database of each kind, with raw access to its event rows."""
    if request.param == "sqlite":
        path = tmp_path / "gateway.db"

        async def raw() -> dict[str, tuple[bytes, bytes]]:
            with sqlite3.connect(path) as conn:
                rows = conn.execute("SELECT id, body, headers FROM events").fetchall()
            return {r[0]: (bytes(r[1]), _bytes(r[2])) for r in rows}

        async def write_raw(event_id: str, body: bytes, headers: bytes) -> None:
            with sqlite3.connect(path) as conn:
                conn.execute(
                    "UPDATE events SET body = ?, headers = ? WHERE id = ?",
                    (body, headers, event_id),
                )

        yield Backend("sqlite", f"sqlite:///{path}", raw, write_raw)
        return
    server: RedisServer = request.getfixturevalue("redis_server")
    await flush(server.url)
    client = aioredis.Redis.from_url(server.url)

    async def raw_redis() -> dict[str, tuple[bytes, bytes]]:
        out: dict[str, tuple[bytes, bytes]] = {}
        async for key in client.scan_iter(match="wg:{q}:ev:*"):
            fields = cast(dict[bytes, bytes], await client.hgetall(key))
            out[fields[b"id"].decode()] = (fields[b"body"], fields[b"headers"])
        return out

    async def write_raw_redis(event_id: str, body: bytes, headers: bytes) -> None:
        async for key in client.scan_iter(match="wg:{q}:ev:*"):
            if await client.hget(key, "id") == event_id.encode():
                await client.hset(key, mapping={"body": body, "headers": headers})

    try:
        yield Backend("redis", server.url, raw_redis, write_raw_redis)
    finally:
        await client.aclose()


def _bytes(value: bytes | str) -> bytes:
    return value.encode() if isinstance(value, str) else bytes(value)


SECRET_BODY = b'{"type":"payment.completed","card":"4242424242424242"}'


def secret_event(id: str = "evt_1", received_at: float = T0) -> Event:
    """An event whose body and headers must not show in the raw store."""
    return replace(make_event(id, body=SECRET_BODY, received_at=received_at), headers=HEADERS)


async def test_round_trip_and_the_raw_rows_hold_no_plaintext(backend: Backend):
    store = await backend.open(KEY_A)
    try:
        await store.accept(secret_event("evt_1"), ["market"], WINDOW, T0)
        await store.claim("payments", "evt_2", 10.0, T0)
        # Sync mode writes the event too, at commit.
        await store.commit(secret_event("evt_2"), ["market"], WINDOW, T0, Attempt(1, T0, 200, 0.05))
        [lease] = await store.lease_due(T0, 30.0, 10, "w1")
        assert (lease.event.body, lease.event.headers) == (SECRET_BODY, HEADERS)
        for event_id in ("evt_1", "evt_2"):
            view = await store.get_event(event_id)
            assert view is not None
            assert (view.event.body, view.event.headers) == (SECRET_BODY, HEADERS)
    finally:
        await store.close()
    rows = await backend.raw()
    assert set(rows) == {"evt_1", "evt_2"}
    for body, headers in rows.values():
        assert body.startswith(MAGIC) and headers.startswith(MAGIC)
        assert body[4:12].hex() == ID_A
        for plain in (b"4242424242424242", b"payment.completed", b"acct_secret_42", b"x-provider"):
            assert plain not in body and plain not in headers


async def test_rotation_old_key_kept_reads_old_key_dropped_fails_clearly(backend: Backend):
    store = await backend.open(KEY_A)
    await store.accept(secret_event("evt_old"), ["market"], WINDOW, T0)
    await store.close()

    store = await backend.open(KEY_B, KEY_A)
    await store.accept(secret_event("evt_new"), ["market"], WINDOW, T0 + 1)
    for event_id in ("evt_old", "evt_new"):
        view = await store.get_event(event_id)
        assert view is not None and view.event.body == SECRET_BODY
    await store.close()
    rows = await backend.raw()
    assert rows["evt_old"][0][4:12].hex() == ID_A
    assert rows["evt_new"][0][4:12].hex() == ID_B

    store = await backend.open(KEY_B)
    try:
        view = await store.get_event("evt_new")
        assert view is not None and view.event.body == SECRET_BODY
        with pytest.raises(StoreError, match=f"key id {ID_A}") as info:
            await store.get_event("evt_old")
        assert KEY_A not in str(info.value)
        # The unreadable event is dead-lettered; the readable one is still delivered.
        [lease] = await store.lease_due(T0 + 5, 30.0, 10, "w1")
        assert lease.event.id == "evt_new"
    finally:
        await store.close()


async def test_a_flipped_byte_in_the_stored_body_fails(backend: Backend):
    store = await backend.open(KEY_A)
    try:
        await store.accept(secret_event(), ["market"], WINDOW, T0)
        body, headers = (await backend.raw())["evt_1"]
        tampered = bytearray(body)
        tampered[-5] ^= 0x20
        await backend.write_raw("evt_1", bytes(tampered), headers)
        with pytest.raises(StoreError, match="failed authentication"):
            await store.get_event("evt_1")
        assert await store.lease_due(T0, 30.0, 10, "w1") == []
        [dead], _ = await store.list_dead_letters()
        assert dead.event_id == "evt_1"
        assert "failed authentication" in dead.reason
    finally:
        await store.close()


async def test_ciphertext_swapped_between_events_fails(backend: Backend):
    store = await backend.open(KEY_A)
    try:
        await store.accept(secret_event("evt_1"), ["market"], WINDOW, T0)
        await store.accept(make_event("evt_2", received_at=T0 + 1), ["market"], WINDOW, T0 + 1)
        rows = await backend.raw()
        await backend.write_raw("evt_2", *rows["evt_1"])
        with pytest.raises(StoreError, match="belongs to another event"):
            await store.get_event("evt_2")
        view = await store.get_event("evt_1")
        assert view is not None and view.event.body == SECRET_BODY
    finally:
        await store.close()


async def test_plaintext_rows_from_before_encryption_still_read(backend: Backend):
    store = await backend.open()
    await store.accept(secret_event("evt_plain"), ["market"], WINDOW, T0)
    await store.close()
    assert SECRET_BODY in (await backend.raw())["evt_plain"][0]

    store = await backend.open(KEY_A)
    try:
        await store.accept(secret_event("evt_sealed"), ["market"], WINDOW, T0 + 1)
        for event_id in ("evt_plain", "evt_sealed"):
            view = await store.get_event(event_id)
            assert view is not None
            assert (view.event.body, view.event.headers) == (SECRET_BODY, HEADERS)
        leases = await store.lease_due(T0 + 2, 30.0, 10, "w1")
        assert sorted(lease.event.id for lease in leases) == ["evt_plain", "evt_sealed"]
        assert {lease.event.body for lease in leases} == {SECRET_BODY}
    finally:
        await store.close()
    rows = await backend.raw()
    assert SECRET_BODY in rows["evt_plain"][0]
    assert SECRET_BODY not in rows["evt_sealed"][0]


async def test_sealed_rows_without_keys_fail_clearly(backend: Backend):
    store = await backend.open(KEY_A)
    await store.accept(secret_event(), ["market"], WINDOW, T0)
    await store.close()
    store = await backend.open()
    try:
        with pytest.raises(StoreError, match="encryption_keys is empty"):
            await store.get_event("evt_1")
    finally:
        await store.close()


# -- unreadable events: dead-lettered, never a stalled queue -------------------------------------


def _store_logs(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.name == "gateway.store"]


async def test_an_event_under_a_dropped_key_is_dead_lettered_and_the_rest_delivered(
    backend: Backend, caplog: pytest.LogCaptureFixture
):
    store = await backend.open(KEY_A)
    await store.accept(secret_event("evt_a", T0), ["market"], WINDOW, T0)
    await store.close()

    store = await backend.open(KEY_B)  # key A dropped from the ring
    try:
        await store.accept(secret_event("evt_b", T0 + 1), ["market"], WINDOW, T0 + 1)
        with caplog.at_level(logging.INFO, logger="gateway.store"):
            leases = await store.lease_due(T0 + 2, 30.0, 10, "w1")
            assert [lease.event.id for lease in leases] == ["evt_b"]
            assert leases[0].event.body == SECRET_BODY
            assert await store.complete(leases[0], Attempt(1, T0 + 2, 200, 0.01))
            [dead], _ = await store.list_dead_letters()
            assert (dead.event_id, dead.destination, dead.dead_at) == ("evt_a", "market", T0 + 2)
            assert dead.reason.startswith(
                f"payload cannot be decrypted: key id {ID_A} not in store.encryption_keys"
            )
            assert dead.last_attempt == Attempt(1, T0 + 2, None, 0.0, dead.reason)
            assert await store.queue_depth() == {("market", "dead"): 1}
            # Dead, so it is not leased (nor logged) again.
            assert await store.lease_due(T0 + 1000, 30.0, 10, "w1") == []
        [record] = _store_logs(caplog)
        assert record.levelno == logging.ERROR
        message = record.getMessage()
        assert ID_A in message and dead.delivery_id in message
        for secret in (KEY_A, KEY_B.removeprefix("base64:"), "4242424242424242"):
            assert secret not in message and secret not in dead.reason
    finally:
        await store.close()

    store = await backend.open(KEY_B, KEY_A)  # the key is back: redrive delivers it
    try:
        assert await store.redrive(None, T0 + 10) == 1
        [lease] = await store.lease_due(T0 + 10, 30.0, 10, "w1")
        assert (lease.event.id, lease.event.body, lease.attempt) == ("evt_a", SECRET_BODY, 1)
        assert await store.complete(lease, Attempt(1, T0 + 10, 200, 0.01))
        view = await store.get_event("evt_a")
        assert view is not None
        assert view.status == "delivered"
        [delivery] = view.deliveries
        assert [a.status for a in delivery.attempts] == [None, 200]  # the failure stays recorded
    finally:
        await store.close()


async def test_unreadable_events_do_not_use_up_the_batch(backend: Backend):
    store = await backend.open(KEY_A)
    for i in range(3):  # older than the readable one, so they come first
        await store.accept(secret_event(f"evt_lost_{i}", T0 + i), ["m"], WINDOW, T0 + i)
    await store.close()
    store = await backend.open(KEY_B)
    try:
        await store.accept(secret_event("evt_ok", T0 + 5), ["m"], WINDOW, T0 + 5)
        [lease] = await store.lease_due(T0 + 6, 30.0, 1, "w1")
        assert lease.event.id == "evt_ok"
        assert await store.queue_depth() == {("m", "dead"): 3, ("m", "leased"): 1}
    finally:
        await store.close()


async def test_a_corrupt_plaintext_row_is_dead_lettered_without_showing_it(backend: Backend):
    store = await backend.open()
    try:
        await store.accept(secret_event("evt_bad", T0), ["m"], WINDOW, T0)
        await store.accept(secret_event("evt_ok", T0 + 1), ["m"], WINDOW, T0 + 1)
        body, _ = (await backend.raw())["evt_bad"]
        await backend.write_raw("evt_bad", body, b'{"not": "a list of pairs" 4242')
        [lease] = await store.lease_due(T0 + 2, 30.0, 10, "w1")
        assert lease.event.id == "evt_ok"
        [dead], _ = await store.list_dead_letters()
        assert dead.event_id == "evt_bad"
        assert dead.reason.startswith("stored event is corrupt")
        assert "4242" not in dead.reason
    finally:
        await store.close()


async def test_open_store_refuses_a_bad_key_by_its_path(tmp_path: Path):
    bad = base64.b64encode(bytes(24)).decode()
    with pytest.raises(StoreError, match=r"store\.encryption_keys\[1\]") as info:
        await open_store(f"sqlite:///{tmp_path}/g.db", encryption_keys=[KEY_A, bad])
    assert bad not in str(info.value)


# -- config --------------------------------------------------------------------------------------


def _load(keys: list[object]):
    data = config_dict("http://127.0.0.1:8000/hook", store_url="sqlite:///x.db")
    data["store"]["encryption_keys"] = keys
    return load_config_text(yaml.safe_dump(data), environ=ENV)


def test_config_takes_valid_keys():
    config = _load([KEY_B, KEY_A])
    assert [k.value for k in config.store.encryption_keys] == [KEY_B, KEY_A]
    assert KEY_A not in repr(config.store)


def test_config_names_each_bad_key_by_its_path_and_never_shows_it():
    short = base64.b64encode(bytes(31)).decode()
    with pytest.raises(ConfigError) as info:
        _load([KEY_A, short, "base64:%%%", "", 12])
    problems = {p.key: p.message for p in info.value.problems}
    assert set(problems) == {
        "store.encryption_keys[1]",
        "store.encryption_keys[2]",
        "store.encryption_keys[3]",
        "store.encryption_keys[4]",
    }
    assert "decodes to 31" in problems["store.encryption_keys[1]"]
    assert "not a base64-encoded key" in problems["store.encryption_keys[2]"]
    assert short not in str(info.value) and KEY_A not in str(info.value)


def test_config_refuses_a_key_listed_twice_naming_its_index_only():
    # The same 32 bytes, bare and with the prefix: one key, listed twice.
    bare_a = KEY_A.removeprefix("base64:")
    with pytest.raises(ConfigError) as info:
        _load([KEY_A, KEY_B, "base64:" + bare_a, KEY_B])
    problems = {p.key: p.message for p in info.value.problems}
    assert problems == {
        "store.encryption_keys[2]": "repeats store.encryption_keys[0] (list each key once)",
        "store.encryption_keys[3]": "repeats store.encryption_keys[1] (list each key once)",
    }
    text = str(info.value)
    assert bare_a not in text and KEY_B.removeprefix("base64:") not in text


def test_config_reports_a_repeat_by_its_own_index_after_a_bad_entry():
    with pytest.raises(ConfigError) as info:
        _load([KEY_A, "not a key", KEY_A])
    assert {p.key for p in info.value.problems} == {
        "store.encryption_keys[1]",
        "store.encryption_keys[2]",
    }
