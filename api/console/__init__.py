"""The support and privacy console at /console/: server-rendered pages for people.

Sign-in is OIDC (authorization code + PKCE, by authlib) against the company's
identity provider; sessions are server-side (``api.console.sessions``); every
form carries a CSRF token (flask-wtf). The console has no authorization of its
own: each page calls the same ``GuardedVault`` methods as the HTTP API, so every
view is decided by ``decide()`` and audited, and a denial shows what the API
would say. Navigation links follow the person's roles for convenience only.
"""

from __future__ import annotations

import hashlib

from authlib.integrations.flask_client import OAuth
from flask import Flask
from jinja2 import StrictUndefined

from access.runtime import Runtime
from access.sessions import SessionStore
from api.console import approvals, auditor, auth, people, privacy  # noqa: F401  (the pages register on bp)
from api.console.blueprint import OAUTH, bp, csrf
from api.console.config import ConsoleSettings
from api.console.sessions import ConsoleSessionInterface


def init_console(app: Flask, runtime: Runtime, config: ConsoleSettings) -> None:
    """Mount the console on ``app``: sessions, CSRF, the identity provider, the pages."""
    app.extensions["pii_vault_console"] = config
    app.jinja_env.undefined = StrictUndefined  # a name missing in a page is a bug, not ""
    fields = runtime.vault.schema.fields
    # Fields as people read them (fields.toml labels); the API keeps the names.
    app.jinja_env.globals["label"] = lambda name: fields[name].title if name in fields else name
    store = SessionStore(
        runtime.vault.tx, idle_timeout=config.idle_timeout, lifetime=config.session_lifetime
    )
    app.extensions["pii_vault_console_sessions"] = store
    runtime.maintenance.add("console_sessions", store.purge_idle)  # idle ones, swept
    app.session_interface = ConsoleSessionInterface(store, config)
    app.config.update(
        WTF_CSRF_CHECK_DEFAULT=False,  # the API authenticates by bearer key: only the console
        WTF_CSRF_TIME_LIMIT=None,  # bound by the session's idle timeout instead
        SECRET_KEY=app.config.get("SECRET_KEY") or _signing_key(config),
    )
    csrf.init_app(app)
    oauth = OAuth(app)  # one per app: each app may name another identity provider
    app.extensions[OAUTH] = oauth
    oauth.register(
        "idp",
        client_id=config.client_id,
        client_secret=config.client_secret,
        server_metadata_url=f"{config.issuer}/.well-known/openid-configuration",
        client_kwargs={
            "scope": f"openid email profile {config.roles_claim}",
            "code_challenge_method": "S256",
        },
    )
    app.register_blueprint(bp)


def _signing_key(config: ConsoleSettings) -> str:
    """flask-wtf signs the CSRF token it hands out; every worker must share the key. The
    token itself lives in the server-side session; the key is derived from the client
    secret (already a secret every worker has), never stored."""
    material = b"pii-vault console csrf\x00" + config.client_secret.encode("utf-8")
    return hashlib.sha256(material).hexdigest()
