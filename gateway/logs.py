"""Structured logs: one JSON object per line on stderr (design.md 5.5). Never a secret or a body.

Every request and every delivery attempt logs a line, so those two go through ``log_fields``:
the same line ``logger.log(level, msg, extra=fields)`` writes, made without a ``LogRecord``
when the JSON handler of ``setup_logging`` is the only handler the record would reach (as in
the running gateway). In a loop of its own on the benchmark machine, a line cost 11.6-14.5 us
through ``logging`` and costs 3.8-5.2 us this way (BENCHMARKS.md#what-each-optimisation-gave,
"the request and delivery-attempt log lines written without a LogRecord"). Anywhere else (a
test's capturing handler, a second handler, a filter) ``log_fields`` hands the record to
``logging`` as it always did.
"""

from __future__ import annotations

import asyncio
import logging
import os
import sys
import time
from typing import Any, TextIO

from gateway.jsontext import dumps_any

#: Attributes every LogRecord has; anything else was passed in ``extra=`` and is logged.
_STANDARD = frozenset(
    vars(logging.LogRecord("", 0, "", 0, "", None, None)).keys() | {"message", "asctime"}
)


#: The names of the standard levels as lines spell them, fixed at import (any other level's
#: through ``logging``): a standard level renamed later by ``logging.addLevelName`` keeps the
#: name it had, in lines made with or without a record alike.
_LEVEL_NAMES = {
    level: logging.getLevelName(level).lower()
    for level in (logging.DEBUG, logging.INFO, logging.WARNING, logging.ERROR, logging.CRITICAL)
}


class _Pid:
    """This process's id, read once and again in a forked child (``os.getpid`` is a system
    call on every line otherwise)."""

    value = os.getpid()

    @classmethod
    def refresh(cls) -> None:
        cls.value = os.getpid()


os.register_at_fork(after_in_child=_Pid.refresh)


class _Timestamps:
    """RFC 3339 UTC text for log times, the date and time part made once per second."""

    def __init__(self) -> None:
        # One tuple, replaced whole: a line logged from another thread never sees a second
        # paired with another second's text.
        self._second: tuple[int, str] = (-1, "")

    def format(self, created: float) -> str:
        """``created`` (a ``time.time()``) as ``YYYY-MM-DDTHH:MM:SS.mmmZ``."""
        second = int(created)
        cached = self._second
        if cached[0] != second:
            cached = self._second = (
                second,
                time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(second)),
            )
        return f"{cached[1]}.{int((created - second) * 1000):03d}Z"


def _line(
    stamps: _Timestamps,
    created: float,
    level: int,
    logger: str,
    pid: int | None,
    msg: str,
    fields: dict[str, Any],
) -> dict[str, Any]:
    """The JSON object of one log line, before any exception text."""
    entry: dict[str, Any] = {
        "ts": stamps.format(created),
        "level": _LEVEL_NAMES.get(level) or logging.getLevelName(level).lower(),
        "logger": logger,
        "pid": pid,
        "msg": msg,
    }
    entry.update(fields)
    return entry


class JsonFormatter(logging.Formatter):
    """Formats a record as one JSON line: time, level, logger, message and the ``extra`` fields."""

    def __init__(self) -> None:
        super().__init__()
        self._stamps = _Timestamps()

    def format(self, record: logging.LogRecord) -> str:
        """Render ``record`` as a single JSON object."""
        extra = {
            key: value
            for key, value in vars(record).items()
            if key not in _STANDARD and not key.startswith("_")
        }
        entry = _line(
            self._stamps,
            record.created,
            record.levelno,
            record.name,
            record.process,
            record.getMessage(),
            extra,
        )
        if record.exc_info:
            entry["exc"] = self.formatException(record.exc_info)
        return dumps_any(entry)


class JsonHandler(logging.StreamHandler[TextIO]):
    """The stderr handler of ``setup_logging``; it also writes ``log_fields`` lines directly.

    A ``log_fields`` line made on a thread running an event loop is written at the end of the
    loop's turn, with every other line of that turn, in one write: under load a turn answers
    many requests, and a write (a system call) per line was about a tenth of a line's cost.
    Lines keep their order: a record logged the usual way and ``flush`` first write what is
    waiting (``logging.shutdown`` at exit flushes every handler, so a loop's last lines are
    written even when it stopped before the end of its turn).
    """

    def __init__(self) -> None:
        super().__init__(sys.stderr)
        self.setFormatter(JsonFormatter())
        self._stamps = _Timestamps()
        self._waiting: list[str] = []
        #: The loop whose end of turn will write the waiting lines.
        self._flush_on: asyncio.AbstractEventLoop | None = None

    def write_fields(self, logger: str, level: int, msg: str, fields: dict[str, Any]) -> None:
        """Write the line a record of these would format to: at the end of this turn of the
        running event loop, or at once where no loop runs."""
        text = dumps_any(_line(self._stamps, time.time(), level, logger, _Pid.value, msg, fields))
        loop = asyncio._get_running_loop()
        self.acquire()
        try:
            if loop is None:  # no loop on this thread: in order, now
                self._write_waiting(text + self.terminator)
                return
            if self._flush_on is not loop:
                # The first line of this turn (or of a loop that took over from one which
                # stopped before its turn ended): this turn's end writes them.
                self._flush_on = loop
                loop.call_soon(self._end_of_turn)
            self._waiting.append(text)
        finally:
            self.release()

    def _end_of_turn(self) -> None:
        self._flush_on = None
        self.flush()

    def _write_waiting(self, more: str = "") -> None:
        """Write the waiting lines and ``more`` in one call (the lock held)."""
        if self._waiting:
            terminator = self.terminator
            more = terminator.join(self._waiting) + terminator + more
            self._waiting.clear()
        if more:
            self.stream.write(more)
            self.stream.flush()

    def emit(self, record: logging.LogRecord) -> None:
        """A record the usual way, after the lines waiting for the end of the turn."""
        if self._waiting:
            self.flush()
        super().emit(record)

    def flush(self) -> None:
        """Write the waiting lines, then flush the stream."""
        self.acquire()
        try:
            if self._waiting:
                try:
                    self._write_waiting()
                except (OSError, ValueError):
                    # stderr is closed or broken: nothing can carry these lines any more,
                    # and a loop callback has no caller to tell.
                    self._waiting.clear()
            elif self.stream and hasattr(self.stream, "flush"):
                self.stream.flush()
        finally:
            self.release()


#: The handler ``setup_logging`` installed, which ``log_fields`` may write to directly.
_handler: JsonHandler | None = None


def log_fields(logger: logging.Logger, level: int, msg: str, fields: dict[str, Any]) -> None:
    """Log ``msg`` with ``fields``: what ``logger.log(level, msg, extra=fields)`` logs, without
    building a record when only the JSON handler would see it."""
    if not logger.isEnabledFor(level):
        return
    handler = _handler
    if handler is None or not _reaches_only(logger, handler, level):
        logger.log(level, msg, extra=fields)
        return
    try:
        handler.write_fields(logger.name, level, msg, fields)
    except (OSError, ValueError):  # stderr closed or broken: logging reports it its own way
        logger.log(level, msg, extra=fields)


def _reaches_only(logger: logging.Logger, handler: JsonHandler, level: int) -> bool:
    """Whether a record from ``logger`` would reach ``handler`` alone, unfiltered, as is."""
    node: logging.Logger | None = logger
    while node is not None:
        if node.filters or node.disabled:
            return False
        if node.handlers:
            return (
                node.handlers == [handler]
                and not handler.filters
                and level >= handler.level
                and node is logging.root
            )
        node = node.parent if node.propagate else None
    return False


def setup_logging(level: str = "info") -> None:
    """Send every log record to stderr as JSON lines at ``level``."""
    global _handler
    # The records' caller (file, line, function), thread and multiprocessing names are never
    # logged, so they are not looked up: walking the stack for the caller was a tenth of each
    # line's cost (the knobs of the logging HOWTO's "Optimization" section).
    logging._srcfile = None
    logging.logThreads = False
    logging.logMultiprocessing = False
    handler = JsonHandler()
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    _handler = handler
    # aiohttp's access log repeats what the ingress logs with more context.
    logging.getLogger("aiohttp.access").setLevel(logging.WARNING)
