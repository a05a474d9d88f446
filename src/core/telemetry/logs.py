"""Log lines: text or JSON objects, one per line, with secrets redacted (README "Operations").

`RedactingFilter` sits on the root handler, so it sees every record of every library: it rewrites the
formatted message and the exception text, replacing API keys (`sk-...`), bearer tokens, JWTs, and the
values of `password`/`secret`/`token`/`api_key`/`authorization` fields, and
the user and password of URLs. Payloads (prompts, completions)
are never passed to a logger in the first place; the log-scan test holds the code to that.
"""

from __future__ import annotations

import logging
import re
import sys
import time
from typing import Any

import orjson

__all__ = ["JsonFormatter", "RedactingFilter", "configure_logging", "redact"]

REDACTED = "[REDACTED]"
_SECRETS = re.compile(
    r"(?P<bearer>(?i:bearer)\s+)[^\s,;\"']+"
    r"|\bsk-[A-Za-z0-9_\-]{8,}"
    r"|\beyJ[A-Za-z0-9_\-]+\.[A-Za-z0-9_\-]+\.[A-Za-z0-9_\-]*"
    r"|\$argon2[a-z]*\$[^\s;\"')]+"
    r"|(?P<userinfo>://)[^/\s:@]+:[^/\s@]+@"
    r"|(?P<field>(?i:password|passwd|secret|token|api[_-]?key|authorization)[\"']?\s*[:=]\s*[\"']?)[^\s,;\"'}]+"
)
# Attributes of every LogRecord: the rest came from `extra=` and go into the JSON object.
_STANDARD = frozenset(logging.makeLogRecord({}).__dict__) | {"message", "asctime", "taskName"}


def _replace(match: re.Match[str]) -> str:
    if match.group("userinfo"):
        return f"://{REDACTED}@"
    prefix = match.group("bearer") or match.group("field") or ""
    return prefix + REDACTED


def redact(text: str) -> str:
    return _SECRETS.sub(_replace, text)


class RedactingFilter(logging.Filter):
    """Redacts the message (formatted with its args once, here) and the exception text of every record."""

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:  # a bad format string: keep what logging would show
            message = str(record.msg)
        record.msg, record.args = redact(message), None
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = redact(record.exc_text)
        record.exc_info = None  # the text above is what gets printed
        return True


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message, worker, request_id and other `extra=` fields."""

    converter = time.gmtime  # type: ignore[assignment]  # UTC (the Z of the time)

    def __init__(self, worker: int | None = None) -> None:
        super().__init__()
        self._worker = worker

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": self.formatTime(record, "%Y-%m-%dT%H:%M:%S") + f".{int(record.msecs):03d}Z",
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        if self._worker is not None:
            entry["worker"] = self._worker
        for key, value in record.__dict__.items():
            if key not in _STANDARD and not key.startswith("_"):
                entry[key] = redact(value) if isinstance(value, str) else value
        if record.exc_text:
            entry["exception"] = record.exc_text
        return orjson.dumps(entry, default=str).decode()


def configure_logging(level: str, fmt: str = "text", worker: int | None = None) -> None:
    """The root logger's one handler on standard error, with the redaction filter."""
    handler = logging.StreamHandler(sys.stderr)
    if fmt == "json":
        handler.setFormatter(JsonFormatter(worker))
    else:
        tag = f"[worker {worker}] " if worker else ""
        handler.setFormatter(logging.Formatter(f"%(asctime)s %(levelname)s {tag}%(name)s: %(message)s"))
    handler.addFilter(RedactingFilter())
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level.upper())
    # A line per request or migration step is noise; aiosqlite's DEBUG lines print SQL parameters.
    for chatty in ("httpx", "httpcore", "alembic", "aiosqlite"):
        logging.getLogger(chatty).setLevel(max(logging.WARNING, root.level))
