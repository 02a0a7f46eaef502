"""JSON logs: one object per line on stderr, for every logger (ours and uvicorn's).

Structured fields travel in ``extra={"fields": {...}}``; exceptions add ``error`` and ``traceback``.
Nothing here ever logs a pod spec or an environment value: callers pass only names and codes.
"""

from __future__ import annotations

import asyncio
import datetime
import logging
import os
import sys
import time
from typing import Any

import orjson


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": datetime.datetime.fromtimestamp(record.created, datetime.UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "pid": record.process,
            "msg": record.getMessage(),
        }
        fields = getattr(record, "fields", None)
        if isinstance(fields, dict):
            entry.update(fields)
        if record.exc_info and record.exc_info[0] is not None:
            entry["error"] = f"{record.exc_info[0].__name__}: {record.exc_info[1]}"
            entry["traceback"] = self.formatException(record.exc_info)
        return orjson.dumps(entry, default=str).decode()


def configure(level: str = "info") -> None:
    """Route every logger through one JSON handler on stderr (idempotent)."""
    root = logging.getLogger()
    for handler in list(root.handlers):
        root.removeHandler(handler)
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter())
    root.addHandler(handler)
    root.setLevel(level.upper())
    for name in ("uvicorn", "uvicorn.error", "uvicorn.access"):
        logger = logging.getLogger(name)
        logger.handlers.clear()
        logger.propagate = True
    # The kubernetes client logs every retry at WARNING through urllib3; ours are enough.
    logging.getLogger("urllib3").setLevel(logging.ERROR)


class AdmissionLog:
    """The per-admission line, in the same JSON shape, written in batches.

    Going through ``logging`` and flushing stderr for every admission cost about a sixth of the
    server's CPU on unannotated pods; here each line is one ``orjson.dumps`` into a buffer that is
    flushed when it passes ``max_buffer`` bytes, ``flush_after`` seconds after its first line, and
    at shutdown. A SIGKILL can lose at most that last fraction of a second of lines.
    """

    def __init__(self, stream: Any = None, *, flush_after: float = 0.05, max_buffer: int = 64 * 1024) -> None:
        self.stream = stream
        self.flush_after = flush_after
        self.max_buffer = max_buffer
        self.buffer = bytearray()
        self.scheduled = False
        # uvicorn spawns its workers (no fork), and each builds its own Runtime and AdmissionLog:
        # the pid read here is the worker's.
        self.pid = os.getpid()
        self._second = -1
        self._second_text = ""
        self._heads: dict[str, bytes] = {}

    def _timestamp(self) -> str:
        """The same ISO 8601 text as JsonFormatter's, formatting the date part once a second."""
        now = time.time()
        second = int(now)
        if second != self._second:
            self._second = second
            self._second_text = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(second))
        return f"{self._second_text}.{int((now - second) * 1000):03d}+00:00"

    def write(self, fields: dict[str, Any], msg: str = "admission") -> None:
        """One line: ``{"time", "level", "logger", "pid", "msg", **fields}``, the part before
        ``fields`` written once per ``msg`` (``fields`` must not hold those keys)."""
        head = self._heads.get(msg)
        if head is None:
            head = self._heads[msg] = orjson.dumps({"level": "info", "logger": "entourage.admission", "pid": self.pid, "msg": msg})[1:-1]
        rest = orjson.dumps(fields, default=str)[1:]
        self.buffer += b'{"time":"%s",%s%s%s\n' % (self._timestamp().encode(), head, b"," if len(rest) > 1 else b"", rest)
        if len(self.buffer) >= self.max_buffer:
            self.flush()
        elif not self.scheduled:
            try:
                loop = asyncio.get_running_loop()
            except RuntimeError:
                self.flush()
                return
            self.scheduled = True
            loop.call_later(self.flush_after, self.flush)

    def flush(self) -> None:
        self.scheduled = False
        if self.buffer:
            stream = self.stream or sys.stderr.buffer
            stream.write(self.buffer)
            stream.flush()
            self.buffer.clear()
