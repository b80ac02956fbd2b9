"""Logging set-up for the CLI and the daemon, with a filter that masks every known secret.

Secrets are registered when a config is loaded; any log record whose message or arguments contain
one has it replaced by ``***`` before a handler sees it, whichever module logged it.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import sys
import threading

_lock = threading.Lock()
_secrets: set[str] = set()

FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


def register_secrets(values: set[str] | frozenset[str]) -> None:
    with _lock:
        # Too-short values would mask ordinary words; such passwords are rejected nowhere else, so
        # they are still masked in config errors, just not in free log text.
        _secrets.update(v for v in values if len(v) >= 3)


def redact(text: str) -> str:
    with _lock:
        secrets = sorted(_secrets, key=len, reverse=True)
    for secret in secrets:
        if secret in text:
            text = text.replace(secret, "***")
    return text


class RedactingFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        if _secrets:
            record.msg = redact(record.getMessage())
            record.args = None
            if record.exc_info and record.exc_info[1] is not None:
                record.exc_text = redact(logging.Formatter().formatException(record.exc_info))
                record.exc_info = None
        return True


class JsonFormatter(logging.Formatter):
    """One JSON object per line (``--log-format json``), for log shippers; the redacting filter
    runs before it, so messages and tracebacks arrive masked."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, str] = {
            "ts": dt.datetime.fromtimestamp(record.created, dt.UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
            "thread": record.threadName or "",
        }
        if record.exc_info and not record.exc_text:
            record.exc_text = self.formatException(record.exc_info)
        if record.exc_text:
            entry["exception"] = record.exc_text
        return json.dumps(entry, ensure_ascii=False)


LOG_FORMATS = ("text", "json")


def configure_logging(level: str = "INFO", fmt: str = "text") -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter() if fmt == "json" else logging.Formatter(FORMAT))
    handler.addFilter(RedactingFilter())
    root = logging.getLogger()
    for existing in list(root.handlers):
        root.removeHandler(existing)
    root.addHandler(handler)
    root.setLevel(level.upper())
