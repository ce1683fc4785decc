"""A JSON log formatter that keeps the engine's ``extra`` fields (run, workflow, stage, attempt).

The standard library has no JSON formatter; this one is enough for the engine's records and any other
(``logging.config.dictConfig`` with ``"()": "django_workflow_engine.ops.jsonlog.JSONFormatter"``).
"""

from __future__ import annotations

import json
import logging
from datetime import UTC, datetime
from typing import Any

from ..kernel.logcontext import FIELDS


class JSONFormatter(logging.Formatter):
    """One JSON object per line: ``time`` (UTC ISO 8601), ``level``, ``logger``, ``message``, the engine's
    ``run_id`` / ``workflow_id`` / ``stage_id`` / ``attempt`` when the record has them, and ``exc_info``
    (the formatted traceback) for exceptions.

    Args:
        fields: more record attributes to copy when present (e.g. ``["request_id"]`` set by a filter).
    """

    def __init__(self, *args: Any, fields: list[str] | tuple[str, ...] = (), **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.fields = (*FIELDS, *fields)

    def format(self, record: logging.LogRecord) -> str:
        data: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        for name in self.fields:
            value = getattr(record, name, None)
            if value is not None:
                data[name] = value
        if record.exc_info:
            data["exc_info"] = self.formatException(record.exc_info)
        return json.dumps(data, default=str)
