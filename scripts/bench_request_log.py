"""Cost of the per-request log line (``api/app.py`` ``_request_line``, issue 23) in text
and JSON, against the same call with INFO switched off, in one run.

Usage: python scripts/bench_request_log.py [--lines N]
"""

from __future__ import annotations

import argparse
import io
import logging
import time
from dataclasses import dataclass

from flask import Flask, g

from api import logs
from api.app import _request_line


@dataclass
class _Principal:
    name: str = "svc:registration-service"


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--lines", type=int, default=20000)
    n = parser.parse_args().lines
    app = Flask("bench")
    for fmt in ("text", "json", "off"):
        logs.configure("text" if fmt == "off" else fmt, "WARNING" if fmt == "off" else "INFO")
        handler = logging.getLogger().handlers[0]
        handler.stream = io.StringIO()  # type: ignore[attr-defined]
        with app.test_request_context("/v1/subjects", method="POST"):
            g.request_id, g.principal = "a" * 32, _Principal()
            start = time.perf_counter()
            for _ in range(n):
                _request_line("/v1/subjects", 201, 0.0123)
            took = time.perf_counter() - start
        print(f"{fmt}: {took / n * 1e6:.1f} us per request line")


if __name__ == "__main__":
    main()
