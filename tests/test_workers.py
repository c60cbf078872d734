"""server.workers: N processes share the port and the store; /metrics counts them all."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys

import aiohttp
import yaml

from harness.redis_server import free_port
from tests.support import ENV, config_dict, payment_body, sign_payment
from tests.waiting import eventually


async def _wait_ready(url: str) -> None:
    async with aiohttp.ClientSession() as session:

        async def status() -> int:
            async with session.get(url) as response:
                return response.status

        await eventually(
            status,
            f"{url} to answer 200",
            until=lambda code: code == 200,
            timeout=30,
            interval=0.1,
            ignoring=(aiohttp.ClientError,),
        )


async def test_two_processes_share_the_port_and_report_metrics_together(tmp_path):
    port, admin = free_port(), free_port()
    data = config_dict(
        "http://127.0.0.1:9/api/webhooks/payments", store_url=f"sqlite:///{tmp_path}/gw.db"
    )
    data["server"] = {
        "listen": f"127.0.0.1:{port}",
        "admin_listen": f"127.0.0.1:{admin}",
        "workers": 2,
    }
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(data))
    log = (tmp_path / "gateway.log").open("wb")
    temp = tmp_path / "tmp"
    temp.mkdir()
    process = subprocess.Popen(
        [sys.executable, "-m", "gateway", "run", "--config", str(path)],
        env={**os.environ, **ENV, "TMPDIR": str(temp)},
        stderr=log,
    )
    try:
        await _wait_ready(f"http://127.0.0.1:{admin}/readyz")

        def served_by() -> set[bytes]:
            return {
                line.split(b'"pid":')[1].split(b",")[0]
                for line in (tmp_path / "gateway.log").read_bytes().splitlines()
                if b'"outcome":"accepted"' in line and b'"pid":' in line
            }

        sent = 0
        async with aiohttp.ClientSession(
            # A new connection per request, so the kernel spreads them over both processes.
            connector=aiohttp.TCPConnector(force_close=True)
        ) as session:
            # /readyz answers once one process serves; the other may bind the port a moment
            # later on a busy machine, so send until both have taken requests (or give up).
            async def twenty_more() -> set[bytes]:
                nonlocal sent
                for _ in range(20):
                    body = payment_body()
                    async with session.post(
                        f"http://127.0.0.1:{port}/hooks/payments",
                        data=body,
                        headers=sign_payment(body),
                    ) as response:
                        assert response.status == 202
                    sent += 1
                return served_by()

            # Between rounds, the log lines reach the file.
            await eventually(
                twenty_more,
                "both processes to take requests (seen: the pids that did)",
                until=lambda pids: len(pids) >= 2 and sent >= 40,
                timeout=30,
                interval=0.1,
            )
            async with session.get(f"http://127.0.0.1:{admin}/metrics") as response:
                text = await response.text()
        accepted = re.search(
            r'webhook_gateway_requests_total\{outcome="accepted",source="payments"\} (\S+)', text
        )
        assert accepted is not None, text[:2000]
        # Both processes' counts, merged into one series by the one /metrics.
        assert float(accepted.group(1)) == sent
        assert len(served_by()) == 2, "both processes took requests"
    finally:
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=60) == 0
        log.close()
    assert not list(temp.iterdir()), "the processes' metrics directory is removed at the stop"
