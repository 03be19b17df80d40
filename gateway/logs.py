"""Structured logging.

Records carry ``extra`` fields (``study``, ``sop``, ``stage``...) that the JSON formatter emits as keys.
Patient names and IDs are never logged at INFO or above: log calls pass UIDs only, and
:class:`PhiFilter` drops any ``extra`` field whose name marks it as patient data unless the level is DEBUG.
"""

from __future__ import annotations

import json
import logging
import sys
import time
from typing import Any

from gateway.settings import LogSettings

_STANDARD = set(logging.LogRecord("", 0, "", 0, "", (), None).__dict__) | {"message", "asctime"}
PHI_FIELDS = frozenset({"patient_id", "patient_name", "patient_birth_date", "other_patient_ids"})


class PhiFilter(logging.Filter):
    """Remove patient-identifying ``extra`` fields from records above DEBUG."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno > logging.DEBUG:
            for name in PHI_FIELDS & set(record.__dict__):
                setattr(record, name, "<redacted>")
        return True


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        out: dict[str, Any] = {
            "ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
            + f".{int(record.msecs):03d}Z",
            "level": record.levelname,
            "logger": record.name,
            "msg": record.getMessage(),
        }
        for key, value in record.__dict__.items():
            if key not in _STANDARD and not key.startswith("_"):
                out[key] = value if isinstance(value, str | int | float | bool | None) else str(value)
        if record.exc_info:
            out["exc"] = self.formatException(record.exc_info)
        return json.dumps(out, ensure_ascii=False)


class KeyValueFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        base = super().format(record)
        extras = [
            f"{k}={v}" for k, v in record.__dict__.items() if k not in _STANDARD and not k.startswith("_")
        ]
        return f"{base} {' '.join(extras)}" if extras else base


def configure_logging(settings: LogSettings) -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.addFilter(PhiFilter())
    if settings.json_format:
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(KeyValueFormatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(logging.WARNING)
    logging.getLogger("gateway").setLevel(settings.level)
    # pynetdicom logs PDUs and patient-bearing datasets at DEBUG/INFO; keep it at WARNING.
    logging.getLogger("pynetdicom").setLevel(logging.WARNING)
