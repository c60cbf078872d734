"""``bench.handler`` runs the gateway's accept handler and the floor's on real requests against
a real Redis, each variant answering every request 202, and leaves the process as it found it:
its cores and its logging (a test run goes on after it)."""

from __future__ import annotations

import logging
import os
import sys

from bench.handler import GATEWAY_PIECES, count_calls, measure
from gateway import logs


def test_every_variant_answers_and_the_process_is_left_as_it_was():
    cores = os.sched_getaffinity(0)
    root = logging.getLogger()
    handlers, installed = root.handlers[:], logs._handler
    result = measure(requests=40, rounds=1)
    assert os.sched_getaffinity(0) == cores
    assert (root.handlers, logs._handler) == (handlers, installed)
    figures = result["us_per_request"]
    assert len(figures) == len(GATEWAY_PIECES) + 2  # and the floor, with and without Redis
    assert all(f["median"] > 0 for f in figures.values())
    assert set(result["pieces_us"]) == {piece for piece in GATEWAY_PIECES if piece}
    # Each script was timed by redis-server itself: the gateway's accept does more than the
    # floor's two writes.
    scripts = result["redis_script_us"]
    assert set(scripts) == {"gateway", "floor"}
    assert scripts["gateway"] > scripts["floor"] > 0


def test_calls_are_counted_per_request_and_the_profiler_is_removed():
    root = logging.getLogger()
    handlers = root.handlers[:]
    result = count_calls(requests=40, top=400)
    assert sys.getprofile() is None
    assert root.handlers == handlers
    gateway, floor = result["gateway"], result["floor"]
    assert gateway["python_calls"] > floor["python_calls"] > 10
    assert floor["c_calls"] > 10
    sites = list(gateway["sites"].values())
    assert 0 < len(sites) <= 400 and sites == sorted(sites, reverse=True)
    # Each handler's own stages are among the sites, once per request.
    assert gateway["sites"]["gateway/ingress/handler.py:_route"] == 1
    assert floor["sites"]["bench/floor.py:_authentic"] == 1
