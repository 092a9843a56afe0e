"""Configuration is checked at start-up (issue 23, finding 6): each of these was accepted
without a word before."""

from __future__ import annotations

import subprocess
import sys
import uuid
from pathlib import Path

import pytest

from access.runtime import open_runtime
from api.cli import EXIT_CONFIG, EXIT_UNAVAILABLE
from api.console.config import ConsoleSettings
from api.demo.openbao import free_port
from tests.conftest import OpenBaoServer
from tests.test_cli import local_env, run
from vault.config import Settings
from vault.errors import ConfigError


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("PII_VAULT_DEFAULT_REGION", "XX"),
        ("PII_VAULT_DEPLOYMENT_REGION", "ZZ"),
        ("PII_VAULT_DEFAULT_REGION", "US-XX"),
    ],
)
def test_unknown_regions_stop_every_command(tmp_path: Path, name: str, value: str) -> None:
    code, _, err = run(["shred", "--pending"], local_env(tmp_path) | {name: value})
    assert code == EXIT_CONFIG and name in err and "ISO 3166" in err, err


def test_known_regions_and_subdivisions_pass() -> None:
    for region in ("DE", "us", "HK", "US-CA"):
        assert Settings.from_env({"PII_VAULT_DEFAULT_REGION": region}).default_region


def test_a_new_role_needs_the_flag(tmp_path: Path) -> None:
    env = local_env(tmp_path)
    assert run(["init"], env)[0] == 0
    code, _, err = run(["policy", "add", "support-agnt", "identity", "reveal", "*"], env)
    assert code == EXIT_CONFIG and "unknown role 'support-agnt'" in err, err
    assert "support-agent" in err  # the known roles are listed
    assert "support-agnt" not in run(["policy", "list"], env)[1]
    code, out, err = run(
        ["policy", "add", "auditor-lead", "basic", "reveal", "*", "--new-role"], env
    )
    assert code == 0 and "added" in out, err
    code, _, err = run(["policy", "add", "support-agent", "basic", "reveal", "*"], env)
    assert code == 0, err


def _console(
    url: str, issuer: str = "http://127.0.0.1:8200/v1/identity/oidc/provider/p"
) -> dict[str, str]:
    return {
        "PII_VAULT_CONSOLE_ISSUER": issuer,
        "PII_VAULT_CONSOLE_CLIENT_ID": "client",
        "PII_VAULT_CONSOLE_CLIENT_SECRET": "secret",
        "PII_VAULT_CONSOLE_URL": url,
    }


def test_a_console_off_loopback_needs_https() -> None:
    with pytest.raises(ConfigError, match="http:// off loopback"):
        ConsoleSettings.from_env(_console("http://vault.example.com"))
    with pytest.raises(ConfigError, match="http:// off loopback"):
        ConsoleSettings.from_env(
            _console("https://vault.example.com", "http://idp.example.com/v1/identity")
        )
    assert ConsoleSettings.from_env(_console("https://vault.example.com")) is not None
    assert ConsoleSettings.from_env(_console("http://127.0.0.1:8080")) is not None


def _serve(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "api.cli", "serve", "--port", str(free_port()), *args],
        env={"PATH": "/usr/bin:/bin", **env},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_serve_refuses_an_unknown_console_role_and_local_keys_off_loopback(
    tmp_path: Path,
) -> None:
    env = local_env(tmp_path)
    assert run(["init"], env)[0] == 0
    typo = (
        env
        | _console("http://127.0.0.1:8080")
        | {"PII_VAULT_CONSOLE_ROLE_MAP": "pii-support=support-agnt,pii-privacy=privacy-officer"}
    )
    done = _serve(typo)
    assert done.returncode == EXIT_CONFIG, done.stderr
    assert "PII_VAULT_CONSOLE_ROLE_MAP names unknown role(s): support-agnt" in done.stderr
    done = _serve(env | {"PII_VAULT_READ_BUDGET_ROLES": "suport-agent=10/100"})
    assert done.returncode == EXIT_CONFIG, done.stderr
    assert "PII_VAULT_READ_BUDGET_ROLES names unknown role(s): suport-agent" in done.stderr
    issuer = f"http://127.0.0.1:{free_port()}/v1/identity/oidc/provider/p"
    done = _serve(env | _console("http://127.0.0.1:8080", issuer))
    assert done.returncode == EXIT_UNAVAILABLE, done.stderr  # the console's issuer is down
    assert f"identity provider at {issuer} did not answer" in done.stderr
    done = _serve(env, "--host", "0.0.0.0")
    assert done.returncode == EXIT_CONFIG, done.stderr
    assert "local key provider" in done.stderr and "--allow-local-keys" in done.stderr


def test_reindex_prefers_an_operator_token_over_approle(
    tmp_path: Path, openbao: OpenBaoServer
) -> None:
    mount = f"t{uuid.uuid4().hex[:10]}"  # its own index key: the session's stays as it is
    openbao.server.bootstrap(mount)
    env = local_env(tmp_path) | {
        "PII_VAULT_KEY_PROVIDER": "transit",
        "VAULT_ADDR": openbao.addr,
        "VAULT_TOKEN": openbao.server.root_token,
        "VAULT_ROLE_ID": "the-service-role",
        "VAULT_SECRET_ID": "the-service-secret",
        "PII_VAULT_TRANSIT_MOUNT": mount,
    }
    open_runtime(
        Settings.from_env(env | {"VAULT_ROLE_ID": "", "VAULT_SECRET_ID": ""}), migrate=True
    ).close()
    code, out, err = run(["reindex"], env)
    assert code == 0, err
    assert "reindex uses VAULT_TOKEN (the AppRole settings are ignored)" in err
    assert "older versions retired" in out
