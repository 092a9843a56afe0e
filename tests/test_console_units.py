"""Console pieces without a browser: settings, redirects, sessions at rest, the API untouched."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest
from sqlalchemy import text

from access.runtime import Runtime
from access.sessions import SessionStore
from api.app import AppConfig, create_app
from api.console.auth import safe_next
from api.console.config import ConsoleSettings
from tests.api_support import Api
from tests.conftest import Database
from vault.config import Settings
from vault.errors import ConfigError

BASE = {
    "PII_VAULT_CONSOLE_ISSUER": "https://idp.example.com/v1/identity/oidc/provider/x",
    "PII_VAULT_CONSOLE_CLIENT_ID": "client",
    "PII_VAULT_CONSOLE_CLIENT_SECRET": "secret",
    "PII_VAULT_CONSOLE_URL": "https://vault.example.com",
}


def test_console_settings() -> None:
    assert ConsoleSettings.from_env({}) is None  # off unless an issuer is configured
    settings = ConsoleSettings.from_env(BASE)
    assert settings is not None and settings.secure_cookies
    assert settings.redirect_uri == "https://vault.example.com/console/auth/callback"
    assert "secret" not in repr(settings)
    with pytest.raises(ConfigError, match="loopback"):
        ConsoleSettings.from_env({**BASE, "PII_VAULT_CONSOLE_SECURE_COOKIES": "false"})
    loopback = {**BASE, "PII_VAULT_CONSOLE_URL": "http://127.0.0.1:8080"}
    assert not ConsoleSettings.from_env(
        {**loopback, "PII_VAULT_CONSOLE_SECURE_COOKIES": "false"}
    ).secure_cookies  # type: ignore[union-attr]
    with pytest.raises(ConfigError):
        ConsoleSettings.from_env({k: v for k, v in BASE.items() if "SECRET" not in k})
    with pytest.raises(ConfigError, match="ROLE_MAP"):
        ConsoleSettings.from_env({**BASE, "PII_VAULT_CONSOLE_ROLE_MAP": "nonsense"})


@pytest.mark.parametrize(
    "raw", ["https://evil.example/", "//evil.example/", "/v1/audit", "/console/../v1", None, ""]
)
def test_only_console_paths_are_followed_after_sign_in(raw: str | None) -> None:
    assert safe_next(raw) == "/console/"


def test_safe_next_keeps_a_console_path() -> None:
    assert safe_next("/console/subjects/abc-123") == "/console/subjects/abc-123"


def test_session_ids_are_stored_hashed_and_idle_sessions_end(database: Database) -> None:
    from vault.transactions import Transactions

    store = SessionStore(Transactions(database.engine), idle_timeout=60)
    held = {"principal": "user:abc", "roles": ["auditor"], "email": "sam@example.com"}
    sid = store.save(None, held)
    with database.engine.connect() as conn:
        rows = conn.execute(text("SELECT id_hash, data, principal FROM console_sessions")).all()
    assert [r[0] for r in rows] == [hashlib.sha256(sid.encode()).hexdigest()]
    assert sid not in repr(rows)  # a dump gives no usable session id
    # Issue 17: nor who is signed in (the data is sealed under a key from the id).
    for word in ("user:abc", "auditor", "sam@example.com"):
        assert word not in repr(rows)
    assert rows[0][2] is None
    loaded = store.load(sid)
    assert loaded is not None and loaded.data == held and store.load("forged") is None
    with database.engine.begin() as conn:
        conn.execute(text("UPDATE console_sessions SET last_seen = :t"), {"t": "2000-01-01"})
    assert store.load(sid) is None  # idle past the timeout: gone


def test_a_busy_session_still_ends_at_its_lifetime(database: Database) -> None:
    """Issue 18: activity keeps a session from going idle, never past its lifetime."""
    import datetime as dt

    from vault.transactions import Transactions

    store = SessionStore(Transactions(database.engine), idle_timeout=60, lifetime=3600)
    sid = store.save(None, {"principal": "user:abc"})
    assert store.load(sid) is not None
    old = dt.datetime.now(dt.UTC) - dt.timedelta(hours=2)
    with database.engine.begin() as conn:
        conn.execute(text("UPDATE console_sessions SET created_at = :t"), {"t": old})
    assert store.load(sid) is None  # just used (last_seen is now), but two hours old
    other = store.save(None, {"principal": "user:def"})
    with database.engine.begin() as conn:
        conn.execute(text("UPDATE console_sessions SET created_at = :t"), {"t": old})
    store.purge_idle()
    assert store.load(other) is None


def test_api_requests_never_get_a_session_cookie(api: Api, tmp_path: Path) -> None:
    runtime: Runtime = api.runtime
    console = ConsoleSettings.from_env(BASE)
    app = create_app(AppConfig(Settings(home=tmp_path), runtime=runtime, console=console))
    client = app.test_client()
    r = client.get("/v1/audit", headers=api.h("auditor"))
    assert r.status_code == 200 and "Set-Cookie" not in r.headers
    page = client.get("/console/")
    assert page.status_code == 200
    assert "frame-ancestors 'none'" in page.headers["Content-Security-Policy"]
    assert "Set-Cookie" not in page.headers  # an anonymous page view stores nothing
    assert client.post("/console/logout").status_code == 400  # no CSRF token: refused


def test_sign_in_cookie_is_secure_httponly_lax_and_host_prefixed(api: Api, tmp_path: Path) -> None:
    """Outside loopback development: __Host- names (Secure, Path=/, no Domain), HttpOnly;
    the sign-in cookie Lax (it must come back from the identity provider's redirect)."""
    from unittest import mock

    console = ConsoleSettings.from_env(BASE)
    app = create_app(AppConfig(Settings(home=tmp_path), runtime=api.runtime, console=console))
    client = app.test_client()
    metadata = {
        "issuer": BASE["PII_VAULT_CONSOLE_ISSUER"],
        "authorization_endpoint": "https://idp.example.com/authorize",
        "token_endpoint": "https://idp.example.com/token",
        "jwks_uri": "https://idp.example.com/keys",
    }
    idp = app.extensions["pii_vault_console_oauth"].idp
    with mock.patch.object(type(idp), "load_server_metadata", return_value=metadata):
        r = client.get("/console/login")
    assert r.status_code == 302 and r.headers["Location"].startswith(
        "https://idp.example.com/authorize?"
    )
    assert "code_challenge_method=S256" in r.headers["Location"]  # PKCE
    (cookie,) = r.headers.getlist("Set-Cookie")
    assert cookie.startswith("__Host-pv_login=")
    for attribute in ("Secure", "HttpOnly", "Path=/", "SameSite=Lax"):
        assert attribute in cookie
    assert "Domain" not in cookie


def test_peoples_profiles_are_sealed(api: Api) -> None:
    """Issue 18: the console shows people's names; a dump of principals names nobody."""
    principals = api.runtime.principals
    principals.sign_in_user("user:abc123", ["support-agent"])
    principals.remember("user:abc123", "Sam Support", "sam.support@example.com")
    with api.database.engine.connect() as conn:
        dumped = repr(conn.execute(text("SELECT * FROM principals")).all())
    assert "Sam Support" not in dumped and "sam.support" not in dumped
    assert principals.profiles(["user:abc123", "svc:auditor"]) == {
        "user:abc123": {"name": "Sam Support", "email": "sam.support@example.com"}
    }


def test_an_unreachable_identity_provider_is_a_503_page_not_a_500(api: Api, tmp_path: Path) -> None:
    """Issue 23: the console answered 500 when its issuer did not answer."""
    from api.demo.openbao import free_port

    down = BASE | {
        "PII_VAULT_CONSOLE_ISSUER": f"http://127.0.0.1:{free_port()}/v1/identity/oidc/provider/p",
        "PII_VAULT_CONSOLE_URL": "http://127.0.0.1:8080",
        "PII_VAULT_CONSOLE_SECURE_COOKIES": "false",
    }
    console = ConsoleSettings.from_env(down)
    app = create_app(AppConfig(Settings(home=tmp_path), runtime=api.runtime, console=console))
    r = app.test_client().get("/console/login")
    assert r.status_code == 503, r.status_code
    page = r.get_data(as_text=True)
    assert "did not answer" in page and 'data-status="503"' in page
    ready = app.test_client().get("/readyz")  # nobody can sign in: not ready
    assert ready.status_code == 503 and ready.json["identity_provider"] == "unavailable"
    assert any("console's identity provider" in reason for reason in ready.json["reasons"])
