"""Three OS processes hammer one key on one redis-server: together they get one limit."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import redis

from gateway.ratelimit import RateRule
from harness.redis_server import RedisServer

HAMMER = Path(__file__).with_name("hammer.py")
RATE, BURST, SECONDS, PROCESSES = "20/s", 5, 2.0, 3


def server_time_us(client: redis.Redis) -> int:
    seconds, micros = client.time()
    return int(seconds) * 1_000_000 + int(micros)


def hammer_argv(url: str, *, shared: str, own: str) -> list[str]:
    return [sys.executable, str(HAMMER), url, shared, own, RATE, str(BURST), str(SECONDS)]


def test_three_processes_share_one_limit(redis_server: RedisServer) -> None:
    client = redis.Redis.from_url(redis_server.url)
    client.flushdb()
    children = [
        subprocess.Popen(
            hammer_argv(redis_server.url, shared="shared", own=f"own:{n}"),
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        for n in range(PROCESSES)
    ]
    try:
        for child in children:
            assert child.stdout is not None
            assert child.stdout.readline().strip() == "ready"
        started = server_time_us(client)
        for child in children:
            assert child.stdin is not None
            child.stdin.write("go\n")
            child.stdin.flush()
        results = [json.loads(child.communicate(timeout=60)[0]) for child in children]
        ended = server_time_us(client)
    finally:
        for child in children:
            if child.poll() is None:
                child.kill()
                child.wait()
        client.close()
    for child in children:
        assert child.returncode == 0

    rule = RateRule.parse(RATE, BURST)
    # The most GCRA can grant from a full bucket over the span, measured on Redis's clock
    # (the one the script uses): the burst, one per interval, and one for the edges.
    bound = BURST + (ended - started) // rule.interval_us + 1
    shared = sum(r["shared"] for r in results)
    own = sum(r["own"] for r in results)
    assert shared <= bound, (shared, bound, results)
    # Every process hammered (refusals everywhere) and every one got some of the shared limit.
    assert all(r["attempts"] > r["shared"] > 0 for r in results), results
    # The same hammering on a key per process got each its own limit, far past the bound:
    # the bound above holds because the key is shared, not because the processes were slow.
    assert own > bound, (own, bound, results)
    assert all(r["own"] >= BURST for r in results), results
