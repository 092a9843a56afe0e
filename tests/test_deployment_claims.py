"""One deployment per mount (issue 23, finding 1): two deployments, one OpenBao.

Before, a second deployment's ``init`` on the same transit mount was accepted silently,
and its ``reconcile --grace 0`` destroyed the first one's subject keys as orphans. Now
``init`` claims each mount (keys/claims.py) and refuses another deployment's; the jobs
that destroy or retire keys refuse a mount whose claim is not theirs.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import hvac
import pytest

from access.log_identity import database_log_id
from access.runtime import open_runtime
from api.cli import EXIT_CONFIG
from api.demo.openbao import ManagedOpenBao
from keys.transit import TransitKeyProvider
from keys.transit_setup import create_service_token
from tests.conftest import Database
from tests.test_cli import run
from vault.config import Settings

pytestmark = pytest.mark.slow


@pytest.fixture
def bao(tmp_path: Path) -> Iterator[ManagedOpenBao]:
    with ManagedOpenBao(tmp_path / "bao") as server:  # its own: claims are server-wide
        yield server


def _env(bao: ManagedOpenBao, home: Path, url: str = "", **extra: str) -> dict[str, str]:
    return {
        "PII_VAULT_HOME": str(home),
        "PII_VAULT_KEY_PROVIDER": "transit",
        "VAULT_ADDR": bao.addr,
        "VAULT_TOKEN": bao.root_token,
        "PII_VAULT_DATABASE_URL": url,
        "PII_VAULT_TRANSIT_MOUNT": "transit",
        "PII_VAULT_ANCHOR_MOUNT": "pii-audit-anchors",
        "PII_VAULT_VAULT_POLICY": "pii-vault",
        "VAULT_ROLE_ID": "",
        "VAULT_ROLE_ID_FILE": "",
    } | extra


def _vault_state(bao: ManagedOpenBao) -> tuple[object, ...]:
    """Everything a refused init must leave as it was."""
    root = bao.client()
    mounts = sorted(m for m in root.sys.list_mounted_secrets_engines()["data"] if "-b/" not in m)
    keys = sorted(root.secrets.transit.list_keys(mount_point="transit")["data"]["keys"])
    policy = root.sys.read_policy(name="pii-vault")["data"]["rules"]
    index = root.secrets.transit.read_key("pii-index", mount_point="transit")["data"]
    return mounts, keys, policy, index["latest_version"], index["min_decryption_version"]


def _subjects(env: dict[str, str], n: int) -> list[str]:
    runtime = open_runtime(Settings.from_env(env), migrate=True)
    try:
        return [
            runtime.vault.create_subject({"email": f"{i}@example.com"}).subject_id for i in range(n)
        ]
    finally:
        runtime.close()


def test_second_deployment_on_a_claimed_mount_is_refused(
    bao: ManagedOpenBao, database: Database, tmp_path: Path
) -> None:
    first = _env(bao, tmp_path / "a")  # SQLite in its home
    code, out, err = run(["init"], first)
    assert code == 0, err
    assert "claimed the mount transit/" in out
    ids = _subjects(first, 3)
    before = _vault_state(bao)

    # The second deployment (a fresh SQLite file or PostgreSQL schema), the same mounts.
    second = _env(bao, tmp_path / "b", database.process_url)
    code, _, err = run(["init"], second)
    assert code == EXIT_CONFIG, err
    assert "another deployment" in err or "belongs to deployment" in err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err
    assert _vault_state(bao) == before  # nothing created, repaired or claimed

    # A forged shared setup: the second deployment's database, its own anchor mount and
    # policy set up properly, then its configuration pointed at the first one's mount.
    own = {
        "PII_VAULT_TRANSIT_MOUNT": "transit-b",
        "PII_VAULT_ANCHOR_MOUNT": "anchors-b",
        "PII_VAULT_VAULT_POLICY": "pii-vault-b",
    }
    code, out, err = run(["init"], second | own)
    assert code == 0, err
    assert "claimed the mount transit-b/" in out
    assert _vault_state(bao) == before  # the first deployment's policy, keys and mount
    _subjects(second | own, 1)
    forged = second | {
        "PII_VAULT_ANCHOR_MOUNT": "anchors-b",
        "PII_VAULT_VAULT_POLICY": "pii-vault-b",
    }
    for job in (["reconcile", "--grace", "0"], ["reindex"], ["rotate-keys", "--older-than", "0s"]):
        code, _, err = run(job, forged)
        assert code == EXIT_CONFIG, (job, err)
        assert "belongs to another deployment" in err
    assert _vault_state(bao) == before
    provider = TransitKeyProvider(bao.addr, bao.root_token)
    assert all(provider.subject_key_exists(sid) for sid in ids)
    provider.close()

    # The owner's own jobs still run on its mount.
    code, out, err = run(["reconcile", "--grace", "0"], first)
    assert code == 0, err
    assert '"orphan_keys": []' in out


def test_unclaimed_mount_with_strangers_keys_is_refused_and_an_upgrade_claims(
    bao: ManagedOpenBao, tmp_path: Path
) -> None:
    bao.bootstrap("legacy")  # set up before claims: no claim on the mount
    stranger = TransitKeyProvider(bao.addr, bao.root_token, mount="legacy")
    stranger.create_subject_key("00000000-0000-4000-8000-000000000001")
    env = _env(bao, tmp_path / "c", PII_VAULT_TRANSIT_MOUNT="legacy")
    code, _, err = run(["init"], env)
    assert code == EXIT_CONFIG, err
    assert "1 subject key(s) this database does not know" in err
    assert "legacy/" in err
    assert stranger.subject_key_exists("00000000-0000-4000-8000-000000000001")

    # A deployment from before claims, upgraded: its own keys only, so init claims it.
    bao.bootstrap("older")
    older = _env(bao, tmp_path / "d", PII_VAULT_TRANSIT_MOUNT="older")
    _subjects(older, 2)
    code, out, err = run(["init"], older)
    assert code == 0, err
    assert "claimed the mount older/" in out
    code, out, err = run(["init"], older)  # idempotent: claimed once
    assert code == 0 and "claimed the mount" not in out, err
    names = stranger._client.secrets.transit.list_keys(mount_point="older")["data"]["keys"]
    assert len([n for n in names if n.startswith("pii-deployment-")]) == 1
    stranger.close()


def test_a_fresh_database_never_adopts_another_deployments_log(
    bao: ManagedOpenBao, tmp_path: Path
) -> None:
    """Before, a fresh database took over the pinned log (and then could not anchor)."""
    first = _env(bao, tmp_path / "a")
    assert run(["init"], first)[0] == 0
    before = _vault_state(bao)
    code, _, err = run(["init"], first | {"PII_VAULT_HOME": str(tmp_path / "fresh")})
    assert code == EXIT_CONFIG, err
    assert "belongs to deployment" in err and "restored from its backup" in err
    assert _vault_state(bao) == before


def test_the_service_token_cannot_write_a_claim(bao: ManagedOpenBao, tmp_path: Path) -> None:
    first = _env(bao, tmp_path / "a")
    assert run(["init"], first)[0] == 0
    service = TransitKeyProvider(bao.addr, create_service_token(bao.client()))
    with pytest.raises(hvac.exceptions.Forbidden):
        service._client.secrets.transit.create_key(
            "pii-deployment-00000000-0000-4000-8000-000000000000", mount_point="transit"
        )
    assert list(service.mount_claims().values()) == [[_log_id(first)]]
    service.close()


def _log_id(env: dict[str, str]) -> str:
    runtime = open_runtime(Settings.from_env(env))
    try:
        return database_log_id(runtime.vault.engine)
    finally:
        runtime.close()
