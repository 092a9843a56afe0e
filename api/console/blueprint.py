"""The console's blueprint and what every page shares: the gate (CSRF on every post,
sign-in, a disabled principal out), the CSP, the caller. The security headers are set
on every response of the app (``api/app.py``), 404s and errors included."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

from flask import Blueprint, current_app, g, redirect, request, session, url_for
from flask_wtf.csrf import CSRFProtect

from access.events import Caller
from api.console.config import ConsoleSettings
from api.console.sessions import ServerSession
from api.context import runtime

bp = Blueprint(
    "console",
    __name__,
    url_prefix="/console",
    template_folder="templates",
    static_folder="static",
    static_url_path="/static",
)
csrf = CSRFProtect()
OAUTH = "pii_vault_console_oauth"
OPEN_ENDPOINTS = {"console.home", "console.login", "console.callback", "console.static"}


def content_security_policy(issuer: str) -> str:
    """No inline script or style, nothing from elsewhere, never framed. Forms post here
    only — and to the identity provider's origin, where a reveal that needs a fresh
    sign-in is redirected (a form's redirect chain is checked against form-action)."""
    parts = urlsplit(issuer)
    idp = f"{parts.scheme}://{parts.netloc}"
    return (
        "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; "
        f"connect-src 'self'; form-action 'self' {idp}; frame-ancestors 'none'; "
        "base-uri 'none'"
    )


def identity_provider() -> Any:
    """This app's OIDC client (authlib), registered by ``init_console``."""
    return current_app.extensions[OAUTH].idp


def settings() -> ConsoleSettings:
    return current_app.extensions["pii_vault_console"]  # type: ignore[no-any-return]


def console_caller() -> Caller:
    return Caller(
        session["principal"],
        g.request_id,
        session.get("region"),
        tuple(session.get("roles") or ()),
    )


def signed_in() -> bool:
    return bool(session.get("principal"))


def end_session() -> None:
    """Sign out: the session row is deleted and both cookies cleared when the response goes."""
    current: ServerSession = session  # type: ignore[assignment]
    current.end()


@bp.before_request
def _gate() -> Any:
    if request.method == "POST":
        csrf.protect()  # a forged form post is refused before anything else
    if request.endpoint in OPEN_ENDPOINTS:
        return None
    if not signed_in():
        return redirect(url_for("console.login", next=request.path))
    if not runtime().principals.is_enabled(session["principal"]):
        end_session()  # disabled meanwhile (any other session of theirs: at its next request)
        return redirect(url_for("console.home"))
    return None  # then api/console/auth.py asks the identity provider again, if due
