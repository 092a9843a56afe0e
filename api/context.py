"""The request's runtime and caller, for blueprints (kept apart from the app factory, as
Flask's tutorial keeps ``get_db``, so routes and ``create_app`` do not import each other)."""

from __future__ import annotations

from flask import current_app, g

from access.approval_desk import ApprovalDesk
from access.errors import Forbidden
from access.events import Caller
from access.runtime import Runtime

EXTENSION = "pii_vault"


def runtime() -> Runtime:
    return current_app.extensions[EXTENSION]  # type: ignore[no-any-return]


def caller() -> Caller:
    return Caller(g.principal.name, g.request_id, g.principal.region, tuple(g.principal.roles))


def approval_desk() -> ApprovalDesk:
    desk = runtime().guard.approvals
    if desk is None:
        raise Forbidden("four-eyes approval is not configured here")
    return desk
