"""``python -m bench.handler``: the accept path's handler without HTTP, the gateway's beside the
floor's, and what each of the gateway's pieces costs inside it.

What the CPU ÷ floor target comes down to. Under wrk both the gateway and the floor
(``bench.floor``) pay aiohttp's HTTP work, the same for both; what differs is the handler.
Here each handler runs in one process on ``SUT_CPU`` against a redis-server on ``REST_CPU``,
on requests as aiohttp hands them over (a ``web.Request`` with its body in its stream), 32 at
a time as wrk's connections come: no socket, no parser, no response write. CPU time of this
process per request, each variant once per round, the order reversed every other round.

The gateway's variants take one piece out of it at a time (measurement copies, never a
candidate): the store call answered at once (``without the store call``), only its Redis I/O
(``without the store I/O``: the batches' link answers on the next loop turn), the request's
log line, its metrics, the provider's verification. The floor runs as is and with its script
call answered at once. The gateway is the payments source of ``bench.scenarios`` with both rate
limits on, as the pinned phase runs it.

``--calls TOP`` counts instead of timing: every call each handler makes per request, Python
(a coroutine's every resumption included) and C, and the ``TOP`` sites of each. A count does
not move with the machine's speed, as CPU time does by up to half from one minute to the
next, so it shows what a change to the request path takes away before a paired run can.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import logging
import os
import statistics
import sys
import time
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import asynccontextmanager, contextmanager
from pathlib import Path
from types import FrameType
from typing import Any

from aiohttp import StreamReader, web
from aiohttp.test_utils import make_mocked_request
from multidict import CIMultiDict

import gateway.ingress.handler as handler_module
from bench import floor as floor_module
from bench.payloads import SOURCE_PATH, event_body, payments_secret, standard_webhooks
from bench.procs import REST_CPU, SUT_CPU
from bench.scenarios import gateway_config
from gateway import logs
from gateway.app import declare_metrics
from gateway.config import load_config_text
from gateway.delivery.client import DeliveryClient
from gateway.ingress.handler import Ingress
from gateway.logs import setup_logging
from gateway.metrics import Metrics
from gateway.store import open_store
from gateway.store.records import AcceptResult, Event
from gateway.store.redis import RedisStore
from harness.redis_server import RedisServer

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results" / "handler.json"
CALLS_RESULTS = RESULTS.with_name("handler-calls.json")
#: Requests in flight at once, as wrk's connections in the pinned phase.
CONCURRENCY = 32
#: Requests each handler answers before the measured rounds.
WARM_UP = 3000
#: What accept.lua answers for a new event (``RedisIngress._store_event`` reads it).
_QUEUED = [b"queued", b"evt", b"pending", 1, b"", 0]

Handle = Callable[[web.Request], Awaitable[web.StreamResponse]]


class _Transport:
    """What a request asks of its transport: the peer's address."""

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return ("127.0.0.1", 40000) if name == "peername" else default

    def is_closing(self) -> bool:
        return False


class _Protocol:
    """What a request and its body stream ask of the connection's protocol."""

    ssl_context = None
    peername = ("127.0.0.1", 40000)
    sockname = ("127.0.0.1", 8080)
    transport = None
    _reading_paused = False

    def pause_reading(self, **_: Any) -> None:
        pass

    def resume_reading(self, **_: Any) -> None:
        pass


class _AnsweringLink:
    """Stands in for the batches' Redis link: every command answered on the next loop turn."""

    usable = True

    def send(self, commands: list[bytes], done: Callable[[list[Any]], None]) -> None:
        asyncio.get_running_loop().call_soon(done, [list(_QUEUED) for _ in commands])


def _requests(prefix: str, count: int) -> list[web.Request]:
    """``count`` signed payments events, each a request with its whole body received."""
    provider = standard_webhooks()
    secret = payments_secret()
    loop = asyncio.get_running_loop()
    protocol = _Protocol()
    made = []
    for index in range(count):
        body = event_body(index, prefix)
        signed = provider.sign(body, secret, time.time(), msg_id=f"msg_{prefix}_{index:08d}")
        headers = CIMultiDict(
            {
                "Host": "127.0.0.1:8080",
                "User-Agent": "wrk",
                "Content-Type": "application/json",
                "Content-Length": str(len(body)),
                **signed,
            }
        )
        payload = StreamReader(protocol, 2**16, loop=loop)  # type: ignore[arg-type]
        payload.feed_data(body)
        payload.feed_eof()
        made.append(
            make_mocked_request(
                "POST",
                SOURCE_PATH,
                headers=headers,
                payload=payload,
                transport=_Transport(),
                protocol=protocol,
                writer=None,
                loop=loop,
            )
        )
    return made


async def _drive(handle: Handle, requests: list[web.Request]) -> float:
    """CPU seconds to answer ``requests``, ``CONCURRENCY`` at a time; each must be accepted."""
    pending: Iterator[web.Request] = iter(requests)

    async def connection() -> None:
        for request in pending:
            answer = await handle(request)
            if answer.status != 202:
                raise RuntimeError(f"the handler answered {answer.status}, not 202")

    # The requests were made just now; as in the gateway after start, the collector leaves
    # what exists alone (gateway.server freezes it).
    gc.collect()
    gc.freeze()
    try:
        started = time.thread_time()
        await asyncio.gather(*(connection() for _ in range(CONCURRENCY)))
        return time.thread_time() - started
    finally:
        gc.unfreeze()


class _Gateway:
    """The pieces of the gateway's ingress on the bench's payments source, to take out."""

    def __init__(self, ingress: Ingress) -> None:
        self.store = ingress.store
        self.metrics = ingress.metrics
        self.verifier = ingress.config.sources["payments"].verifier

    @contextmanager
    def without(self, piece: str) -> Iterator[None]:
        """The gateway with ``piece`` taken out for the block (``""``: as it is)."""

        async def accept(event: Event, *_: Any, **__: Any) -> AcceptResult:
            return AcceptResult("queued", event.id, None, False)

        def nothing(*_: Any) -> None:
            return None

        store: Any = self.store
        swaps: dict[str, tuple[object, str, object]] = {
            "store call": (store, "accept", accept),
            "store I/O": (store._batch, "_link", _AnsweringLink()),
            "log line": (handler_module, "log_fields", nothing),
            "metrics": (self.metrics, "observe_request", nothing),
            "verification": (self.verifier, "verify", nothing),
        }
        if not piece:
            yield
            return
        target, name, value = swaps[piece]
        own = name in vars(target)  # an attribute of the object itself, not of its class
        saved = getattr(target, name)
        setattr(target, name, value)
        try:
            yield
        finally:
            if own:
                setattr(target, name, saved)
            else:
                delattr(target, name)


GATEWAY_PIECES = ("", "store call", "store I/O", "log line", "metrics", "verification")


def _name(piece: str) -> str:
    return f"gateway without the {piece}" if piece else "gateway"


@asynccontextmanager
async def _handlers(url: str, warm: int) -> AsyncIterator[tuple[Ingress, floor_module.Floor]]:
    """The gateway's ingress on the bench's payments source and the floor, both on ``url``,
    each warmed up on ``warm`` requests (the link opened, the scripts loaded, the caches
    filled)."""
    text = gateway_config(
        listen=1, admin=2, store_url=url, destination="http://127.0.0.1:9/",
        delivery_concurrency=0, rate_limits=True,
    )  # fmt: skip
    config = load_config_text(text, environ={})
    store = await open_store(url)
    if not isinstance(store, RedisStore):
        raise RuntimeError("the handler bench runs on Redis")
    metrics = Metrics()
    declare_metrics(metrics, config)
    client = DeliveryClient(limit=4)
    floor = floor_module.Floor(url)
    try:
        ingress = Ingress(config, store, store.rate_limiter(), client, metrics)
        floor.sha = await floor.client.script_load(floor_module.ACCEPT)
        await _drive(ingress.handle, _requests("warm-g", warm))
        await _drive(floor.accept, _requests("warm-f", warm))
        yield ingress, floor
    finally:
        await store.close()
        await client.close()
        await floor.client.aclose()


async def _measure(
    url: str, requests: int, rounds: int
) -> tuple[dict[str, list[float]], dict[str, float]]:
    async with _handlers(url, min(WARM_UP, requests)) as (ingress, floor):
        return await _rounds(ingress, floor, requests, rounds)


async def _rounds(
    ingress: Ingress, floor: floor_module.Floor, requests: int, rounds: int
) -> tuple[dict[str, list[float]], dict[str, float]]:
    """Each variant's CPU per request, round by round; and the Redis time of the gateway's and
    the floor's script per call."""
    gateway = _Gateway(ingress)
    floor_call = floor.pipeline.call

    def answered(*_: Any) -> asyncio.Future[Any]:
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        future.set_result(1)
        return future

    names = [_name(piece) for piece in GATEWAY_PIECES] + ["floor", "floor without Redis"]
    spent: dict[str, list[float]] = {name: [] for name in names}
    # redis-server's own time in each handler's script (INFO commandstats): not this
    # process's CPU, but what each accept costs the Redis it runs on.
    scripts: dict[str, list[int]] = {"gateway": [0, 0], "floor": [0, 0]}
    try:
        for index in range(rounds):
            order = names if index % 2 == 0 else names[::-1]
            for name in order:
                batch = _requests(f"{index}-{names.index(name)}", requests)
                if name in scripts:
                    await floor.client.config_resetstat()
                if name.startswith("floor"):
                    floor.pipeline.call = answered if name.endswith("Redis") else floor_call  # type: ignore[method-assign]
                    cpu = await _drive(floor.accept, batch)
                else:
                    piece = GATEWAY_PIECES[names.index(name)]
                    with gateway.without(piece):
                        cpu = await _drive(ingress.handle, batch)
                if name in scripts:
                    stats = await floor.client.info("commandstats")
                    evalsha = stats.get("cmdstat_evalsha", {})
                    scripts[name][0] += evalsha.get("usec", 0)
                    scripts[name][1] += evalsha.get("calls", 0)
                spent[name].append(cpu / requests * 1e6)
                del batch
                gc.collect()
            _progress(f"round {index + 1} of {rounds}")
    finally:
        floor.pipeline.call = floor_call  # type: ignore[method-assign]
    return spent, {name: usec / calls for name, (usec, calls) in scripts.items() if calls}


async def _count_calls(url: str, requests: int) -> dict[str, Counter[str]]:
    """Every function call the gateway's handler and the floor's make on ``requests``
    requests each, by site (``sys.setprofile``)."""
    async with _handlers(url, min(WARM_UP, requests)) as (ingress, floor):
        counted: dict[str, Counter[str]] = {}
        for name, handle in (("gateway", ingress.handle), ("floor", floor.accept)):
            batch = _requests(f"calls-{name}", requests)
            calls: Counter[str] = Counter()
            sys.setprofile(_counter(calls))
            try:
                await _drive(handle, batch)
            finally:
                sys.setprofile(None)
            counted[name] = calls
        return counted


def _counter(calls: Counter[str]) -> Callable[[FrameType, str, Any], None]:
    """A profile function counting calls into ``calls``: a Python function's (a coroutine's
    every resumption counts, as each costs a frame's entry) by file and name, a C function's
    by name, prefixed ``C``."""

    def count(frame: FrameType, event: str, arg: Any) -> None:
        if event == "call":
            code = frame.f_code
            calls[f"{_short(code.co_filename)}:{code.co_name}"] += 1
        elif event == "c_call":
            calls[f"C {getattr(arg, '__qualname__', arg)}"] += 1

    return count


def _short(path: str) -> str:
    """A source file's path from its package down (``aiohttp/web_request.py``)."""
    for marker in ("site-packages/", f"{ROOT}/"):
        if marker in path:
            return path.rpartition(marker)[2]
    return path.rpartition("/lib/")[2] or path


def count_calls(requests: int, top: int) -> dict[str, Any]:
    """Calls per request of each handler: Python, C, and the ``top`` sites of each."""
    import uvloop

    with RedisServer(appendonly=False) as redis, _logs_to_nowhere():
        counted = uvloop.run(_count_calls(redis.url, requests))
    result: dict[str, Any] = {"requests": requests}
    for name, calls in counted.items():
        python = sum(n for site, n in calls.items() if not site.startswith("C "))
        result[name] = {
            "python_calls": python / requests,
            "c_calls": (calls.total() - python) / requests,
            "sites": {site: n / requests for site, n in calls.most_common(top)},
        }
    return result


def _progress(message: str) -> None:
    print(f"[handler {time.strftime('%H:%M:%S')}] {message}", file=sys.__stdout__, flush=True)


@contextmanager
def _logs_to_nowhere() -> Iterator[None]:
    """The gateway's JSON log handler for the block, writing to the null device: what a line
    costs to make is measured, not a file's writes. Logging is left as it was found."""
    root = logging.getLogger()
    handlers, level, installed = root.handlers[:], root.level, logs._handler
    with open(os.devnull, "w") as sink:
        saved, sys.stderr = sys.stderr, sink
        try:
            setup_logging("info")
            yield
        finally:
            sys.stderr = saved
            root.handlers[:] = handlers
            root.setLevel(level)
            logs._handler = installed


def measure(requests: int, rounds: int) -> dict[str, Any]:
    """Each variant's CPU per request over ``rounds`` rounds, and what each piece cost."""
    import uvloop

    cores = os.sched_getaffinity(0)
    # Pinned where the two cores exist (the benchmark machine); anywhere else, as it comes.
    pinned = {int(SUT_CPU), int(REST_CPU)} <= cores
    try:
        if pinned:
            os.sched_setaffinity(0, {int(REST_CPU)})
        with RedisServer(appendonly=False) as redis:  # started now: it stays on REST_CPU
            if pinned:
                os.sched_setaffinity(0, {int(SUT_CPU)})
            with _logs_to_nowhere():
                spent, redis_us = uvloop.run(_measure(redis.url, requests, rounds))
    finally:
        os.sched_setaffinity(0, cores)
    median = {name: statistics.median(values) for name, values in spent.items()}
    whole = median["gateway"]
    pieces = {piece: whole - median[_name(piece)] for piece in GATEWAY_PIECES if piece}
    return {
        "requests": requests,
        "rounds": rounds,
        "concurrency": CONCURRENCY,
        "us_per_request": {
            name: {"median": median[name], "min": min(values), "max": max(values)}
            for name, values in spent.items()
        },
        "pieces_us": pieces,
        "floor_redis_us": median["floor"] - median["floor without Redis"],
        "redis_script_us": redis_us,
        "gateway_over_floor": whole / median["floor"],
    }


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.handler", description=__doc__)
    parser.add_argument("--requests", type=int, default=10_000, help="requests per variant")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument(
        "--calls",
        type=int,
        metavar="TOP",
        help="count the calls each handler makes per request instead (and list the TOP sites)",
    )
    args = parser.parse_args()
    if args.calls is not None:
        counted = count_calls(min(args.requests, 2000), args.calls)
        for name in ("gateway", "floor"):
            figures = counted[name]
            print(
                f"{name}: {figures['python_calls']:.1f} Python calls and"
                f" {figures['c_calls']:.1f} C calls per request"
            )
            for site, per_request in figures["sites"].items():
                print(f"  {per_request:7.2f}  {site}")
        RESULTS.parent.mkdir(exist_ok=True)
        CALLS_RESULTS.write_text(json.dumps(counted, indent=2) + "\n")
        return
    result = measure(args.requests, args.rounds)
    for name, figures in result["us_per_request"].items():
        print(f"{name:40s} {figures['median']:6.1f} us ({figures['min']:.1f}-{figures['max']:.1f})")
    print(f"gateway ÷ floor: {result['gateway_over_floor']:.2f}")
    for piece, cost in result["pieces_us"].items():
        print(f"the {piece}: {cost:.1f} us")
    print(f"the floor's script call: {result['floor_redis_us']:.1f} us")
    for name, usec in result["redis_script_us"].items():
        print(f"redis-server's time per {name} script call: {usec:.1f} us")
    RESULTS.parent.mkdir(exist_ok=True)
    RESULTS.write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
