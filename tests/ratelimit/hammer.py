"""A child process for the shared-limit test: hammers one shared key and one key of its own.

Usage: ``python hammer.py URL SHARED_KEY OWN_KEY RATE BURST SECONDS``. Prints ``ready`` once
connected, waits for a line on stdin, hits the two keys in turn for SECONDS, then prints one
JSON line: ``{"shared": allowed, "own": allowed, "attempts": n}``.
"""

from __future__ import annotations

import asyncio
import json
import sys
import time

import redis.asyncio

from gateway.ratelimit import RateRule, RedisLimiter


async def main(url: str, shared: str, own: str, rate: str, burst: int, seconds: float) -> None:
    client = redis.asyncio.Redis.from_url(url)
    limiter = RedisLimiter(client)
    rule = RateRule.parse(rate, burst)
    await client.ping()
    print("ready", flush=True)
    await asyncio.to_thread(sys.stdin.readline)
    counts = {"shared": 0, "own": 0, "attempts": 0}
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        counts["attempts"] += 1
        for name, key in (("shared", shared), ("own", own)):
            if (await limiter.hit(key, rule, time.time())).allowed:
                counts[name] += 1
    await client.aclose()
    print(json.dumps(counts), flush=True)


if __name__ == "__main__":
    url, shared, own, rate, burst, seconds = sys.argv[1:]
    asyncio.run(main(url, shared, own, rate, int(burst), float(seconds)))
