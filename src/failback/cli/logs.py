"""``--log-format text|json`` for the long-running commands (``monitor``, ``serve``).

With ``json`` every line a process writes to its logs is one JSON object with at
least ``time``, ``level``, ``logger`` and ``message`` (plus ``run_id`` and
``service`` when the record knows them) so a log pipeline (journald -> Loki, Vector,
Fluent Bit) needs no parser. Python's logging is configured once at the root, and
uvicorn is started without its own configuration so that its access and error lines
go through the same handler. Every line passes through the topology's ``Redactor``.
"""

from __future__ import annotations

import json
import logging
import sys
from collections.abc import Callable
from datetime import UTC, datetime
from enum import StrEnum
from typing import Annotated, Any, TextIO

import typer


class LogFormat(StrEnum):
    text = "text"
    json = "json"


LogFormatOpt = Annotated[
    LogFormat,
    typer.Option(
        "--log-format",
        help="text (for people) or json (one JSON object per line, for log pipelines)",
        case_sensitive=False,
    ),
]
_STANDARD = set(vars(logging.makeLogRecord({}))) | {"message", "asctime", "color_message"}
"""Record attributes that are not extras (uvicorn's color_message repeats the message)."""


class JsonFormatter(logging.Formatter):
    """One JSON object per record: time, level, logger, message, and the extras given."""

    def __init__(self, redact: Callable[[str], str] | None = None) -> None:
        super().__init__()
        self.redact = redact or (lambda text: text)

    def format(self, record: logging.LogRecord) -> str:
        document: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        for key, value in vars(record).items():
            if key not in _STANDARD and not key.startswith("_"):
                document[key] = value  # run_id=, service= given as extra=
        if record.exc_info:
            document["exception"] = self.formatException(record.exc_info)
        return self.redact(json.dumps(document, default=str))


class TextFormatter(logging.Formatter):
    """``TIME LEVEL logger: message``, redacted."""

    def __init__(self, redact: Callable[[str], str] | None = None) -> None:
        super().__init__("%(asctime)s %(levelname)-7s %(name)s: %(message)s")
        self.redact = redact or (lambda text: text)

    def format(self, record: logging.LogRecord) -> str:
        return self.redact(super().format(record))


def configure(fmt: str, redact: Callable[[str], str], stream: TextIO | None = None) -> None:
    """Send every logger's records (ours, uvicorn's) to ``stream`` in ``fmt``."""
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(JsonFormatter(redact) if fmt == "json" else TextFormatter(redact))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(logging.INFO)
    for name in ("uvicorn", "uvicorn.error", "uvicorn.access"):
        logger = logging.getLogger(name)
        logger.handlers[:] = []
        logger.propagate = True


def say(message: str, *, level: int = logging.INFO, logger: str = "failback") -> None:
    """A line for the operator, through logging (so it is JSON under --log-format json)."""
    logging.getLogger(logger).log(level, message)
