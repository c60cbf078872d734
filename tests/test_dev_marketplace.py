"""`make marketplace`: the stand-in answers every path the docs and configs deliver to."""

from __future__ import annotations

import asyncio
import importlib.util
import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path
from types import ModuleType

import aiohttp

from gateway.secret import Secret
from gateway.signing import sign_delivery
from harness.redis_server import free_port
from tests.support import MARKETPLACE_SECRET, PAYMENTS_SECRET, payment_body
from tests.waiting import eventually

REPO = Path(__file__).resolve().parents[1]
SCRIPT = REPO / "scripts" / "dev_marketplace.py"
#: A marketplace path as the docs and configs write a destination URL.
MARKETPLACE_PATH = re.compile(r"/api/webhooks/[A-Za-z0-9_-]+")


def _stand_in() -> ModuleType:
    spec = importlib.util.spec_from_file_location("dev_marketplace", SCRIPT)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _documented_paths() -> set[str]:
    files = [REPO / "README.md", REPO / "config.yaml", *sorted((REPO / "docs").glob("*.md"))]
    files += sorted(p for p in (REPO / "deploy").rglob("*") if p.is_file() and p.suffix != ".json")
    return {path for file in files for path in MARKETPLACE_PATH.findall(file.read_text())}


def test_the_stand_in_serves_every_path_the_docs_and_configs_deliver_to():
    documented = _documented_paths()
    # payments from config.yaml and the README, Rafiki's from docs/integrate-marketplace.md.
    assert {"/api/webhooks/payments", "/api/webhooks/rafiki"} <= documented
    assert documented <= set(_stand_in().PATHS)


async def _wait_listening(port: int, process: subprocess.Popen[bytes]) -> None:
    async def listening() -> bool:
        assert process.poll() is None, "the stand-in exited"
        _, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.close()
        await writer.wait_closed()
        return True

    await eventually(listening, f"the stand-in on port {port}", timeout=30, ignoring=(OSError,))


async def test_each_path_accepts_the_gateways_signature_and_refuses_a_wrong_one():
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, str(SCRIPT)],
        env={
            **os.environ,
            "MARKETPLACE_WEBHOOK_SECRET": MARKETPLACE_SECRET,
            "MARKETPLACE_PORT": str(port),
        },
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    answers = {}
    try:
        await _wait_listening(port, process)
        body = payment_body()
        async with aiohttp.ClientSession() as session:
            for path in _stand_in().PATHS:
                for name, secret in (("right", MARKETPLACE_SECRET), ("wrong", PAYMENTS_SECRET)):
                    headers = sign_delivery(body, Secret(secret), f"msg_{name}", time.time())
                    headers["Content-Type"] = "application/json"
                    url = f"http://127.0.0.1:{port}{path}"
                    async with session.post(url, data=body, headers=headers) as response:
                        answers[path, name] = response.status
    finally:
        process.terminate()
        output, _ = process.communicate(timeout=30)
    assert answers == {
        ("/api/webhooks/payments", "right"): 200,
        ("/api/webhooks/payments", "wrong"): 401,
        ("/api/webhooks/rafiki", "right"): 200,
        ("/api/webhooks/rafiki", "wrong"): 401,
    }
    lines = output.decode().splitlines()
    assert lines[0] == (
        f"marketplace on 127.0.0.1:{port}: POST /api/webhooks/payments, POST /api/webhooks/rafiki"
    )
    printed = [json.loads(line) for line in lines if line.startswith("{")]
    assert [(p["path"], p["webhook-id"]) for p in printed] == [
        ("/api/webhooks/payments", "msg_right"),
        ("/api/webhooks/rafiki", "msg_right"),
    ]
    assert sum(line.startswith("REFUSED (signature) /api/webhooks/") for line in lines) == 2
