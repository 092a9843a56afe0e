"""Issue 10, point 4: the Vault token lasts as long as the service (against real OpenBao).

A periodic token is renewed before its period runs out; AppRole logs in, renews, and
logs in again when renewal hits the max TTL or the token is revoked; a failed renewal
shows in /readyz and the metrics.
"""

from __future__ import annotations

import logging
import re
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import hvac
import pytest

from access.runtime import compose
from api.app import AppConfig, create_app
from keys.errors import KeyProviderError
from keys.factory import KeyProviderSettings, build_key_provider
from keys.transit import POLICY_NAME, TransitKeyProvider
from keys.vault_auth import AppRoleAuth
from tests.conftest import Database, OpenBaoServer
from vault.config import Settings


@pytest.fixture
def root(openbao: OpenBaoServer) -> hvac.Client:
    return openbao.server.client()


def _works(provider: TransitKeyProvider) -> None:
    sid = str(uuid.uuid4())
    provider.create_subject_key(sid)
    provider.generate_data_key(sid)
    provider.destroy_subject_key(sid)


def _ticks(provider: TransitKeyProvider, seconds: float, every: float = 1.0) -> None:
    """What the maintenance thread does while the service is idle."""
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        provider.refresh_auth()
        time.sleep(every)


def test_periodic_token_is_renewed_and_outlives_its_period(
    openbao: OpenBaoServer, root: hvac.Client, caplog: pytest.LogCaptureFixture
) -> None:
    token = root.auth.token.create(policies=[POLICY_NAME], period="4s")["auth"]["client_token"]
    provider = TransitKeyProvider(openbao.addr, token)
    with caplog.at_level(logging.INFO, logger="keys.vault_auth"):
        _ticks(provider, 7)  # idle for almost two periods: only the renewals keep it alive
    _works(provider)
    assert provider.auth_state.renewals >= 2 and provider.auth_state.ok
    # Issue 23: each renewal is an INFO line an operator can see, never the token.
    renewed = [r.getMessage() for r in caplog.records if "token renewed" in r.getMessage()]
    assert len(renewed) >= 2 and not any(token in m for m in renewed)


def test_without_renewal_the_same_token_dies(openbao: OpenBaoServer, root: hvac.Client) -> None:
    """The control: the test above would fail if nothing renewed."""
    token = root.auth.token.create(policies=[POLICY_NAME], period="2s")["auth"]["client_token"]
    client = hvac.Client(url=openbao.addr, token=token)
    time.sleep(3)
    with pytest.raises(hvac.exceptions.Forbidden):
        client.secrets.transit.read_key("pii-audit")


@pytest.fixture
def approle(root: hvac.Client) -> Iterator[tuple[str, str]]:
    if "approle/" not in root.sys.list_auth_methods()["data"]:
        root.sys.enable_auth_method("approle")
    name = f"svc-{uuid.uuid4().hex[:8]}"
    # Renewable, but never beyond 5 s: keeping the service up needs fresh logins.
    root.auth.approle.create_or_update_approle(
        name, token_policies=[POLICY_NAME], token_ttl="3s", token_max_ttl="5s"
    )
    role_id = root.auth.approle.read_role_id(name)["data"]["role_id"]
    secret_id = root.auth.approle.generate_secret_id(name)["data"]["secret_id"]
    yield role_id, secret_id
    root.auth.approle.delete_role(name)


def test_approle_logs_in_again_when_renewal_hits_the_max_ttl(
    openbao: OpenBaoServer, approle: tuple[str, str], tmp_path: Path
) -> None:
    role_id, secret_id = approle
    (tmp_path / "secret-id").write_text(secret_id + "\n")
    provider = build_key_provider(
        KeyProviderSettings(
            kind="transit",
            vault_addr=openbao.addr,
            role_id=role_id,
            secret_id_file=str(tmp_path / "secret-id"),
        )
    )
    assert isinstance(provider, TransitKeyProvider)
    _ticks(provider, 9, every=0.5)  # beyond the 5 s max TTL
    _works(provider)
    state = provider.auth_state
    assert state.method == "approle" and state.ok and state.logins >= 2


def test_approle_logs_in_again_after_the_token_is_revoked(
    openbao: OpenBaoServer, approle: tuple[str, str], root: hvac.Client
) -> None:
    role_id, secret_id = approle
    provider = TransitKeyProvider(openbao.addr, auth=AppRoleAuth(role_id, secret_id))
    root.auth.token.revoke(provider._client.token)
    _works(provider)  # a 403, a fresh login, the call retried
    assert provider.auth_state.logins == 2


def test_wrong_secret_id_is_a_clear_start_up_error(
    openbao: OpenBaoServer, approle: tuple[str, str]
) -> None:
    with pytest.raises(KeyProviderError, match="AppRole login"):
        TransitKeyProvider(openbao.addr, auth=AppRoleAuth(approle[0], "not-the-secret"))


def test_failed_renewal_shows_in_readyz_and_metrics(
    openbao: OpenBaoServer, root: hvac.Client, database: Database, tmp_path: Path
) -> None:
    token = root.auth.token.create(policies=[POLICY_NAME], period="3s")["auth"]["client_token"]
    provider = TransitKeyProvider(openbao.addr, token)
    runtime = compose(database.engine, provider)
    client = create_app(AppConfig(Settings(home=tmp_path), runtime=runtime)).test_client()
    assert client.get("/readyz").json["vault_auth"] == "ok"
    root.auth.token.revoke(token)  # nobody can renew it now
    time.sleep(2.2)  # past the renewal point
    provider.refresh_auth()
    r = client.get("/readyz")
    assert r.status_code == 503 and r.json["vault_auth"] == "failed"
    metrics = client.get("/metrics").get_data(as_text=True)
    failures = re.search(r"^pii_vault_vault_auth_failures_total (\S+)$", metrics, re.M)
    assert failures is not None and float(failures.group(1)) >= 1
