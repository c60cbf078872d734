"""A limiter in Redis, shared by every process and replica: one Lua script per request.

The script reads the TAT, runs the steps of ``gcra.decide`` and writes the new TAT in one
atomic call, so concurrent requests from any number of gateways never both take the last slot
(design.md 5.3). It touches a single key, ``wg:{rl:<key>}``; the braces are a Redis Cluster hash
tag, so the key's slot is fixed by ``rl:<key>`` and the script runs on a cluster as it does on
one server. Each write sets a millisecond expiry at the moment the bucket would be full again,
so idle keys vanish on their own and a flood of distinct senders costs no lasting memory.

The clock: by default the script reads Redis ``TIME`` on the primary that owns the key, so
every gateway replica measures one limit with one clock however far their own clocks drift.
When a failover brings a primary whose clock is behind, ``decide`` treats the too-distant TAT as
an empty bucket (see there). ``RedisLimiter(client, clock="caller")`` passes the caller's
``now`` instead; the script body is the same, only ``ARGV[3]`` differs, which is how the tests
prove the Lua and the Python arithmetic agree step by step.

Since Redis 5 scripts replicate by their effects, so reading ``TIME`` before a write is allowed
(Redis 7 does nothing else); the ``replicate_commands`` call asks for it on older servers.
"""

from __future__ import annotations

import asyncio
from typing import Any, Literal

from redis.asyncio import Redis, RedisCluster
from redis.exceptions import RedisError

from gateway.errors import StoreError
from gateway.ratelimit.gcra import MICROS, Decision, RateRule, to_micros
from gateway.redisio.pipeline import AutoPipeline

# gcra(key, interval T (us), burst, now (us) or "" for the server's TIME) decides one request
# and writes the new TAT. Returns {allowed, new TAT, remaining, retry_after (us), reset_after
# (us)}. Every line mirrors gcra.decide; numbers are doubles holding exact integers (< 2**53).
# Integer results are formatted with %.0f because tostring() keeps only 14 digits. A Lua
# function, so the store's accept script can decide the per-source limit with the same lines.
GCRA_FUNCTION = """
local function gcra(key, interval, burst, now_arg)
  if redis.replicate_commands then redis.replicate_commands() end
  interval, burst = tonumber(interval), tonumber(burst)
  local now
  if now_arg == "" then
    local t = redis.call("TIME")
    now = tonumber(t[1]) * 1000000 + tonumber(t[2])
  else
    now = tonumber(now_arg)
  end
  local window = interval * burst
  local stored = redis.call("GET", key)
  local tat = nil
  if stored then tat = tonumber(stored) end
  local base = now
  if tat and tat > now then base = tat end
  if base - now > window then base = now + window end
  local new_tat = base + interval
  if new_tat - now <= window then
    -- floor division, corrected so a rounded quotient can never be one too high
    local spare = window - (new_tat - now)
    local remaining = math.floor(spare / interval)
    if remaining * interval > spare then remaining = remaining - 1 end
    local ttl_ms = math.floor((new_tat - now) / 1000) + 1
    redis.call("SET", key, string.format("%.0f", new_tat), "PX", string.format("%.0f", ttl_ms))
    return {1, string.format("%.0f", new_tat), remaining, 0, string.format("%.0f", new_tat - now)}
  end
  if base ~= tat then
    local ttl_ms = math.floor((base - now) / 1000) + 1
    redis.call("SET", key, string.format("%.0f", base), "PX", string.format("%.0f", ttl_ms))
  end
  local retry_after = new_tat - now - window
  return {0, string.format("%.0f", base), 0, retry_after, string.format("%.0f", base - now)}
end
"""

# KEYS[1] the limit's key. ARGV[1] interval T (us), ARGV[2] burst, ARGV[3] now (us) or "" for
# the server's TIME.
GCRA_LUA = GCRA_FUNCTION + "return gcra(KEYS[1], ARGV[1], ARGV[2], ARGV[3])\n"

#: Redis clients the limiter accepts: one server (or Sentinel-managed) or a cluster.
RedisClient = Redis | RedisCluster


def redis_key(key: str) -> str:
    """The Redis key for a limiter key, hash-tagged so it lands in one cluster slot."""
    return f"wg:{{rl:{key}}}"


class RedisLimiter:
    """GCRA in Redis via one atomic Lua script (EVALSHA, loading the script when missing).

    ``timeout`` (seconds) bounds each call on top of the client's own socket timeouts and
    retries, so a stalled Redis costs a request that long at most, then a ``StoreError``.
    """

    def __init__(
        self,
        client: RedisClient,
        *,
        clock: Literal["server", "caller"] = "server",
        timeout: float | None = None,
        pipeline: AutoPipeline | None = None,
    ) -> None:
        if clock not in ("server", "caller"):
            raise ValueError(f"clock must be 'server' or 'caller', not {clock!r}")
        if timeout is not None and timeout <= 0:
            raise ValueError(f"timeout must be positive, not {timeout!r}")
        self.clock = clock
        self.timeout = timeout
        #: The client the limits live on (a store on the same one may decide them itself).
        self.client = client
        #: The script object (its sha), for a caller that loads scripts at start.
        self.script = client.register_script(GCRA_LUA)
        #: With a pipeline, hits made in one loop turn share a round trip with each other
        #: and with the store's calls.
        self._pipeline = pipeline

    async def hit(self, key: str, rule: RateRule, now: float) -> Decision:
        """Decide one request for ``key``; ``now`` is used only with ``clock="caller"``."""
        now_arg = str(to_micros(now)) if self.clock == "caller" else ""
        try:
            keys = [redis_key(key)]
            args: list[int | str] = [rule.interval_us, rule.burst, now_arg]
            if self._pipeline is not None:
                reply: Any = await self._pipeline.call(
                    self.script, keys, args, give_up_after=self.timeout
                )
            else:
                async with asyncio.timeout(self.timeout):
                    reply = await self.script(keys=keys, args=args)
        except RedisError as exc:
            # ConnectionError and TimeoutError are RedisErrors too; NoScriptError never gets
            # here because the script object loads the script and retries once.
            raise StoreError(f"rate limit store failed: {type(exc).__name__}: {exc}") from exc
        except TimeoutError as exc:
            # Raised by asyncio.timeout or the pipeline's timer (the builtin, not
            # redis.exceptions.TimeoutError).
            raise StoreError(f"rate limit store did not answer within {self.timeout} s") from exc
        return decision_of(reply, rule)


def decision_of(reply: Any, rule: RateRule) -> Decision:
    """The ``Decision`` in a ``gcra`` answer (the limiter's script or the store's accept)."""
    try:
        allowed, new_tat, remaining, retry_after_us, reset_after_us = (int(v) for v in reply)
    except (TypeError, ValueError) as exc:
        raise StoreError("rate limit store answered with something unexpected") from exc
    return Decision(
        allowed=allowed == 1,
        new_tat_us=new_tat,
        limit=rule.burst,
        remaining=remaining,
        retry_after=retry_after_us / MICROS,
        reset_after=reset_after_us / MICROS,
    )
