"""JSON log lines (design.md 5.5), and the direct path of the request and delivery lines."""

from __future__ import annotations

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
