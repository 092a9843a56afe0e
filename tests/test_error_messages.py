"""Errors that name their cause (issue 23, finding 4): one line, the right exit code.

Before, a wrong PostgreSQL port, database or user all read "database unavailable:
migration failed"; a closed Vault port, a missing scheme and https against http all
read "cannot reach Vault"; an invalid VAULT_TOKEN on init was "not privileged" and on
serve was accepted at start-up.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from access.runtime import open_runtime
from api.cli import EXIT_CONFIG, EXIT_UNAVAILABLE
from api.demo.openbao import free_port
from tests.conftest import OpenBaoServer
from tests.test_cli import local_env, run
from vault.config import Settings


def _one_line(err: str) -> str:
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err, err
    return err


@pytest.mark.parametrize(
    ("url", "words"),
    [
        ("postgresql://postgres@127.0.0.1:{port}/test", ["127.0.0.1:{port}/test", "refused"]),
        (
            "postgresql://postgres@127.0.0.1:5432/no_such_db",
            ["127.0.0.1:5432/no_such_db", 'database "no_such_db" does not exist'],
        ),
        (
            "postgresql://nobody:s3cret-pw@127.0.0.1:5432/test",
            ["nobody@127.0.0.1:5432/test", 'role "nobody" does not exist'],
        ),
    ],
)
def test_database_errors_name_the_database_and_the_cause(
    tmp_path: Path, url: str, words: list[str]
) -> None:
    port = free_port()
    code, _, err = run(["init"], local_env(tmp_path, url.format(port=port)))
    assert code == EXIT_UNAVAILABLE
    _one_line(err)
    assert "OperationalError" in err
    for word in words:
        assert word.format(port=port) in err, err
    assert "s3cret-pw" not in err  # never the password


def test_a_sqlite_url_with_two_slashes_is_a_configuration_error(tmp_path: Path) -> None:
    code, _, err = run(["init"], local_env(tmp_path, "sqlite://relative.db"))
    assert code == EXIT_CONFIG and "three slashes" in _one_line(err)


def _transit(tmp_path: Path, addr: str, token: str) -> dict[str, str]:
    return local_env(tmp_path) | {
        "PII_VAULT_KEY_PROVIDER": "transit",
        "VAULT_ADDR": addr,
        "VAULT_TOKEN": token,
        "VAULT_ROLE_ID": "",
        "VAULT_ROLE_ID_FILE": "",
        "PII_VAULT_TRANSIT_MOUNT": f"t{free_port()}",  # init refuses before touching it
    }


def test_vault_errors_name_the_address_and_the_reason(
    tmp_path: Path, openbao: OpenBaoServer
) -> None:
    closed = f"http://127.0.0.1:{free_port()}"
    code, _, err = run(["init"], _transit(tmp_path / "a", closed, "t"))
    assert code == EXIT_UNAVAILABLE
    assert f"cannot reach Vault at {closed}: connection refused" in _one_line(err)

    tls = openbao.addr.replace("http://", "https://")
    code, _, err = run(["init"], _transit(tmp_path / "b", tls, "t"))
    assert code == EXIT_UNAVAILABLE and "TLS handshake failed" in _one_line(err)

    code, _, err = run(["init"], _transit(tmp_path / "c", "127.0.0.1:8200", "t"))
    assert code == EXIT_CONFIG and "must start with http(s)://" in _one_line(err)


def test_an_invalid_token_is_called_invalid_not_unprivileged(
    tmp_path: Path, openbao: OpenBaoServer
) -> None:
    code, _, err = run(["init"], _transit(tmp_path / "a", openbao.addr, "s.not-a-token"))
    assert code == EXIT_CONFIG
    assert f"refused by Vault at {openbao.addr}: it is invalid" in _one_line(err)
    assert "s.not-a-token" not in err
    assert not (tmp_path / "a" / "vault.db").exists()  # checked before anything changed


def test_serve_refuses_an_invalid_token_at_start_up(tmp_path: Path, openbao: OpenBaoServer) -> None:
    env = _transit(tmp_path, openbao.addr, openbao.service_token) | {
        "PII_VAULT_TRANSIT_MOUNT": "transit"
    }
    open_runtime(Settings.from_env(env), migrate=True).close()  # a deployment's database
    env["VAULT_TOKEN"] = "s.not-a-token"
    done = subprocess.run(
        [sys.executable, "-m", "api.cli", "serve", "--port", str(free_port())],
        env={"PATH": "/usr/bin:/bin", **env},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == EXIT_CONFIG, done.stderr
    assert "Vault token was refused" in done.stderr and "invalid" in done.stderr
    assert "s.not-a-token" not in done.stderr
