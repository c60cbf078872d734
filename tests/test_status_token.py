"""Status tokens (design.md 5.10): the pure check, and ``webhook-gateway status-token``."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from gateway.errors import InvalidToken
from gateway.status.token import mint, verify
from tests.status_support import STATUS_SECRET, status_block
from tests.status_support import mint as mint_by_hand
from tests.support import ENV, config_dict

SECRET = STATUS_SECRET.encode()
NOW = 1_800_000_000.0


def test_a_minted_token_is_the_contracts_and_verifies_until_it_expires():
    token = mint(SECRET, "payments", "pend-1", int(NOW) + 60)
    assert token == mint_by_hand("payments", "pend-1", expiry=int(NOW) + 60)
    assert verify(token, SECRET, "payments", "pend-1", NOW) == int(NOW) + 60
    assert verify(token, SECRET, "payments", "pend-1", NOW + 59.9) == int(NOW) + 60
    with pytest.raises(InvalidToken) as expired:
        verify(token, SECRET, "payments", "pend-1", NOW + 60)
    assert expired.value.reason == "expired"


@pytest.mark.parametrize(
    ("source", "key", "secret"),
    [
        ("payments", "pend-2", SECRET),
        ("refunds", "pend-1", SECRET),
        ("payments", "pend-1", b"x" * 32),
    ],
)
def test_a_token_opens_its_own_payment_only(source, key, secret):
    token = mint(SECRET, "payments", "pend-1", int(NOW) + 60)
    with pytest.raises(InvalidToken) as refused:
        verify(token, secret, source, key, NOW)
    assert refused.value.reason == "mismatch"


def test_a_forged_token_is_never_told_it_expired():
    token = mint(b"not the secret at all, 32 bytes!", "payments", "pend-1", int(NOW) - 60)
    with pytest.raises(InvalidToken) as refused:
        verify(token, SECRET, "payments", "pend-1", NOW)
    assert refused.value.reason == "mismatch"


@pytest.mark.parametrize(
    "token",
    [
        "v1",
        "v1.1800000060",
        "v1.-5.AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
        "v1.1800000060.AAAA",
        "v1.1800000060.AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=",
        "v1.1800000060.AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA+",
        "v1.1234567890123.AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
        "V1.1800000060.AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
        "v1.\uff11\uff18.AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",  # full-width digits
        " v1.1800000060.AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
    ],
)
def test_malformed_tokens(token):
    with pytest.raises(InvalidToken) as refused:
        verify(token, SECRET, "payments", "pend-1", NOW)
    assert refused.value.reason == "malformed"


def test_a_key_that_cannot_be_text_matches_no_token():
    token = mint(SECRET, "payments", "pend-1", int(NOW) + 60)
    with pytest.raises(InvalidToken):
        verify(token, SECRET, "payments", "pend-\udcff", NOW)


# -- the command -------------------------------------------------------------------------------


def _config(tmp_path: Path, status: bool = True) -> Path:
    data = config_dict(
        "http://127.0.0.1:8000/api/webhooks/payments", store_url=f"sqlite:///{tmp_path}/gw.db"
    )
    if status:
        data["status"] = status_block()
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def _run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "gateway", "status-token", *args],
        capture_output=True,
        text=True,
        env={**os.environ, **ENV},
        timeout=60,
        check=False,
    )


def test_status_token_prints_a_token_the_gateway_accepts(tmp_path):
    before = time.time()
    result = _run("payments", "pend-7", "--ttl", "10m", "--config", str(_config(tmp_path)))
    assert result.returncode == 0, result.stderr
    token = result.stdout.strip()
    expiry = int(token.split(".")[1])
    assert before + 600 <= expiry <= time.time() + 601
    assert token == mint_by_hand("payments", "pend-7", expiry=expiry)
    assert "valid until" in result.stderr
    default = _run("payments", "pend-7", "--config", str(_config(tmp_path)))
    assert int(default.stdout.split(".")[1]) - time.time() == pytest.approx(900, abs=5)


def test_status_token_refuses_what_it_cannot_mint(tmp_path):
    off = _run("payments", "k", "--config", str(_config(tmp_path, status=False)))
    assert off.returncode == 1
    assert "no status: block" in off.stderr and off.stdout == ""
    unknown = _run("nope", "k", "--config", str(_config(tmp_path)))
    assert unknown.returncode == 1
    assert "no source named 'nope' keeps payments (sources with payments: payments)" in (
        unknown.stderr
    )
    for bad in ("0s", "soon", "8d"):
        usage = _run("payments", "k", "--ttl", bad, "--config", str(_config(tmp_path)))
        assert usage.returncode == 2, (bad, usage.stderr)
        assert "--ttl" in usage.stderr
