"""Waiting for something to become true, bounded: the one way the tests wait.

    view = await eventually(lambda: store.get_event(event_id), "the event to be stored")
    ids = eventually_sync(stack.received_ids, "the replay", until=lambda ids: len(ids) >= 2)

``check`` is called (and awaited, if it returns an awaitable) every ``interval`` seconds until
its value satisfies ``until`` (by default: until it is truthy), and ``eventually`` returns
that value. Once ``timeout`` seconds have passed it fails with an ``AssertionError`` that
names what was awaited and the last value seen (or the last exception listed in
``ignoring``), plus ``why`` (a string, or a callable such as a process's log tail, read only
on failure). With ``until``, ``check`` can return what is worth seeing in that message (the
requests so far) rather than a bare ``False``.

A timeout is a bound on a wait, never a measure of it: the tests do not pass or fail by how
fast a machine is, so the bounds are generous. A test that must show something did *not*
happen proves it from state (nothing left due, a later marker already seen), never by
sleeping and looking again.
"""

from __future__ import annotations

import asyncio
import inspect
import time
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar, overload

T = TypeVar("T")

#: Default bound on a wait (seconds): many times what any wait takes on a loaded machine.
TIMEOUT = 15.0
#: Default time between two checks (seconds).
INTERVAL = 0.05

Why = str | Callable[[], str]


def gave_up(what: str, timeout: float, last: object, why: Why = "") -> AssertionError:
    """The failure of a bounded wait: what was awaited, for how long, what was seen last."""
    seen = repr(last)
    if len(seen) > 2000:
        seen = seen[:2000] + "..."
    detail = why() if callable(why) else why
    return AssertionError(
        f"gave up after {timeout:g} s waiting for {what}; last seen: {seen}"
        + (f"\n{detail}" if detail else "")
    )


@overload
async def eventually(  # an awaitable's value is awaited first
    check: Callable[[], Awaitable[T]],
    what: str,
    *,
    timeout: float = ...,
    until: Callable[[T], object] = ...,
    interval: float = ...,
    ignoring: tuple[type[BaseException], ...] = ...,
    why: Why = ...,
) -> T: ...


@overload
async def eventually(
    check: Callable[[], T],
    what: str,
    *,
    timeout: float = ...,
    until: Callable[[T], object] = ...,
    interval: float = ...,
    ignoring: tuple[type[BaseException], ...] = ...,
    why: Why = ...,
) -> T: ...


async def eventually(
    check: Callable[[], Any],
    what: str,
    *,
    timeout: float = TIMEOUT,
    until: Callable[[Any], object] = bool,
    interval: float = INTERVAL,
    ignoring: tuple[type[BaseException], ...] = (),
    why: Why = "",
) -> Any:
    """Call ``check`` until its value satisfies ``until`` (that value), ``timeout`` at most.

    ``ignoring``: exceptions that mean "not yet" (a server not listening yet); any other
    raised by ``check`` fails the wait at once. A ``check`` that hangs is cut at the bound.
    """
    last: object = None
    bound = asyncio.timeout(timeout)
    try:
        async with bound:
            while True:
                try:
                    value = check()
                    if inspect.isawaitable(value):
                        value = await value
                except ignoring as exc:
                    last = exc
                else:
                    if until(value):
                        return value
                    last = value
                await asyncio.sleep(interval)
    except TimeoutError:
        if not bound.expired():
            raise  # raised by ``check`` itself
        raise gave_up(what, timeout, last, why) from None


def eventually_sync(
    check: Callable[[], T],
    what: str,
    *,
    timeout: float = TIMEOUT,
    until: Callable[[T], object] = bool,
    interval: float = INTERVAL,
    ignoring: tuple[type[BaseException], ...] = (),
    why: Why = "",
) -> T:
    """``eventually`` for code without an event loop (Playwright's sync API, blocking
    clients): the same checks, deadline and failure, sleeping in between."""
    deadline = time.monotonic() + timeout
    last: object = None
    while True:
        try:
            value = check()
        except ignoring as exc:
            last = exc
        else:
            if until(value):
                return value
            last = value
        if time.monotonic() >= deadline:
            raise gave_up(what, timeout, last, why)
        time.sleep(interval)
