"""The log of the node service and of the controller: one line per event on stderr, as text
or as JSON (one object a line).

`configure` installs the handler for the whole process (`spidernet serve` and `spidernet
controller`, `--log-level --log-format`). Lines that carry facts pass them as
`extra={"fields": {...}}`: the text form appends them as `key=value`, the JSON form as
members, so a log shipper can index a CNI request's container, pod, verb, outcome and
duration without parsing the message.
"""

from __future__ import annotations

import json
import logging
import sys
import time
from collections.abc import Mapping
from typing import TextIO

LEVELS = ("debug", "info", "warning", "error")
FORMATS = ("text", "json")


def _fields(record: logging.LogRecord) -> Mapping[str, object]:
    fields = getattr(record, "fields", None)
    return fields if isinstance(fields, Mapping) else {}


class TextFormatter(logging.Formatter):
    """`spidernet: LEVEL: message key=value ...` (values with spaces quoted)."""

    def format(self, record: logging.LogRecord) -> str:
        parts = [f"spidernet: {record.levelname}: {record.getMessage()}"]
        for key, value in _fields(record).items():
            text = str(value)
            parts.append(f"{key}={json.dumps(text) if (' ' in text or not text) else text}")
        return " ".join(parts)


class JsonFormatter(logging.Formatter):
    """`{"time": ..., "level": ..., "logger": ..., "msg": ..., <fields>}` on one line."""

    def format(self, record: logging.LogRecord) -> str:
        doc: dict[str, object] = {
            "time": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
            + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        doc.update(_fields(record))
        return json.dumps(doc, sort_keys=False, default=str)


def configure(level: str = "info", fmt: str = "text", stream: TextIO | None = None) -> None:
    """Send every logger's records at `level` and above to `stream` (stderr) as `fmt`."""
    if level not in LEVELS or fmt not in FORMATS:
        raise ValueError(f"log level must be one of {LEVELS} and format one of {FORMATS}")
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(JsonFormatter() if fmt == "json" else TextFormatter())
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level.upper())
