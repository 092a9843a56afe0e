"""Signing in and out: OIDC authorization code with PKCE (authlib), roles from a claim.

After the identity provider sends the browser back, the principal
``user:<sub>`` is created or its roles updated from the configured claim
(``principal disable`` keeps a person out). The callback answers with a page that
moves on by itself instead of a redirect: the Strict session cookie is only sent
on a navigation that starts on this site.
"""

from __future__ import annotations

import re
import time
from typing import Any

from authlib.integrations.base_client.errors import OAuthError
from flask import redirect, render_template, request, session, url_for

from access.errors import AuthenticationFailed
from api.console.blueprint import bp, end_session, identity_provider, settings, signed_in
from api.console.forms import SignOutForm
from api.context import runtime

_NEXT = re.compile(r"^/console/[A-Za-z0-9/_-]{0,200}$")
CLOCK_SKEW = 2.0  # seconds the provider's clock may be behind ours
_SUB = re.compile(r"^[a-z0-9][a-z0-9._-]{0,62}$")


def safe_next(raw: str | None) -> str:
    """Only a console path of our own (no open redirect)."""
    return raw if raw and _NEXT.fullmatch(raw) else "/console/"


@bp.get("/")
def home() -> Any:
    # No form for an anonymous visitor: a form means a CSRF token, i.e. a stored session.
    signout = SignOutForm(prefix="signout") if signed_in() else None
    return render_template("console/home.html", signout=signout)


@bp.get("/login")
def login() -> Any:
    """Start a sign-in; ``step_up=1`` asks the identity provider to authenticate anew."""
    step_up = request.args.get("step_up") == "1"
    nxt = safe_next(request.args.get("next"))
    for key in ("principal", "roles", "email", "signed_in_at"):
        session.pop(key, None)  # a sign-in always starts from nothing
    session["next"] = nxt
    session["step_up_from"] = time.time() if step_up else None
    # max_age makes the provider re-authenticate a session older than a second (OpenBao
    # refuses max_age=0) and put auth_time in the ID token, which the callback checks.
    extra: dict[str, Any] = {"max_age": 1, "prompt": "login"} if step_up else {}
    return identity_provider().authorize_redirect(settings().redirect_uri, **extra)


@bp.get("/auth/callback")
def callback() -> Any:
    try:
        token = identity_provider().authorize_access_token()
    except OAuthError:
        return _refused("The sign-in could not be completed. Please try again.")
    claims = token.get("userinfo") or {}
    sub = str(claims.get("sub") or "").lower()
    if not _SUB.fullmatch(sub):
        return _refused("The identity provider sent no usable subject.")
    groups = claims.get(settings().roles_claim) or []
    if isinstance(groups, str):
        groups = [groups]
    roles = [settings().role_map[g] for g in groups if g in settings().role_map]
    try:
        principal = runtime().principals.sign_in_user(f"user:{sub}", roles)
    except AuthenticationFailed:
        return _refused("You have no role in the vault, or your access is disabled.")
    step_up_from = session.get("step_up_from")
    if step_up_from and float(claims.get("auth_time") or 0) < float(step_up_from) - CLOCK_SKEW:
        # A step-up counts only if the provider says it authenticated the person anew.
        return _refused("The identity provider did not ask for your credentials again.")
    nxt = session.get("next") or "/console/"
    session.clear()
    session.update(
        principal=principal.name,
        roles=list(principal.roles),
        email=str(claims.get("email") or "")[:200],
        signed_in_at=time.time(),
    )
    return render_template("console/signed_in.html", next=safe_next(nxt))


@bp.post("/logout")
def logout() -> Any:
    end_session()
    return redirect(url_for("console.home"))


def _refused(message: str) -> Any:
    end_session()
    return render_template("console/error.html", status=403, message=message), 403


def fresh_sign_in() -> bool:
    """Signed in recently enough to reveal (the step-up window)."""
    return signed_in() and time.time() - float(session.get("signed_in_at") or 0) <= (
        settings().step_up_seconds
    )
