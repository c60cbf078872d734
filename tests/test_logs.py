"""JSON log lines (design.md 5.5), and the direct path of the request and delivery lines."""

from __future__ import annotations

import asyncio
import io
import json
import logging
import os
import re
import sys
from collections.abc import Callable, Iterator

import pytest

from gateway import logs
from gateway.logs import log_fields, setup_logging

TIMESTAMP = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")
FIELDS = {"request_id": "r-1", "source": "payments", "event_id": None, "status": 202}


@pytest.fixture
def start(monkeypatch) -> Iterator[Callable[[], io.StringIO]]:
    """Starts ``setup_logging`` writing into a buffer; the root logger is put back afterwards.

    Called inside the test: pytest swaps ``sys.stderr`` and adds a capturing handler to the
    root logger once a test starts, and either would send the lines elsewhere.
    """
    root = logging.getLogger()
    saved = (root.handlers[:], root.level, logs._handler)

    def started() -> io.StringIO:
        buffer = io.StringIO()
        monkeypatch.setattr(sys, "stderr", buffer)
        setup_logging("info")
        return buffer

    yield started
    root.handlers[:], level, logs._handler = saved
    root.setLevel(level)


def lines(buffer: io.StringIO) -> list[dict[str, object]]:
    return [json.loads(line) for line in buffer.getvalue().splitlines()]


def test_a_direct_line_is_the_line_a_record_makes(start):
    stderr = start()
    logger = logging.getLogger("gateway.test_logs")
    logger.log(logging.WARNING, "request", extra=FIELDS)
    log_fields(logger, logging.WARNING, "request", FIELDS)
    through_record, direct = lines(stderr)
    assert TIMESTAMP.match(str(through_record.pop("ts")))
    assert TIMESTAMP.match(str(direct.pop("ts")))
    assert direct == through_record
    assert list(direct) == ["level", "logger", "pid", "msg", *FIELDS]
    assert direct["pid"] == os.getpid()
    assert direct["level"] == "warning"


def test_a_level_of_its_own_is_named_as_a_record_names_it(start):
    stderr = start()
    logger = logging.getLogger("gateway.test_logs")
    logger.log(25, "request", extra=FIELDS)
    log_fields(logger, 25, "request", FIELDS)
    through_record, direct = lines(stderr)
    assert direct["level"] == through_record["level"] == "level 25"


def test_a_forked_child_logs_its_own_pid(start):
    stderr = start()
    child = os.fork()
    if child == 0:  # the child: its line must carry its own pid, not its parent's
        ok = False
        try:
            log_fields(logging.getLogger("gateway.test_logs"), logging.INFO, "request", FIELDS)
            ok = lines(stderr)[-1]["pid"] == os.getpid()
        finally:
            os._exit(0 if ok else 1)
    _, status = os.waitpid(child, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    log_fields(logging.getLogger("gateway.test_logs"), logging.INFO, "request", FIELDS)
    assert lines(stderr)[-1]["pid"] == os.getpid()


def test_the_direct_line_makes_no_record(start, monkeypatch):
    stderr = start()

    def no_record(*args: object, **kwargs: object) -> logging.LogRecord:
        raise AssertionError("a LogRecord was made")

    monkeypatch.setattr(logging.Logger, "makeRecord", no_record)
    log_fields(logging.getLogger("gateway.test_logs"), logging.INFO, "request", FIELDS)
    assert lines(stderr)[0]["msg"] == "request"


def test_a_line_below_the_level_is_not_written(start):
    stderr = start()
    log_fields(logging.getLogger("gateway.test_logs"), logging.DEBUG, "request", FIELDS)
    assert stderr.getvalue() == ""


class Capture(logging.Handler):
    def __init__(self) -> None:
        super().__init__()
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


def test_another_handler_gets_the_record_and_the_line_is_still_written(start):
    stderr = start()
    logger = logging.getLogger("gateway.test_logs")
    capture = Capture()
    logger.addHandler(capture)
    try:
        log_fields(logger, logging.INFO, "request", FIELDS)
    finally:
        logger.removeHandler(capture)
    (record,) = capture.records
    assert record.getMessage() == "request"
    assert record.__dict__["request_id"] == "r-1"
    assert lines(stderr)[0]["request_id"] == "r-1"


def test_a_filter_still_decides(start):
    stderr = start()
    logger = logging.getLogger("gateway.test_logs")
    refuse = logging.Filter("somewhere.else")
    logger.addFilter(refuse)
    try:
        log_fields(logger, logging.INFO, "request", FIELDS)
    finally:
        logger.removeFilter(refuse)
    assert stderr.getvalue() == ""


def test_a_closed_stderr_never_reaches_the_caller(start, monkeypatch):
    stderr = start()
    report = io.StringIO()
    stderr.close()
    monkeypatch.setattr(sys, "stderr", report)  # where logging reports its own failure
    log_fields(logging.getLogger("gateway.test_logs"), logging.INFO, "request", FIELDS)
    assert "Logging error" in report.getvalue()


class CountingWrites(io.StringIO):
    """A stderr that counts its writes."""

    def __init__(self) -> None:
        super().__init__()
        self.writes = 0

    def write(self, text: str) -> int:
        self.writes += 1
        return super().write(text)


def test_a_loop_turn_writes_its_lines_once_at_its_end_in_order(start, monkeypatch):
    start()
    stderr = CountingWrites()
    monkeypatch.setattr(logs._handler, "stream", stderr)
    logger = logging.getLogger("gateway.test_logs")
    seen_during_turn: list[str] = []

    async def one_turn() -> None:
        for number in range(5):
            log_fields(logger, logging.INFO, "request", {**FIELDS, "n": number})
        seen_during_turn.append(stderr.getvalue())
        await asyncio.sleep(0)  # the turn ends: the lines go out
        await asyncio.sleep(0)

    asyncio.run(one_turn())
    assert seen_during_turn == [""]
    assert [line["n"] for line in lines(stderr)] == [0, 1, 2, 3, 4]
    assert stderr.writes == 1


def test_a_record_logged_the_usual_way_comes_after_the_waiting_lines(start, monkeypatch):
    stderr = start()
    logger = logging.getLogger("gateway.test_logs")

    async def both() -> None:
        log_fields(logger, logging.INFO, "request", FIELDS)
        logger.warning("after")

    asyncio.run(both())
    assert [line["msg"] for line in lines(stderr)] == ["request", "after"]


def test_lines_waiting_when_the_loop_stops_are_written_by_flush(start):
    stderr = start()

    loop = asyncio.new_event_loop()

    def last_words() -> None:
        log_fields(logging.getLogger("gateway.test_logs"), logging.INFO, "request", FIELDS)
        loop.stop()  # the callbacks this turn schedules never run

    loop.call_soon(last_words)
    loop.run_forever()
    loop.close()
    assert stderr.getvalue() == ""
    logging.getLogger().handlers[0].flush()  # as logging.shutdown does at exit
    assert [line["msg"] for line in lines(stderr)] == ["request"]


def test_a_loop_after_one_that_stopped_mid_turn_still_writes_its_lines(start):
    stderr = start()
    logger = logging.getLogger("gateway.test_logs")
    stopped = asyncio.new_event_loop()

    def cut_short() -> None:
        log_fields(logger, logging.INFO, "first", FIELDS)
        stopped.stop()

    stopped.call_soon(cut_short)
    stopped.run_forever()

    async def next_loop() -> None:
        log_fields(logger, logging.INFO, "second", FIELDS)
        await asyncio.sleep(0)
        await asyncio.sleep(0)

    asyncio.run(next_loop())
    stopped.close()
    assert [line["msg"] for line in lines(stderr)] == ["first", "second"]
