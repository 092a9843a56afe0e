"""Liveness, readiness and metrics (no authentication; no data)."""

from __future__ import annotations

from collections.abc import Callable
from functools import partial
from typing import Any

from flask import Response, current_app
from flask_openapi3 import APIBlueprint, Tag
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from access.errors import AuditUnavailable, IdentityProviderUnavailable
from api.console.auth import check_issuer
from api.context import runtime
from api.models import HealthResponse, ReadyResponse
from keys.cluster import clusters_of
from vault.errors import ServiceUnavailable

bp = APIBlueprint("ops", __name__, abp_tags=[Tag(name="operations")])


@bp.get("/healthz", responses={200: HealthResponse})
def healthz() -> dict[str, Any]:
    return {"status": "ok"}


@bp.get("/readyz", responses={200: ReadyResponse, 503: ReadyResponse})
def readyz() -> tuple[dict[str, Any], int]:
    """Ready means a request would work: each dependency answers, the schema is this
    version's (or a newer one's, mid-upgrade), the audit log extends its newest anchor.
    What is not is named in ``reasons`` (never a value)."""
    rt = runtime()
    state = {"database": "ok", "key_provider": "ok", "database_schema": "ok", "audit_anchors": "ok"}
    reasons: list[str] = []
    try:
        rt.check_database()
        state["database_schema"] = rt.schema_state()
        if state["database_schema"] in ("behind", "missing"):
            reasons.append(f"database schema {state['database_schema']}: run `pii-vault init`")
    except ServiceUnavailable as exc:
        state["database"] = "unavailable"
        state["database_schema"] = "unknown"
        reasons.append(str(exc))
    if state["database"] == "ok":
        try:  # against the tip this process knows: never a Vault call here
            if not rt.audit.check_extends_anchors(discover=False):
                state["audit_anchors"] = "unchecked"
        except AuditUnavailable as exc:
            state["audit_anchors"] = "broken"
            reasons.append(str(exc))
    else:
        state["audit_anchors"] = "unknown"
    try:
        rt.check_key_provider()
    except ServiceUnavailable as exc:
        state["key_provider"] = "unavailable"
        reasons.append(str(exc))
    state["identity_provider"] = "none"
    console = current_app.extensions.get("pii_vault_console")
    checks: list[Callable[[], None]] = []
    if rt.principals.tokens is not None:
        checks.append(rt.principals.tokens.check_reachable)
    if console is not None:
        checks.append(partial(check_issuer, console.issuer, timeout=1.0))
    for check in checks:  # the services' issuer, the console's: either down is not ready
        try:
            check()
            if state["identity_provider"] == "none":
                state["identity_provider"] = "ok"
        except IdentityProviderUnavailable as exc:
            state["identity_provider"] = "unavailable"
            reasons.append(str(exc))
    auth = rt.backend.auth_state
    state["vault_auth"] = "none" if auth is None else ("ok" if auth.ok else "failed")
    if state["vault_auth"] == "failed":
        reasons.append("Vault token renewal or login failed")
    ready = all(v in ("ok", "none", "ahead", "unchecked") for v in state.values())
    body: dict[str, Any] = {"status": "ready" if ready else "unavailable", **state}
    if reasons:
        body["reasons"] = reasons
    if rt.stream is not None:  # a lagging sink is reported, never a reason to stop serving
        try:
            lag = rt.stream.lag()
        except ServiceUnavailable:
            lag = {}
        body["audit_stream"] = [
            {
                "sink": name,
                "lag": lag.get(name),
                "state": "down" if st.last_error else "ok",
                "delivered": st.delivered,
            }
            for name, st in rt.stream.state.items()
        ]
    clusters = [c for c in clusters_of(rt.backend) if c.health is not None]
    if clusters:  # what the background probe saw: never a Vault call made here
        body["vault"] = [
            {
                "reason": c.health.reason,
                "breaker": c.breaker.state,
                "nodes": {n.addr: n.state for n in c.health.nodes},
            }
            for c in clusters
            if c.health is not None
        ]
    return body, 200 if ready else 503


@bp.get("/metrics", doc_ui=False)
def metrics() -> Response:
    registry = current_app.extensions["pii_vault_metrics"].registry
    return Response(generate_latest(registry), content_type=CONTENT_TYPE_LATEST)  # once
