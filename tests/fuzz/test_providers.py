"""Every built-in provider, fed random bytes, headers, secrets and clocks: ``verify`` answers
``None`` or ``VerificationError`` and nothing else (anything else is a 500 at the ingress), and
what ``sign`` produces ``verify`` accepts."""

from __future__ import annotations

import base64
import json

from hypothesis import assume, given
from hypothesis import strategies as st

from gateway.errors import VerificationError
from gateway.providers.base import Secret
from gateway.providers.registry import load_registry
from tests.fuzz.settings import fuzz
from tests.providers.specs import NOW, SCHEMES, Scheme

REGISTRY = load_registry(use_entry_points=False)
TOLERANCE = 300.0

#: Every built-in is covered: the schemes of tests/providers/specs.py, plus ``none``.
assert {s.provider for s in SCHEMES} | {"none"} == set(REGISTRY.names()), REGISTRY.names()

# Pieces that signature headers are made of, so random values often get past the first split
# and reach the deeper parsing (timestamps, versions, digests), not only the "malformed" branch.
FRAGMENTS = st.sampled_from(
    [
        "v1", "v1a", "v0", "t", "=", ",", ", ", " ", ";", "sha256=", "sha512=", "Bearer ",
        "whsec_", "whpk_", "0", "-1", "1774589675", "1774589675000", "99999999999999999",
        "AAAA", "==", "zz", "\t", ".", "e3", "1e9", "ff" * 32,
    ]
)  # fmt: skip
VALUES = st.one_of(
    st.text(max_size=60),
    st.lists(st.one_of(FRAGMENTS, st.text(max_size=6)), max_size=12).map("".join),
)


def provider(scheme: Scheme):
    return REGISTRY.get(scheme.provider)(tolerance=TOLERANCE, options=scheme.options)


def header_names(scheme: Scheme) -> st.SearchStrategy[str]:
    """The scheme's own header names in any case, or any other name."""
    return st.one_of(
        st.sampled_from(scheme.required).flatmap(
            lambda name: st.sampled_from([name, name.lower(), name.upper()])
        ),
        st.text(min_size=1, max_size=20),
    )


@st.composite
def requests(draw, scheme: Scheme, values=VALUES):
    """A random request for ``scheme``: body, headers (often a genuine set, then changed),
    accepted secrets and a clock."""
    body = draw(st.binary(max_size=200) | st.just(b'{"id":"e","type":"t","data":{}}'))
    headers: dict[str, str] = {}
    if draw(st.booleans()):
        headers = dict(provider(scheme).sign(b'{"id":"e","type":"t","data":{}}',
                                             Secret(scheme.secret), NOW))  # fmt: skip
    changes = draw(st.dictionaries(header_names(scheme), values, max_size=5))
    headers.update(changes)
    secrets = draw(
        st.lists(
            st.one_of(
                st.sampled_from([scheme.verifier, scheme.old_verifier]),
                st.text(min_size=1, max_size=40),
                st.binary(min_size=1, max_size=40).map(
                    lambda raw: "whsec_" + base64.b64encode(raw).decode()
                ),
            ),
            min_size=1,
            max_size=3,
        )
    )
    checker = provider(scheme)
    # Only secrets the config loader would let through reach verify().
    assume(all(checker.describe_secret(Secret(s)) is None for s in secrets))
    now = draw(st.one_of(st.just(NOW), st.floats(min_value=0, max_value=4e9)))
    return body, headers, [Secret(s) for s in secrets], now


by_scheme = st.sampled_from(SCHEMES)


def refusal(checker, body, headers, secrets, now) -> VerificationError | None:
    """Run ``verify``: ``None`` if it accepted, its ``VerificationError`` if it refused; any
    other exception propagates and fails the property."""
    try:
        checker.verify(body, headers, secrets, now)
    except VerificationError as exc:
        return exc
    return None


@fuzz(300)
@given(data=st.data(), scheme=by_scheme)
def test_verify_raises_only_verification_error(data, scheme: Scheme) -> None:
    body, headers, secrets, now = data.draw(requests(scheme))
    refused = refusal(provider(scheme), body, headers, secrets, now)
    assert refused is None or (refused.status, refused.code) == (401, "invalid_signature")


@fuzz(300)
@given(
    scheme=by_scheme,
    body=st.binary(max_size=300),
    now=st.floats(min_value=1e9, max_value=4e9),
    events=st.dictionaries(st.text(max_size=8), st.text(max_size=8), max_size=3),
)
def test_sign_then_verify_round_trips(scheme: Scheme, body: bytes, now: float, events) -> None:
    if scheme.provider == "rafiki":
        # Rafiki signs a JSON event of {id, type, data}; any other body cannot be signed.
        body = json.dumps({"id": "evt", "type": "t", "data": events}).encode()
    signer = provider(scheme)
    headers = signer.sign(body, Secret(scheme.secret), now)
    provider(scheme).verify(body, headers, [Secret(scheme.verifier)], now)
    # Rotation: the request still verifies with the old secret listed first.
    provider(scheme).verify(
        body, headers, [Secret(scheme.old_verifier), Secret(scheme.verifier)], now
    )


@fuzz(200)
@given(body=st.binary(max_size=100), headers=st.dictionaries(st.text(), st.text(), max_size=4))
def test_unsigned_provider_never_raises(body: bytes, headers) -> None:
    REGISTRY.get("none")(tolerance=TOLERANCE, options={}).verify(body, headers, [], NOW)


# A header value as aiohttp hands over bytes that are not UTF-8: each such byte becomes a lone
# surrogate (U+DC80..U+DCFF, the "surrogateescape" error handler).
ESCAPED = st.lists(
    st.one_of(
        FRAGMENTS, st.text(max_size=4), st.characters(min_codepoint=0xDC80, max_codepoint=0xDCFF)
    ),
    min_size=1,
    max_size=10,
).map("".join)


@fuzz(300)
@given(data=st.data(), scheme=by_scheme)
def test_verify_refuses_undecodable_header_bytes(data, scheme: Scheme) -> None:
    body, headers, secrets, now = data.draw(requests(scheme, values=ESCAPED))
    refused = refusal(provider(scheme), body, headers, secrets, now)
    assert refused is None or (refused.status, refused.code) == (401, "invalid_signature")
