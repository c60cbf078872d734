"""The same attacks against every signing scheme: tampering, wrong and rotated secrets,
missing and malformed headers, stale and future timestamps."""

from __future__ import annotations

import pytest

from gateway.errors import VerificationError
from gateway.providers.base import Secret

from .specs import BODY, NOW, SCHEMES, Scheme

TOLERANCE = 300.0
TAMPERED = BODY.replace(b'"paid"', b'"PAID"')


def _cases(attribute: str) -> list[tuple[Scheme, str]]:
    return [(s, item) for s in SCHEMES for item in getattr(s, attribute)]


def _signed(make, scheme: Scheme, *, old: bool = False) -> dict[str, str]:
    provider = make(scheme.provider, scheme.options, TOLERANCE)
    secret = scheme.old_secret if old else scheme.secret
    headers: dict[str, str] = provider.sign(BODY, Secret(secret), NOW)
    return headers


def _refused(make, scheme: Scheme, body: bytes, headers, secrets, now: float = NOW) -> None:
    provider = make(scheme.provider, scheme.options, TOLERANCE)
    with pytest.raises(VerificationError) as info:
        provider.verify(body, headers, [Secret(s) for s in secrets], now)
    assert (info.value.status, info.value.code) == (401, "invalid_signature")


def _accepted(make, scheme: Scheme, body: bytes, headers, secrets, now: float = NOW) -> None:
    provider = make(scheme.provider, scheme.options, TOLERANCE)
    provider.verify(body, headers, [Secret(s) for s in secrets], now)


by_id = pytest.mark.parametrize("scheme", SCHEMES, ids=[s.id for s in SCHEMES])


@by_id
def test_own_signature_verifies(make, scheme: Scheme) -> None:
    _accepted(make, scheme, BODY, _signed(make, scheme), [scheme.verifier])


@by_id
def test_header_names_are_case_insensitive(make, scheme: Scheme) -> None:
    headers = _signed(make, scheme)
    _accepted(make, scheme, BODY, {k.upper(): v for k, v in headers.items()}, [scheme.verifier])
    _accepted(make, scheme, BODY, {k.lower(): v for k, v in headers.items()}, [scheme.verifier])


@by_id
def test_tampered_body_is_refused(make, scheme: Scheme) -> None:
    headers = _signed(make, scheme)
    if not scheme.signs_body:
        # A static token says nothing about the body: documented, and checked here.
        _accepted(make, scheme, TAMPERED, headers, [scheme.verifier])
        return
    _refused(make, scheme, TAMPERED, headers, [scheme.verifier])
    _refused(make, scheme, BODY[:-1], headers, [scheme.verifier])


@by_id
def test_wrong_secret_is_refused(make, scheme: Scheme) -> None:
    _refused(make, scheme, BODY, _signed(make, scheme), [scheme.old_verifier])


@by_id
def test_no_secret_refuses_everything(make, scheme: Scheme) -> None:
    _refused(make, scheme, BODY, _signed(make, scheme), [])


@by_id
def test_old_secret_accepted_during_rotation_only(make, scheme: Scheme) -> None:
    headers = _signed(make, scheme, old=True)
    _accepted(make, scheme, BODY, headers, [scheme.verifier, scheme.old_verifier])
    _accepted(make, scheme, BODY, headers, [scheme.old_verifier, scheme.verifier])
    _refused(make, scheme, BODY, headers, [scheme.verifier])  # rotation finished


@pytest.mark.parametrize(
    ("scheme", "header"),
    _cases("required"),
    ids=[f"{s.id}-{h}" for s, h in _cases("required")],
)
def test_missing_header_is_refused(make, scheme: Scheme, header: str) -> None:
    headers = _signed(make, scheme)
    assert header in headers
    del headers[header]
    _refused(make, scheme, BODY, headers, [scheme.verifier])


@pytest.mark.parametrize(
    ("scheme", "case"),
    _cases("malformed"),
    ids=[f"{s.id}-{'-'.join(c[0].split())}" for s, c in _cases("malformed")],
)
def test_malformed_header_is_refused(make, scheme: Scheme, case) -> None:
    _, change = case
    headers = change(_signed(make, scheme))
    _refused(make, scheme, BODY, headers, [scheme.verifier])


TIMED = [s for s in SCHEMES if s.bump_timestamp]
UNTIMED = [s for s in SCHEMES if not s.bump_timestamp]
timed = pytest.mark.parametrize("scheme", TIMED, ids=[s.id for s in TIMED])


@timed
def test_tampered_timestamp_is_refused(make, scheme: Scheme) -> None:
    assert scheme.bump_timestamp is not None
    headers = scheme.bump_timestamp(_signed(make, scheme))
    _refused(make, scheme, BODY, headers, [scheme.verifier])


@timed
def test_timestamp_window_is_inclusive(make, scheme: Scheme) -> None:
    headers = _signed(make, scheme)
    _accepted(make, scheme, BODY, headers, [scheme.verifier], now=NOW + TOLERANCE)
    _accepted(make, scheme, BODY, headers, [scheme.verifier], now=NOW - TOLERANCE)


@timed
def test_timestamp_too_old_is_refused(make, scheme: Scheme) -> None:
    headers = _signed(make, scheme)
    _refused(make, scheme, BODY, headers, [scheme.verifier], now=NOW + TOLERANCE + 1)
    _refused(make, scheme, BODY, headers, [scheme.verifier], now=NOW + 86_400)


@timed
def test_timestamp_too_far_ahead_is_refused(make, scheme: Scheme) -> None:
    headers = _signed(make, scheme)
    _refused(make, scheme, BODY, headers, [scheme.verifier], now=NOW - TOLERANCE - 1)
    _refused(make, scheme, BODY, headers, [scheme.verifier], now=NOW - 86_400)


@timed
def test_tolerance_is_configurable(make, scheme: Scheme) -> None:
    headers = _signed(make, scheme)
    provider = make(scheme.provider, scheme.options, 30.0)
    provider.verify(BODY, headers, [Secret(scheme.verifier)], NOW + 30)
    with pytest.raises(VerificationError):
        provider.verify(BODY, headers, [Secret(scheme.verifier)], NOW + 31)


@timed
def test_timestamped_schemes_declare_it(make, scheme: Scheme) -> None:
    assert make(scheme.provider, scheme.options).uses_timestamp


@pytest.mark.parametrize("scheme", UNTIMED, ids=[s.id for s in UNTIMED])
def test_schemes_without_timestamp_say_so(make, scheme: Scheme) -> None:
    # The loader's window >= 2 x tolerance rule must not bind a scheme with no timestamp.
    assert not make(scheme.provider, scheme.options).uses_timestamp


@pytest.mark.parametrize("scheme", UNTIMED, ids=[s.id for s in UNTIMED])
def test_schemes_without_timestamp_ignore_the_clock(make, scheme: Scheme) -> None:
    headers = _signed(make, scheme)
    for now in (NOW - 10 * 86_400, NOW + 10 * 86_400):
        _accepted(make, scheme, BODY, headers, [scheme.verifier], now=now)
