"""The one place project errors become HTTP statuses, as application/problem+json.

Messages come from the project's own exceptions, which carry codes, field names
and ids only; unexpected errors answer a generic 500 and are logged without
their arguments.
"""

from __future__ import annotations

import json
import logging
from http import HTTPStatus
from typing import Any

import orjson
from flask import (
    Flask,
    Response,
    current_app,
    g,
    has_request_context,
    render_template,
    request,
    session,
)
from werkzeug.exceptions import HTTPException

from access.errors import AccessError, AccessErrorCode, ApprovalRequired, Throttled
from api.console.forms import SignOutForm
from vault.errors import ValidationError, VaultError, VaultErrorCode, frames

log = logging.getLogger(__name__)

# Every error code the project raises, and its HTTP status. The code is read from the
# exception itself (``exc.code``); a code missing here is a bug (a test walks every class).
STATUS: dict[VaultErrorCode | AccessErrorCode, int] = {
    "invalid": 400,
    "justification_required": 400,
    "minor_flag_conflicts": 400,
    "unknown_purpose": 400,
    "unauthenticated": 401,
    "forbidden": 403,
    "consent_required": 403,
    "restricted": 403,
    "guardian_consent_required": 403,
    "transfer_basis_required": 403,
    "break_glass_required": 403,
    "no_processing_agreement": 403,
    "approval_required": 403,
    "self_approval": 403,
    "approval_closed": 409,
    "legal_hold": 409,
    "not_found": 404,
    "principal_not_found": 404,
    "duplicate_external_id": 409,
    "principal_exists": 409,
    "rate_limited": 429,
    "reveal_budget_spent": 429,
    "search_budget_spent": 429,
    "read_budget_spent": 429,
    "ticket_rejected": 403,
    "ticket_system_unavailable": 503,
    "identity_provider_unavailable": 503,
    "shredded": 410,
    "decryption_failed": 500,
    "subject_damaged": 500,
    "unavailable": 503,
    "shred_pending": 503,
    "key_provider_unavailable": 503,
    "region_unavailable": 503,
    "database_unavailable": 503,
    "audit_unavailable": 503,
    "grants_tampered": 503,
}
# Codes of base classes and start-up errors: never raised to a request on purpose, so
# they answer a generic 500 that says nothing more.
INTERNAL: frozenset[VaultErrorCode | AccessErrorCode] = frozenset(
    {"error", "access_error", "config"}
)


def problem(
    status: int,
    code: str,
    detail: str,
    errors: dict[str, str] | None = None,
    extra: dict[str, Any] | None = None,
) -> Response:
    body: dict[str, Any] = {
        "type": f"urn:pii-vault:problem:{code}",
        "title": HTTPStatus(status).phrase,
        "status": status,
        "detail": detail,
        "code": code,
        "request_id": getattr(g, "request_id", None),
    }
    if errors:
        body["errors"] = errors
    if has_request_context():
        g.problem = (code, detail)  # the request line names the cause (api/app.py)
    if extra:
        body.update(extra)  # e.g. the approval request a four-eyes refusal filed
    response = Response(json.dumps(body), status=status, mimetype="application/problem+json")
    if status == 401:
        response.headers["WWW-Authenticate"] = 'Bearer realm="pii-vault"'
    return response


def _from_exception(exc: Exception) -> Response:
    if isinstance(exc, VaultError | AccessError) and exc.code in STATUS:
        errors = exc.errors if isinstance(exc, ValidationError) else None
        extra = {"approval_id": exc.approval_id} if isinstance(exc, ApprovalRequired) else None
        response = problem(STATUS[exc.code], exc.code, str(exc), errors, extra)
        if isinstance(exc, Throttled):
            response.headers["Retry-After"] = str(exc.retry_after)
        return response
    log.error(
        "unexpected %s on %s at %s",
        type(exc).__name__,
        getattr(g, "request_id", "-"),
        frames(exc.__traceback__),
    )
    return problem(500, "internal", "internal error")


def validation_problem(exc: Any) -> Response:
    """flask-openapi3's validation hook: pydantic errors as a 400 problem, values never echoed."""
    if _malformed_json():
        return problem(
            400,
            "invalid",
            "the body is not valid JSON; nothing was stored",
            {"body": "json_invalid"},
        )
    errors: dict[str, str] = {}
    for err in getattr(exc, "errors", lambda: [])():
        where = ".".join(str(p) for p in err.get("loc", ())) or "body"
        errors[where[:128]] = str(err.get("type", "invalid"))
    return problem(400, "invalid", "the request is malformed; nothing was stored", errors or None)


def _malformed_json() -> bool:
    """A body that does not parse (issue 23: it read ``body: model_type``). Asked only once
    validation failed, so a good request's body is parsed once, by the route's model."""
    body = request.get_data(cache=True) if has_request_context() else b""
    if not body:
        return False
    try:
        orjson.loads(body)
    except orjson.JSONDecodeError:
        return True
    return False


def _for_people(response: Response) -> Response:
    """On console pages the same status and message, as a page instead of JSON."""
    if not request.path.startswith("/console") or "pii_vault_console" not in current_app.extensions:
        return response  # the API, or a console that is off: the problem as it is
    body = json.loads(response.get_data())
    page = render_template(
        "console/error.html",
        status=response.status_code,
        message=body.get("detail", ""),
        errors=body.get("errors"),
        signout=SignOutForm(prefix="signout") if session.get("principal") else None,
    )
    return Response(page, status=response.status_code, mimetype="text/html")


def register(app: Flask) -> None:
    @app.errorhandler(VaultError)
    @app.errorhandler(AccessError)
    def _project(exc: Exception) -> Response:
        return _for_people(_from_exception(exc))

    @app.errorhandler(HTTPException)
    def _http(exc: HTTPException) -> Response:
        status = exc.code or 500
        code = {
            400: "invalid",
            404: "not_found",
            405: "method_not_allowed",
            413: "payload_too_large",
            415: "unsupported_media_type",
        }.get(status, "http_error")
        detail = {
            413: "request body exceeds the configured limit; nothing was stored",
            400: "the request is malformed; nothing was stored",
        }.get(status, exc.description or HTTPStatus(status).phrase)
        return _for_people(problem(status, code, detail))

    @app.errorhandler(Exception)
    def _unexpected(exc: Exception) -> Response:
        return _for_people(_from_exception(exc))
