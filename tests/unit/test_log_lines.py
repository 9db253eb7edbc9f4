"""The lines `--log-format json|text` writes (monitor events and Python log records)."""

from __future__ import annotations

import io
import json
import logging

from failback.cli.logs import JsonFormatter, configure
from failback.model.secrets import Redactor
from failback.monitor.notify import Notifier, event_document, event_level, log_line

SECRET = "hunter2-secret-value"


def test_event_levels_follow_the_kind() -> None:
    assert event_level("failback.failed") == "error"
    assert event_level("monitor.error") == "error"
    assert event_level("failure.detected") == "warning"
    assert event_level("failover.rolled_back") == "warning"
    assert event_level("failback.rolled-back") == "warning"
    assert event_level("failback.waiting_approval") == "warning"
    assert event_level("failback.succeeded") == "info"
    assert event_level("failure.recovered") == "info"


def test_an_event_line_is_json_with_level_logger_and_ids_or_text() -> None:
    doc = event_document({"id": 3, "ts": 1.0, "kind": "failover.failed", "service": "app",
                          "run_id": 7, "step": "promote", "message": "it broke"})  # fmt: skip
    parsed = json.loads(log_line(doc))
    assert parsed["level"] == "error" and parsed["logger"] == "failback.monitor"
    assert (parsed["time"], parsed["run_id"], parsed["service"], parsed["message"]) == (
        "1970-01-01T00:00:01.000+00:00", 7, "app", "it broke")  # fmt: skip
    text = log_line(doc, text=True)
    assert text == (
        "1970-01-01T00:00:01.000+00:00 ERROR   failover.failed app run=7 step=promote: it broke"
    )


def test_the_notifier_masks_secrets_in_both_formats() -> None:
    redactor = Redactor([SECRET])
    for text in (False, True):
        out = io.StringIO()
        notifier = Notifier([], out, text=text, redact=redactor.text)
        notifier.emit({"id": 1, "kind": "command.output", "message": f"echo {SECRET}"})
        assert SECRET not in out.getvalue() and "****" in out.getvalue()


def test_python_log_records_are_json_with_extras_and_redacted() -> None:
    stream = io.StringIO()
    configure("json", Redactor([SECRET]).text, stream)
    try:
        logging.getLogger("failback.test").warning(
            "token %s seen", SECRET, extra={"run_id": 4, "service": "app"}
        )
        try:
            raise ValueError(SECRET)
        except ValueError:
            logging.getLogger("failback.test").exception("boom")
    finally:
        logging.getLogger().handlers.clear()
    first, second = (json.loads(line) for line in stream.getvalue().splitlines())
    assert first["level"] == "warning" and first["logger"] == "failback.test"
    assert first["message"] == "token **** seen"
    assert (first["run_id"], first["service"]) == (4, "app")
    assert second["level"] == "error" and "ValueError: ****" in second["exception"]
    assert isinstance(JsonFormatter().format(logging.makeLogRecord({"msg": "x"})), str)
