"""The command line: check-config, sign and send as a new user runs them (design.md 8)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import yaml
from standardwebhooks import Webhook

from gateway.cli import main
from harness.redis_server import free_port
from tests.support import ENV, PAYMENTS_SECRET, config_dict

REPO = Path(__file__).resolve().parents[1]


def _config(tmp_path: Path, url: str = "http://127.0.0.1:8000/api/webhooks/payments") -> Path:
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(config_dict(url, store_url=f"sqlite:///{tmp_path}/gw.db")))
    return path


def _run(*args: str, env: dict[str, str] | None = None, stdin: bytes | None = None):
    return subprocess.run(
        [sys.executable, "-m", "gateway", *args],
        capture_output=True,
        env={**os.environ, **ENV, **(env or {})},
        input=stdin,
        timeout=60,
        check=False,
    )


def test_check_config_prints_the_effective_config_without_secrets(tmp_path, monkeypatch, capsys):
    for name, value in ENV.items():
        monkeypatch.setenv(name, value)
    assert main(["check-config", "--config", str(_config(tmp_path))]) == 0
    out = capsys.readouterr().out
    effective = yaml.safe_load(out)
    assert effective["sources"]["payments"]["secrets"] == ["***"]
    assert effective["destinations"]["marketplace"]["signing_secret"] == "***"
    for secret in ENV.values():
        assert secret not in out


def test_check_config_names_every_problem_and_exits_1(tmp_path, monkeypatch, capsys):
    for name, value in ENV.items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("PAYMENTS_WEBHOOK_SECRET")
    assert main(["check-config", "--config", str(_config(tmp_path))]) == 1
    err = capsys.readouterr().err
    assert (
        "sources.payments.secrets[0]: environment variable PAYMENTS_WEBHOOK_SECRET is not set"
        in err
    )


def test_the_shipped_config_checks_from_another_directory(tmp_path):
    result = subprocess.run(
        [sys.executable, "-m", "gateway", "check-config", "--config", str(REPO / "config.yaml")],
        capture_output=True,
        env={**os.environ, **ENV},
        cwd=tmp_path,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr.decode()


def test_usage_errors_exit_2():
    assert _run().returncode == 2
    assert _run("frobnicate").returncode == 2


def test_sign_prints_headers_the_standardwebhooks_library_accepts(tmp_path):
    body = json.dumps({"type": "payment.completed", "offerId": "1"}).encode()
    result = _run("sign", "payments", "--config", str(_config(tmp_path)), "--file", "-", stdin=body)
    assert result.returncode == 0, result.stderr.decode()
    headers = dict(
        line.split(": ", 1) for line in result.stdout.decode().splitlines() if ": " in line
    )
    Webhook(PAYMENTS_SECRET).verify(body, headers)  # raises if the signature is wrong


def test_send_posts_a_signed_event_to_a_running_gateway(tmp_path):
    # A real gateway process on the same config, then `send` against it.
    port = free_port()
    path = tmp_path / "config.yaml"
    data = config_dict(
        "http://127.0.0.1:9/api/webhooks/payments", store_url=f"sqlite:///{tmp_path}/gw.db"
    )
    data["server"] = {"listen": f"127.0.0.1:{port}", "admin_listen": "127.0.0.1:0"}
    path.write_text(yaml.safe_dump(data))
    gateway = subprocess.Popen(
        [sys.executable, "-m", "gateway", "run", "--config", str(path)],
        env={**os.environ, **ENV},
        stderr=subprocess.PIPE,
    )
    try:
        # The gateway logs one line once it listens.
        assert gateway.stderr is not None
        for _ in range(50):
            line = gateway.stderr.readline()
            if b"gateway started" in line or not line:
                break
        result = _run("send", "payments", "--config", str(path))
        assert result.returncode == 0, result.stderr.decode()
        status, _, answer = result.stdout.decode().partition(" ")
        assert status == "202"
        assert json.loads(answer)["status"] == "queued"
    finally:
        gateway.terminate()
        gateway.wait(timeout=30)
        if gateway.stderr is not None:
            gateway.stderr.close()


def test_send_to_nothing_says_what_to_do(tmp_path):
    url = f"http://127.0.0.1:{free_port()}/hooks/payments"
    result = _run("send", "payments", "--config", str(_config(tmp_path)), "--url", url)
    assert result.returncode == 1
    assert b"Is the gateway running" in result.stderr


def _sample(tmp_path: Path, *options: str) -> dict:
    result = _run("sign", "payments", "--config", str(_config(tmp_path)), *options)
    assert result.returncode == 0, result.stderr.decode()
    body = result.stderr.decode().strip().splitlines()[-1]  # the sample goes to stderr
    headers = dict(
        line.split(": ", 1) for line in result.stdout.decode().splitlines() if ": " in line
    )
    Webhook(PAYMENTS_SECRET).verify(body.encode(), headers)
    sample: dict = json.loads(body)
    return sample


def _ulid_millis(text: str) -> int:
    alphabet = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"
    assert len(text) == 26 and set(text) <= set(alphabet), text
    return int("".join(f"{alphabet.index(c):05b}" for c in text[:10]), 2)


def test_the_sample_payment_is_what_the_payments_service_sends(tmp_path):
    # What the marketplace's view accepts: status paid for payment.completed, a numeric offer
    # (it looks the job up by pk=int(offerId)), a ULID pendingId, the outgoing payment's URL.
    before = int(time.time() * 1000)
    paid = _sample(tmp_path, "--offer", "42")
    assert set(paid) == {"type", "pendingId", "offerId", "status", "outgoingPaymentId", "timestamp"}
    assert (paid["type"], paid["status"], paid["offerId"]) == ("payment.completed", "paid", 42)
    assert before - 1000 <= _ulid_millis(paid["pendingId"]) <= int(time.time() * 1000)
    assert paid["outgoingPaymentId"].startswith("https://")
    assert paid["timestamp"].endswith("Z")
    failed = _sample(tmp_path, "--status", "failed")
    assert (failed["type"], failed["status"], failed["offerId"]) == ("payment.failed", "failed", 1)
    assert "outgoingPaymentId" not in failed  # the service sends none on a failure


def test_sample_options_are_checked(tmp_path):
    for bad in (["--offer", "offer-1"], ["--offer", "4²"], ["--status", "completed"]):
        result = _run("sign", "payments", "--config", str(_config(tmp_path)), *bad)
        assert result.returncode == 2, bad
