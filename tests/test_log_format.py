"""The log formats (api/logs.py) on their own: one record is one line, and an error is
its type and frames, never its message."""

from __future__ import annotations

import json
import logging
import sys

from api.logs import JsonFormatter, TextFormatter

SECRET = "alice@example.com"


def _record(message: str, *args: object, exc: bool = False) -> logging.LogRecord:
    exc_info = None
    if exc:
        try:
            {}[SECRET]  # a KeyError names its key: a value
        except KeyError:
            exc_info = sys.exc_info()
    return logging.LogRecord("t", logging.ERROR, __file__, 1, message, args, exc_info)


def test_a_message_with_newlines_stays_one_line() -> None:
    record = _record("unknown purpose %s", "x\n2026-12-04T00:00:00Z ERROR forged")
    text = TextFormatter().format(record)
    assert "\n" not in text and "\\x0a" in text
    assert "\n" not in JsonFormatter().format(record)


def test_an_error_is_its_type_and_frames_never_its_message() -> None:
    for formatter in (TextFormatter(), JsonFormatter()):
        line = formatter.format(_record("request failed", exc=True))
        assert "KeyError at test_log_format.py:" in line
        assert SECRET not in line
    body = json.loads(JsonFormatter().format(_record("request failed", exc=True)))
    assert body["level"] == "ERROR" and body["ts"].endswith("Z")
