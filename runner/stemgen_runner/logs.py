"""Structured logs: one JSON object per line, each carrying the request it belongs to.

The request context lives in a contextvar and is stamped onto every record by a filter on the
handler, so lines logged by libraries (azure, urllib3, audiocraft) carry namespace/name/request
id too, and `kubectl logs | jq 'select(.requestId == "...")'` finds everything.
"""

from __future__ import annotations

import contextvars
import json
import logging
import sys
from datetime import datetime, timezone
from typing import Any

_context: contextvars.ContextVar[dict[str, str] | None] = contextvars.ContextVar("stemgen_request", default=None)


def bind(**fields: str | None) -> None:
    """Add fields (namespace, name, requestId, …) to every later log line of this run."""
    _context.set({**(_context.get() or {}), **{k: v for k, v in fields.items() if v is not None}})


class ContextFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        record.stemgen_context = _context.get() or {}
        return True


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, timezone.utc).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
            **getattr(record, "stemgen_context", {}),
        }
        if record.exc_info:
            line["exception"] = self.formatException(record.exc_info)
        return json.dumps(line, default=str)


class TextFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        context = " ".join(f"{k}={v}" for k, v in getattr(record, "stemgen_context", {}).items())
        text = f"{record.levelname[0]} {record.name}: {record.getMessage()}" + (f" [{context}]" if context else "")
        if record.exc_info:
            text += "\n" + self.formatException(record.exc_info)
        return text


def setup(log_format: str = "json", level: int = logging.INFO) -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.addFilter(ContextFilter())
    handler.setFormatter(JsonFormatter() if log_format == "json" else TextFormatter())
    root = logging.getLogger()
    for existing in list(root.handlers):
        if getattr(existing, "_stemgen", False):
            root.removeHandler(existing)
    handler._stemgen = True  # type: ignore[attr-defined]
    root.addHandler(handler)
    root.setLevel(level)
    for noisy in ("azure.core.pipeline.policies.http_logging_policy", "urllib3", "kubernetes.client.rest"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
