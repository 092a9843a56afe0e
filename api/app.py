"""The Flask application factory: ``create_app(config)``."""

from __future__ import annotations

import hmac
import logging
import re
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

from flask import Response, g, request
from flask_openapi3 import Info, OpenAPI
from werkzeug.exceptions import BadRequest, NotFound, UnsupportedMediaType

from access.errors import AuthenticationFailed
from access.runtime import Runtime, open_runtime
from api import errors, openapi
from api.console import init_console
from api.console.blueprint import content_security_policy
from api.console.config import ConsoleSettings
from api.console.sessions import CONSOLE_PREFIX
from api.context import EXTENSION
from api.jsonio import OrjsonProvider
from api.metrics import Metrics
from api.models import Problem
from api.routes import approvals, audit, consents, emergency, ops, subjects, tokens, transfers
from keys.bounded import LANES
from vault.config import Settings

DEFAULT_MAX_BODY = 1024 * 1024
MAX_JSON_DEPTH = 32  # no request model nests deeper than 4
PUBLIC_PATHS = {"/healthz", "/readyz", "/metrics", "/v1/openapi.json"}
_REQUEST_ID = re.compile(r"^[A-Za-z0-9._-]{1,64}$")
# Every response, pages and problems alike: nothing of it may be framed, sniffed, cached,
# or sent on as a referrer. The console's pages get its own CSP; everything else none.
API_CSP = "default-src 'none'; frame-ancestors 'none'; base-uri 'none'"
SECURITY_HEADERS = {
    "Cache-Control": "no-store",  # responses may carry PII
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
    "Cross-Origin-Opener-Policy": "same-origin",
}


@dataclass
class AppConfig:
    """What the app needs; ``runtime`` may be injected (tests, demo), else built from settings."""

    settings: Settings = field(default_factory=Settings.from_env)
    max_body_bytes: int = DEFAULT_MAX_BODY
    runtime: Runtime | None = None
    # The console (/console/) is mounted when an identity provider is configured.
    console: ConsoleSettings | None = field(default_factory=ConsoleSettings.from_env)


_BODY_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})
_JSON_STRING = re.compile(rb'"(?:[^"\\]|\\.)*"', re.DOTALL)
_NOT_BRACKET = bytes(b for b in range(256) if b not in b"[]{}")


def json_depth(body: bytes) -> int:
    """How deeply a JSON text nests arrays and objects (strings skipped), without parsing it.

    Strings go first (a regular expression, linear), then everything but brackets
    (``bytes.translate``), so the Python loop sees only the brackets: a 400-token
    batch is a few of them, not 20,000 bytes. An unterminated string hides the rest."""
    bare = _JSON_STRING.sub(b"", body).split(b'"', 1)[0]
    depth = deepest = 0
    for byte in bare.translate(None, delete=_NOT_BRACKET):
        if byte in (0x5B, 0x7B):  # [ {
            depth += 1
            deepest = max(deepest, depth)
        else:  # ] }
            depth -= 1
    return deepest


_requests = logging.getLogger("pii_vault.requests")


def _request_line(route: str, status: int, elapsed: float) -> None:
    """The access log: one line per request — its route pattern (never the path: ids and
    tokens stay out), status, duration, principal and request id (api/logs.py) and, for
    an error, the problem's code and detail (which never carry a value). A 5xx is an
    ERROR: the one line on-call needs, naming the cause."""
    problem = getattr(g, "problem", None)
    cause = f"{problem[0]}: {problem[1]}" if problem and status >= 400 else None
    _requests.log(
        logging.ERROR if status >= 500 else logging.INFO,
        "%s %s %d",
        request.method,
        route,
        status,
        extra={
            "method": request.method,
            "route": route,
            "status": status,
            "duration_ms": round(elapsed * 1000, 1),
            "cause": cause,
        },
    )


def create_app(config: AppConfig | None = None) -> OpenAPI:
    config = config or AppConfig()
    if config.runtime is None:  # a serving process of its own (e.g. a gunicorn worker)
        rt = open_runtime(config.settings)
        rt.start_maintenance()
        # One server thread stays free of Vault calls (keys.cluster.Lanes).
        LANES.configure(config.settings.worker_threads - 1)
    else:
        rt = config.runtime
    app = OpenAPI(
        __name__,
        info=Info(title="pii-vault", version="1"),
        security_schemes={"bearer": {"type": "http", "scheme": "bearer"}},
        doc_ui=False,
        validation_error_status=400,
        validation_error_model=Problem,
        validation_error_callback=errors.validation_problem,
    )
    app.json = OrjsonProvider(app)
    app.config["MAX_CONTENT_LENGTH"] = config.max_body_bytes
    app.config["PII_VAULT_MAX_BATCH"] = config.settings.max_batch
    app.extensions[EXTENSION] = rt
    metrics = Metrics(rt)
    app.extensions["pii_vault_metrics"] = metrics
    console_csp = content_security_policy(config.console.issuer) if config.console else ""

    @app.before_request
    def _authenticate() -> None:
        g.started = time.perf_counter()
        g.lane = LANES.begin_request()
        given = request.headers.get("X-Request-Id", "")
        g.request_id = given if _REQUEST_ID.fullmatch(given) else uuid.uuid4().hex
        if request.path == "/metrics" and config.settings.metrics_token:
            scheme, _, given = request.headers.get("Authorization", "").partition(" ")
            if scheme.lower() != "bearer" or not hmac.compare_digest(
                given.strip().encode(), config.settings.metrics_token.encode()
            ):
                raise AuthenticationFailed()
        if request.path.startswith(CONSOLE_PREFIX) and config.console is None:
            raise NotFound()  # a console that is off has no paths (a plain 404)
        if request.path in PUBLIC_PATHS or request.path.startswith(CONSOLE_PREFIX):
            return  # the console authenticates people by its own session (api/console)
        scheme, _, key = request.headers.get("Authorization", "").partition(" ")
        if scheme.lower() != "bearer":
            raise AuthenticationFailed()
        g.principal = rt.principals.authenticate(key.strip())
        # Every body however it is framed (a chunked one has no Content-Length: issue 17),
        # read within MAX_CONTENT_LENGTH (413 beyond it), its depth checked before any
        # parser recurses into it.
        if request.method in _BODY_METHODS:
            body = request.get_data(cache=True)
            if body and request.mimetype != "application/json":
                raise UnsupportedMediaType()  # 415, as documented (not a validation 400)
            if body and json_depth(body) > MAX_JSON_DEPTH:
                raise BadRequest()
        if any(len(values) > 1 for values in request.args.listvalues()):
            raise BadRequest()  # a parameter given twice: which one would count is ambiguous

    @app.after_request
    def _finish(response: Response) -> Response:
        response.headers["X-Request-Id"] = getattr(g, "request_id", "-")
        response.headers.update(SECURITY_HEADERS)
        response.headers["Content-Security-Policy"] = (
            console_csp if console_csp and request.path.startswith(CONSOLE_PREFIX) else API_CSP
        )
        endpoint = request.url_rule.rule if request.url_rule is not None else "unmatched"
        metrics.requests.labels(endpoint, request.method, str(response.status_code)).inc()
        started = getattr(g, "started", None)
        elapsed = time.perf_counter() - started if started is not None else 0.0
        if started is not None:
            metrics.latency.labels(endpoint, request.method).observe(elapsed)
        _request_line(endpoint, response.status_code, elapsed)
        return response

    @app.teardown_request
    def _release_lane(_: BaseException | None) -> None:
        token = g.pop("lane", None)
        if token is not None:
            LANES.end_request(token)

    errors.register(app)

    for module in (subjects, consents, tokens, transfers, emergency, approvals, audit, ops):
        app.register_api(module.bp)
    if config.console is not None:
        init_console(app, rt, config.console)

    document = openapi.finish(app.api_doc, rt.policy.purposes.names, list(rt.vault.schema.fields))

    @app.get("/v1/openapi.json", doc_ui=False)
    def openapi_document() -> dict[str, Any]:
        return document

    return app
