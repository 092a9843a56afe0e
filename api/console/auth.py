"""Signing in and out: OIDC authorization code with PKCE (authlib), roles from a claim.

After the identity provider sends the browser back, the principal
``user:<sub>`` is created or its roles updated from the configured claim
(``principal disable`` keeps a person out). The callback answers with a page that
moves on by itself instead of a redirect: the Strict session cookie is only sent
on a navigation that starts on this site.

Freshness is the identity provider's own clock (issue 18): every sign-in asks for
``max_age`` (a step-up for ``max_age=1`` and ``prompt=login``), and only an ID token
whose ``auth_time`` honours what was asked records when the person last entered their
credentials. A sensitive action (reveal, export, erase, a consent change) needs that
moment within the step-up window, so a plain sign-in answered from the provider's old
session refreshes nothing. Every few minutes the provider is asked again (userinfo):
a person removed from their group, or deleted, is out at the next request.
"""

from __future__ import annotations

import contextlib
import re
import threading
import time
from collections.abc import Callable, Iterator
from functools import wraps
from typing import Any, TypeVar

import requests
from authlib.integrations.base_client.errors import OAuthError
from flask import redirect, render_template, request, session, url_for

from access.errors import AuthenticationFailed, IdentityProviderUnavailable
from api.console.blueprint import (
    OPEN_ENDPOINTS,
    bp,
    end_session,
    identity_provider,
    settings,
    signed_in,
)
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
    for key in ("principal", "roles", "email", "auth_time", "token", "validated_at"):
        session.pop(key, None)  # a sign-in always starts from nothing
    session["next"] = nxt
    session["flow_started"] = time.time()
    session["step_up"] = step_up
    # max_age makes the provider re-authenticate a session older than asked (OpenBao refuses
    # max_age=0) and put auth_time in the ID token, which the callback checks.
    max_age = 1 if step_up else settings().step_up_seconds
    session["max_age"] = max_age
    extra: dict[str, Any] = {"max_age": max_age}
    if step_up:
        extra["prompt"] = "login"
    with provider_errors():
        return identity_provider().authorize_redirect(settings().redirect_uri, **extra)


@contextlib.contextmanager
def provider_errors() -> Iterator[None]:
    """The identity provider unreachable (its discovery document, its token endpoint):
    503 identity_provider_unavailable on the console's page, not a 500 (issue 23)."""
    try:
        yield
    except (requests.RequestException, OSError) as exc:
        raise IdentityProviderUnavailable(
            f"the identity provider at {settings().issuer} did not answer; try again later"
        ) from exc


def check_issuer(issuer: str, timeout: float = 5.0) -> None:
    """``serve``'s start-up and ``/readyz``: the console's issuer publishes its discovery
    document. A success is remembered for ``ISSUER_RECHECK`` seconds: readiness probes
    cost the provider one request per process per half minute, and never wait long."""
    with _issuer_lock:
        if time.monotonic() - _issuer_ok.get(issuer, -ISSUER_RECHECK) < ISSUER_RECHECK:
            return
    url = f"{issuer.rstrip('/')}/.well-known/openid-configuration"
    try:
        requests.get(url, timeout=timeout).raise_for_status()
    except (requests.RequestException, OSError) as exc:
        raise IdentityProviderUnavailable(
            f"the console's identity provider at {issuer} did not answer ({type(exc).__name__})"
        ) from exc
    with _issuer_lock:
        _issuer_ok[issuer] = time.monotonic()


ISSUER_RECHECK = 30.0
_issuer_ok: dict[str, float] = {}
_issuer_lock = threading.Lock()


def region_from(claims: dict[str, Any]) -> str | None:
    """The person's region claim (policy §7), if the provider sends one."""
    region = claims.get("region")
    return str(region) if isinstance(region, str) and region else None


def roles_from(claims: dict[str, Any]) -> list[str]:
    groups = claims.get(settings().roles_claim) or []
    if isinstance(groups, str):
        groups = [groups]
    return [settings().role_map[g] for g in groups if g in settings().role_map]


@bp.get("/auth/callback")
def callback() -> Any:
    try:
        with provider_errors():
            token = identity_provider().authorize_access_token()
    except OAuthError:
        return _refused("The sign-in could not be completed. Please try again.")
    claims = token.get("userinfo") or {}
    sub = str(claims.get("sub") or "").lower()
    if not _SUB.fullmatch(sub):
        return _refused("The identity provider sent no usable subject.")
    try:
        principal = runtime().principals.sign_in_user(
            f"user:{sub}", roles_from(claims), region_from(claims)
        )
    except AuthenticationFailed:
        return _refused("You have no role in the vault, or your access is disabled.")
    now = time.time()
    auth_time = float(claims.get("auth_time") or 0)
    started = float(session.get("flow_started") or now)
    if session.get("step_up") and auth_time < started - CLOCK_SKEW:
        # A step-up counts only if the provider says it authenticated the person anew.
        return _refused("The identity provider did not ask for your credentials again.")
    # Recorded only as the provider reports it, and only if it honoured the max_age asked.
    asked = float(session.get("max_age") or 0)
    fresh = auth_time if auth_time and now - auth_time <= asked + CLOCK_SKEW else None
    email = str(claims.get("email") or "")[:200]
    display = str(claims.get("name") or "")[:200]
    runtime().principals.remember(principal.name, display, email)
    nxt = session.get("next") or "/console/"
    session.clear()
    session.update(
        principal=principal.name,
        roles=list(principal.roles),
        region=principal.region,
        email=email,
        name=display,
        auth_time=fresh,
        token={"access_token": token.get("access_token"), "token_type": "Bearer"},
        validated_at=now,
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
    """The person entered their credentials at the identity provider within the step-up
    window, by the provider's own ``auth_time``."""
    auth_time = session.get("auth_time")
    return (
        signed_in()
        and auth_time is not None
        and time.time() - float(auth_time) <= settings().step_up_seconds + CLOCK_SKEW
    )


F = TypeVar("F", bound=Callable[..., Any])


def needs_step_up(back: str) -> Callable[[F], F]:
    """A sensitive action: without a fresh authentication, off to a step-up sign-in that
    comes back to the page named by endpoint ``back`` (with the view's arguments)."""

    def decorate(view: F) -> F:
        @wraps(view)
        def guarded(*args: Any, **kwargs: Any) -> Any:
            if not fresh_sign_in():
                return redirect(url_for("console.login", step_up="1", next=url_for(back, **kwargs)))
            return view(*args, **kwargs)

        return guarded  # type: ignore[return-value]

    return decorate


def still_valid() -> bool:
    """Ask the identity provider again (userinfo with the session's access token) once the
    last answer is older than the revalidation interval; the roles follow what it says now.
    False: the token is refused, the account is gone, or no role is left."""
    validated = float(session.get("validated_at") or 0)
    if time.time() - validated < settings().revalidate_seconds:
        return True
    token = session.get("token") or {}
    if not token.get("access_token"):
        return False
    try:
        claims = identity_provider().userinfo(token=token)
    except (OAuthError, ValueError, OSError):  # refused (401/403/404), unreachable, garbled
        return False
    if str(claims.get("sub") or "").lower() != session["principal"].removeprefix("user:"):
        return False
    try:
        principal = runtime().principals.sign_in_user(
            session["principal"], roles_from(claims), region_from(claims)
        )
    except AuthenticationFailed:
        return False
    session["roles"] = list(principal.roles)
    session["region"] = principal.region
    session["validated_at"] = time.time()
    return True


@bp.before_request
def _revalidate() -> Any:
    """After the gate (registered after it): a person the identity provider no longer
    confirms is signed out at this request."""
    if request.endpoint in OPEN_ENDPOINTS or not signed_in():
        return None
    if not still_valid():
        end_session()  # removed from their group or deleted at the identity provider
        return redirect(url_for("console.home", ended="1"))
    return None
