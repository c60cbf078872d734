"""Structured logs: one JSON object per line on stderr (DESIGN 5.5). Never a secret or a body."""

from __future__ import annotations

import logging
import sys
import time
from typing import Any

from gateway.jsontext import dumps_any

#: Attributes every LogRecord has; anything else was passed in ``extra=`` and is logged.
_STANDARD = frozenset(
    vars(logging.LogRecord("", 0, "", 0, "", None, None)).keys() | {"message", "asctime"}
)


class JsonFormatter(logging.Formatter):
    """Formats a record as one JSON line: time, level, logger, message and the ``extra`` fields."""

    #: The last whole second formatted and its text: records come many to a second.
    _second: tuple[int, str] = (-1, "")

    def format(self, record: logging.LogRecord) -> str:
        """Render ``record`` as a single JSON object."""
        second = int(record.created)
        if self._second[0] != second:
            self._second = (second, time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(second)))
        entry: dict[str, Any] = {
            "ts": self._second[1] + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "pid": record.process,
            "msg": record.getMessage(),
        }
        for key, value in vars(record).items():
            if key not in _STANDARD and not key.startswith("_"):
                entry[key] = value
        if record.exc_info:
            entry["exc"] = self.formatException(record.exc_info)
        return dumps_any(entry)


def setup_logging(level: str = "info") -> None:
    """Send every log record to stderr as JSON lines at ``level``."""
    # The records' caller (file, line, function), thread and multiprocessing names are never
    # logged, so they are not looked up: walking the stack for the caller was a tenth of each
    # line's cost (the knobs of the logging HOWTO's "Optimization" section).
    logging._srcfile = None
    logging.logThreads = False
    logging.logMultiprocessing = False
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    # aiohttp's access log repeats what the ingress logs with more context.
    logging.getLogger("aiohttp.access").setLevel(logging.WARNING)
