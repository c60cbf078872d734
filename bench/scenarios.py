"""The measurements, each next to its baseline in the same run.

Each function here is one run of one side (a baseline or the gateway); ``bench.__main__``
interleaves them in rounds and ``bench.report`` turns them into ratios.
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import statistics
import time
import timeit
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from multidict import CIMultiDict, CIMultiDictProxy

from bench.payloads import (
    DESTINATION_PATH,
    MARKETPLACE_SECRET,
    PAYMENTS_SECRET,
    SOURCE_PATH,
    event_body,
    payments_key,
)
from bench.procs import BenchError, Proc, get_json, run_loadgen, spawn, wait_ready
from gateway.config import load_config_text
from gateway.signing import signed_content
from harness.redis_server import free_port

HOST = "127.0.0.1"


@dataclass(frozen=True)
class Settings:
    """Sizes and limits of one run; every loop is bounded by a count and by a time."""

    #: Gateway runs per store, each between two baseline runs (B G B G B).
    rounds: int = 2
    concurrency: int = 32
    warmup_seconds: float = 1.0
    warmup_max: int = 3000
    duration: float = 3.0
    max_requests: int = 30000
    delivery_events: int = 3000
    delivery_warmup: int = 200
    delivery_concurrency: int = 16
    #: Timed repeats inside each direct-send baseline run (their median is the reading).
    direct_repeats: int = 3
    verify_repeat: int = 7
    verify_seconds: float = 0.2


QUICK = Settings(
    rounds=1,
    warmup_seconds=0.3,
    warmup_max=500,
    duration=1.0,
    max_requests=4000,
    delivery_events=200,
    delivery_warmup=50,
    verify_repeat=3,
    verify_seconds=0.05,
)


#: Rate limits high enough never to refuse (the pinned measurements run with both on, so
#: their cost is measured, while what they would refuse is not).
NEVER_REFUSING = {"rate": "1000000/s", "burst": 1000000}


def gateway_config(
    *, listen: int, admin: int, store_url: str, destination: str, delivery_concurrency: int,
    rate_limits: bool = False, delivery: str = "queued", workers: int = 1, partitions: int = 1,
) -> str:  # fmt: skip
    """The gateway's config for a run: the payments source of design.md 6, queued delivery to the
    destination by default. Without rate limits unless asked (a limit that refuses measures
    the limit, not the gateway); ``rate_limits`` turns both on with ``NEVER_REFUSING``."""
    source: dict[str, Any] = {
        "path": SOURCE_PATH,
        "provider": "standard-webhooks",
        "secrets": [PAYMENTS_SECRET],
        "tolerance": "5m",
        "allow_ips": ["127.0.0.1/32", "::1/128"],
        "dedupe": {"key": "header:webhook-id", "window": "72h"},
        "event": {"type": "/type", "subject": "/offerId", "time": "/timestamp"},
        "require": ["/type", "/pendingId", "/offerId", "/status"],
        "delivery": delivery,
        "routes": [{"destination": "marketplace", "types": ["payment.*"]}],
    }
    if rate_limits:
        source["rate_limit"] = {"per_ip": NEVER_REFUSING, "per_source": NEVER_REFUSING}
    data: dict[str, Any] = {
        "server": {
            "listen": f"{HOST}:{listen}",
            "admin_listen": f"{HOST}:{admin}",
            "workers": workers,
            "delivery_concurrency": delivery_concurrency,
            "shutdown_timeout": "5s",
            "log_level": "info",
        },
        "store": {"url": store_url, **({"partitions": partitions} if partitions > 1 else {})},
        "destinations": {
            "marketplace": {
                "url": destination,
                "signing_secret": MARKETPLACE_SECRET,
                # Long enough that deliveries held by a paused destination wait, not fail.
                "timeout": "60s",
            }
        },
        "sources": {"payments": source},
    }
    return yaml.safe_dump(data, sort_keys=False)


class Workspace:
    """The run's temporary directory and every process started in it (stopped on exit)."""

    def __init__(self, root: Path, settings: Settings) -> None:
        self.root = root
        self.settings = settings
        self.logs = root / "logs"
        self.logs.mkdir(parents=True, exist_ok=True)
        self._serial = 0

    def _name(self, base: str) -> str:
        self._serial += 1
        return f"{self._serial:02d}-{base}"

    @contextlib.contextmanager
    def helper(self, kind: str, cpus: str | None = None) -> Iterator[tuple[Proc, int]]:
        """A ``bench.servers`` process (baseline or destination) on a free port (on ``cpus``
        if given)."""
        port = free_port(HOST)
        proc = spawn(
            self._name(kind), ["-m", "bench.servers", kind, "--port", str(port)], self.logs, cpus
        )
        try:
            wait_ready(proc, f"http://{HOST}:{port}/_stats")
            yield proc, port
        finally:
            proc.stop()

    @contextlib.contextmanager
    def gateway(self, store_url: str, destination_port: int) -> Iterator[tuple[Proc, int]]:
        """``python -m gateway run`` on a config written for this run; ready when /readyz is."""
        listen, admin = free_port(HOST), free_port(HOST)
        name = self._name("gateway")
        path = self.root / f"{name}.yaml"
        path.write_text(
            gateway_config(
                listen=listen,
                admin=admin,
                store_url=store_url,
                destination=f"http://{HOST}:{destination_port}{DESTINATION_PATH}",
                delivery_concurrency=self.settings.delivery_concurrency,
            )
        )
        proc = spawn(name, ["-m", "gateway", "run", "--config", str(path)], self.logs)
        try:
            wait_ready(proc, f"http://{HOST}:{admin}/readyz")
            yield proc, listen
        finally:
            proc.stop()

    def sqlite_url(self, label: str) -> str:
        """A fresh SQLite database in the run's directory."""
        return f"sqlite:///{self.root / f'{self._name(label)}.db'}"


def _ingress_spec(settings: Settings, port: int, prefix: str) -> dict[str, Any]:
    return {
        "mode": "ingress",
        "host": HOST,
        "port": port,
        "path": SOURCE_PATH,
        "concurrency": settings.concurrency,
        "warmup_seconds": settings.warmup_seconds,
        "warmup_max": settings.warmup_max,
        "duration": settings.duration,
        "max_requests": settings.max_requests,
        "prefix": prefix,
        "expect": 202,
    }


def _loadgen_timeout(settings: Settings) -> float:
    return settings.warmup_seconds + settings.duration + 90.0


def ingress_baseline(ws: Workspace, label: str) -> dict[str, Any]:
    """The bare aiohttp server under the same load; its peak RSS afterwards."""
    with ws.helper("baseline") as (proc, port):
        result = run_loadgen(_ingress_spec(ws.settings, port, label), _loadgen_timeout(ws.settings))
        result["peak_rss_kib"] = proc.peak_rss_kib()
    return result


def ingress_gateway(ws: Workspace, label: str, store_url: str) -> dict[str, Any]:
    """The gateway (queued delivery to a fast destination) under the load; its peak RSS."""
    with (
        ws.helper("destination") as (_dest, dest_port),
        ws.gateway(store_url, dest_port) as (proc, port),
    ):
        result = run_loadgen(_ingress_spec(ws.settings, port, label), _loadgen_timeout(ws.settings))
        result["peak_rss_kib"] = proc.peak_rss_kib()
        # Deliveries that reached the destination while ingress ran (a sanity figure: the
        # worker shares the gateway's CPU with ingress, as it does in production).
        result["delivered_during_run"] = get_json(f"http://{HOST}:{dest_port}/_stats")["count"]
    result["gateway_log"] = proc.log_summary()
    return result


def _wait_count(port: int, count: int, timeout: float) -> dict[str, Any]:
    """Poll the destination until ``count`` POSTs have arrived; its stats then."""
    deadline = time.monotonic() + timeout
    while True:
        stats: dict[str, Any] = get_json(f"http://{HOST}:{port}/_stats")
        if stats["count"] >= count:
            return stats
        if time.monotonic() > deadline:
            raise BenchError(f"only {stats['count']} of {count} deliveries arrived in {timeout} s")
        time.sleep(0.01)


def _accept(settings: Settings, port: int, prefix: str, count: int) -> dict[str, Any]:
    """Send ``count`` signed events to the gateway, no warm-up; all must be accepted."""
    spec = {
        **_ingress_spec(settings, port, prefix),
        "warmup_seconds": 0.0,
        "warmup_max": 0,
        "duration": 60.0,
        "max_requests": count,
    }
    result = run_loadgen(spec, 120.0)
    if result["timed"]["ok"] != count:
        raise BenchError(f"the gateway accepted {result['timed']['ok']} of {count} events")
    return result


def delivery_gateway(ws: Workspace, label: str, store_url: str) -> dict[str, Any]:
    """Time for the gateway to drain N queued events once the destination comes back.

    "Down" is a paused destination (SIGSTOP): connections still complete in the kernel's
    backlog but nothing answers, so the worker's first ``delivery_concurrency`` deliveries
    hang and the rest wait in the store as due. Resuming it (SIGCONT) starts the clock; it
    stops at the destination's own record of the N-th arrival. Refused connections would
    instead reschedule every event by the retry policy, and the drain would measure the
    retry schedule rather than the worker.
    """
    s = ws.settings
    with (
        ws.helper("destination") as (dest, dest_port),
        ws.gateway(store_url, dest_port) as (proc, port),
    ):
        # Warm-up: a few deliveries end to end (connections, code paths, store pages).
        _accept(s, port, f"{label}-warm", s.delivery_warmup)
        _wait_count(dest_port, s.delivery_warmup, 60.0)
        dest.pause()
        try:
            accepted = _accept(s, port, label, s.delivery_events)
        finally:
            up = time.monotonic()
            dest.resume()
        stats = _wait_count(dest_port, s.delivery_warmup + s.delivery_events, 120.0)
        drain = float(stats["last"]) - up
        rss = proc.peak_rss_kib()
    return {
        "events": s.delivery_events,
        "accept_rps": accepted["timed"]["rps"],
        "drain_s": drain,
        "events_per_s": s.delivery_events / drain if drain > 0 else 0.0,
        "arrived": stats["count"] - s.delivery_warmup,
        "peak_rss_kib": rss,
        "gateway_log": proc.log_summary(),
    }


def delivery_direct(ws: Workspace, label: str) -> dict[str, Any]:
    """The same N POSTs sent straight to the destination by aiohttp at the same concurrency;
    the median of a few repeats in one process."""
    s = ws.settings
    with ws.helper("destination") as (_dest, dest_port):
        spec = {
            "mode": "direct",
            "url": f"http://{HOST}:{dest_port}{DESTINATION_PATH}",
            "concurrency": s.delivery_concurrency,
            "warmup_count": s.delivery_warmup,
            "count": s.delivery_events,
            "prefix": label,
            "repeats": s.direct_repeats,
        }
        result = run_loadgen(spec, 120.0)
    times = []
    for timed in result["timed"]:
        if timed["ok"] != s.delivery_events:
            raise BenchError(f"direct baseline: {timed['ok']} of {s.delivery_events} answered 200")
        times.append(timed["elapsed_s"])
    drain = statistics.median(times)
    return {
        "events": s.delivery_events,
        "drain_s": drain,
        "repeats_s": times,
        "events_per_s": s.delivery_events / drain,
    }


def _per_op(fn: Callable[[], object], number: int) -> float:
    return timeit.Timer(fn).timeit(number) / number


def verification(settings: Settings) -> dict[str, Any]:
    """Per-call time of the configured standard-webhooks ``verify`` vs one bare HMAC + compare.

    The verifier is the one the config loader builds for the payments source, called as the
    ingress calls it (aiohttp-style case-insensitive headers, every configured secret, a
    clock). The baseline hashes the very bytes ``verify`` must hash (``id.timestamp.body``)
    and compares digests in constant time: the floor no HMAC scheme can go below. The two are
    timed in alternation and the best of several repeats is kept (the least-disturbed one).
    """
    text = gateway_config(
        listen=1, admin=2, store_url="sqlite:///unused.db", destination="http://127.0.0.1:3/",
        delivery_concurrency=1,
    )  # fmt: skip
    source = load_config_text(text, environ={}).sources["payments"]
    verifier, secrets = source.verifier, source.secrets
    body = event_body(0, "verify")
    now = time.time()
    signed = verifier.sign(body, secrets[0], now, msg_id="msg_verify_00000000")
    headers = CIMultiDictProxy(
        CIMultiDict(
            {
                "Host": f"{HOST}:8080",
                "User-Agent": "webhook-gateway-bench",
                "Content-Type": "application/json",
                "Content-Length": str(len(body)),
                "Accept-Encoding": "gzip",
                **signed,
            }
        )
    )
    content = signed_content(signed["webhook-id"], signed["webhook-timestamp"], body)
    key = payments_key()
    expected = hmac.new(key, content, hashlib.sha256).digest()

    def gateway_verify() -> None:
        verifier.verify(body, headers, secrets, now)

    def bare_hmac() -> bool:
        return hmac.compare_digest(hmac.new(key, content, hashlib.sha256).digest(), expected)

    if not bare_hmac():
        raise BenchError("the bare HMAC baseline does not match the provider's signature")
    gateway_verify()  # raises if the bench signed something the gateway would refuse

    def calibrate(fn: Callable[[], object]) -> int:
        number, taken = timeit.Timer(fn).autorange()
        return max(1, int(number * settings.verify_seconds / max(taken, 1e-9)))

    n_verify, n_hmac = calibrate(gateway_verify), calibrate(bare_hmac)
    verify_times: list[float] = []
    hmac_times: list[float] = []
    for _ in range(settings.verify_repeat):
        verify_times.append(_per_op(gateway_verify, n_verify))
        hmac_times.append(_per_op(bare_hmac, n_hmac))
    paired = [v / h for v, h in zip(verify_times, hmac_times, strict=True)]
    return {
        "body_bytes": len(body),
        "signed_bytes": len(content),
        "iterations": {
            "verify": n_verify * settings.verify_repeat,
            "hmac": n_hmac * settings.verify_repeat,
        },
        "verify_ns": min(verify_times) * 1e9,
        "hmac_ns": min(hmac_times) * 1e9,
        "verify_median_ns": statistics.median(verify_times) * 1e9,
        "hmac_median_ns": statistics.median(hmac_times) * 1e9,
        "ratio": min(verify_times) / min(hmac_times),
        "ratio_min": min(paired),
        "ratio_max": max(paired),
    }
