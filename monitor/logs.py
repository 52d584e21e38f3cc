"""Logging for the long-running commands (`daemon`, `mllp`): one line per event on stderr, as text
or JSON. Messages name patients by internal id only, never a value, a name or an MRN; the
structured fields a message carries (`extra={"fields": {...}}`) follow the same rule."""

from __future__ import annotations

import json
import logging
import sys
from datetime import UTC, datetime
from typing import Any

FORMATS = ("text", "json")
LEVELS = ("debug", "info", "warning", "error")


def fields(**values: Any) -> dict[str, Any]:
    """`log.info(..., extra=fields(date=..., evaluated=...))`: machine-readable parts of an event."""
    return {"fields": values}


class JsonLines(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {
            "at": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(), "logger": record.name, "message": record.getMessage()}
        line.update(getattr(record, "fields", {}))
        if record.exc_info and record.exc_info[0] is not None:
            line["error"] = record.exc_info[0].__name__  # the type only: a message may hold patient data
        return json.dumps(line, default=str)


class TextLines(logging.Formatter):
    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)s %(name)s: %(message)s")

    def formatTime(self, record: logging.LogRecord, datefmt: str | None = None) -> str:
        return datetime.fromtimestamp(record.created, UTC).isoformat(timespec="seconds").replace("+00:00", "Z")

    def formatException(self, ei: Any) -> str:
        return f"({ei[0].__name__})"  # one line, the type only


#: How this process logs, once `configure`d: (format, level); helper processes log the same way.
configured: tuple[str, str] | None = None


def configure(fmt: str = "text", level: str = "info") -> None:
    """Send monitor's log to stderr, one line per event. Other libraries' chatter (APScheduler's
    every job run) only from WARNING."""
    global configured
    configured = (fmt, level)
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonLines() if fmt == "json" else TextLines())
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(logging.WARNING)
    logging.getLogger("monitor").setLevel(level.upper())
