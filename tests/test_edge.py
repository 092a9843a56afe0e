"""Issue 18 (5, 6): the edge of the service as an anonymous client meets it.

Reported: with the console off, any ``GET /console/<anything>`` got no response at all
(the error page's template is not on the path then); the console's 404 page had no CSP
or frame headers and the API's 404 neither ``X-Frame-Options`` nor ``nosniff``;
``/metrics`` was open to everyone; the primary ``VAULT_TOKEN`` had no ``_FILE``
variant. Each failed on the code before this change.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from api.app import AppConfig, create_app
from api.console.config import ConsoleSettings
from tests.api_support import Api
from vault.config import Settings
from vault.errors import ConfigError

CONSOLE = {
    "PII_VAULT_CONSOLE_ISSUER": "https://idp.example.com/v1/identity/oidc/provider/pii",
    "PII_VAULT_CONSOLE_CLIENT_ID": "client",
    "PII_VAULT_CONSOLE_CLIENT_SECRET": "not-a-real-secret",
    "PII_VAULT_CONSOLE_URL": "https://vault.example.com",
}
HEADERS = {
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
}


def _secured(response: object) -> None:
    headers = response.headers  # type: ignore[attr-defined]
    for name, value in HEADERS.items():
        assert headers.get(name) == value, (name, dict(headers))
    assert "frame-ancestors 'none'" in headers["Content-Security-Policy"]


def test_every_api_response_carries_the_security_headers(api: Api) -> None:
    for response in (
        api.client.get("/nowhere"),  # 404
        api.client.get("/v1/audit"),  # 401
        api.client.put("/healthz"),  # 405
        api.client.get("/v1/audit", headers=api.h("auditor")),  # 200
        api.client.get("/healthz"),
        api.client.post("/v1/detokenize", headers=api.h("auditor"), data=b"x" * 70_000),  # 413
    ):
        _secured(response)


def test_a_console_that_is_off_answers_its_paths_with_a_plain_404(api: Api) -> None:
    for path in ("/console/", "/console/login", "/console/subjects/x", "/console/static/x.js"):
        r = api.client.get(path)
        assert r.status_code == 404, path
        assert r.headers["Content-Type"] == "application/problem+json"
        assert r.json["code"] == "not_found"
        _secured(r)


def test_the_console_404_and_error_pages_carry_its_headers(api: Api, tmp_path: Path) -> None:
    console = ConsoleSettings.from_env(CONSOLE)
    app = create_app(AppConfig(Settings(home=tmp_path), runtime=api.runtime, console=console))
    client = app.test_client()
    for path in ("/console/no-such-page", "/console/subjects/x"):
        r = client.get(path)
        _secured(r)
        assert "script-src 'self'" in r.headers["Content-Security-Policy"]  # the console's
    r = client.get("/console/no-such-page")
    assert r.status_code in (302, 404)
    # The API beside it keeps the API's policy.
    r = client.get("/nowhere")
    assert r.headers["Content-Security-Policy"].startswith("default-src 'none'")


def test_metrics_can_require_a_bearer_token(api: Api, tmp_path: Path) -> None:
    settings = Settings(home=tmp_path, metrics_token="scrape-me-" + "x" * 24)
    client = create_app(AppConfig(settings, runtime=api.runtime)).test_client()
    assert client.get("/metrics").status_code == 401
    wrong = {"Authorization": "Bearer scrape-me-nope"}
    assert client.get("/metrics", headers=wrong).status_code == 401
    right = {"Authorization": f"Bearer {settings.metrics_token}"}
    r = client.get("/metrics", headers=right)
    assert r.status_code == 200 and b"pii_vault_http_requests" in r.data
    assert client.get("/healthz").status_code == 200  # probes stay open


def test_metrics_never_name_a_principal(api: Api) -> None:
    api.register()
    api.client.get("/v1/audit", headers=api.h("auditor"))
    api.client.get("/v1/audit", headers={"Authorization": "Bearer pvk_0123456789abcdef.x"})
    text = api.client.get("/metrics").get_data(as_text=True)
    assert "svc:" not in text and "user:" not in text and "pvk_" not in text


def test_vault_token_from_a_file_and_never_in_a_repr(tmp_path: Path) -> None:
    token_file = tmp_path / "token"
    token_file.write_text("s.file-held-token\n")
    env = {"PII_VAULT_HOME": str(tmp_path), "VAULT_TOKEN_FILE": str(token_file)}
    settings = Settings.from_env(env)
    assert settings.keys.vault_token == "s.file-held-token"
    assert "file-held-token" not in repr(settings)
    with pytest.raises(ConfigError, match="not both"):
        Settings.from_env({**env, "VAULT_TOKEN": "s.other"})
    with pytest.raises(ConfigError, match="cannot read VAULT_TOKEN_FILE"):
        Settings.from_env({**env, "VAULT_TOKEN_FILE": str(tmp_path / "missing")})
    metrics_file = tmp_path / "metrics"
    metrics_file.write_text("m" * 32)
    settings = Settings.from_env({**env, "PII_VAULT_METRICS_TOKEN_FILE": str(metrics_file)})
    assert settings.metrics_token == "m" * 32 and "m" * 32 not in repr(settings)
