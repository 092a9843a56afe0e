"""Subject keys sharded over transit mounts and OpenBao clusters, by configuration (issue 11).

The contract suites already run over a sharded backend (``provider`` fixture:
``sharded``); here: the id encoding, the configuration, and two real clusters —
where each key lands, what a shard being closed or down does, and `init`/`init-shard`.
"""

from __future__ import annotations

import uuid
from pathlib import Path

import hvac
import pytest
from hypothesis import given
from hypothesis import strategies as st

from access.runtime import open_runtime
from api.demo.openbao import ManagedOpenBao
from keys.errors import KeyProviderConfigError
from keys.sharding import ShardedKeys, parse_open, parse_shards, shard_of, subject_id_on
from keys.transit import SUBJECT_KEY_PREFIX, TransitKeyProvider
from keys.transit_setup import create_service_token
from tests.conftest import Database, OpenBaoServer
from tests.helpers import ALICE
from tests.test_cli import run
from vault.config import Settings
from vault.errors import ConfigError, KeyProviderUnavailable
from vault.results import TokenizeRecord
from vault.service import VaultService
from vault.shredding import Shredder


@given(st.integers(0, 255))
def test_an_id_names_its_shard_and_stays_a_random_uuid(shard: int) -> None:
    a, b = subject_id_on(shard), subject_id_on(shard)
    assert shard_of(a) == shard and a != b
    parsed = uuid.UUID(a)
    assert parsed.version == 8 and parsed.variant == uuid.RFC_4122 and str(parsed) == a


def test_ids_issued_before_sharding_live_on_the_primary() -> None:
    assert shard_of(str(uuid.uuid4())) == 0
    assert shard_of("not-a-uuid") == 0
    with pytest.raises(ValueError):
        subject_id_on(256)


def test_shard_configuration_is_parsed_and_bad_values_refused() -> None:
    env = {"PII_VAULT_SHARD_2_TOKEN": "s.x"}
    shards = parse_shards("1=transit-b, 2=https://bao-2.internal:8200/transit", env, "transit")
    assert [(s.number, s.addr, s.mount) for s in shards] == [
        (1, None, "transit-b"),
        (2, "https://bao-2.internal:8200", "transit"),
    ]
    assert shards[1].token == "s.x" and "s.x" not in repr(shards[1])
    assert parse_open(None, shards) == (0, 1, 2)
    assert parse_open("2,1", shards) == (1, 2)
    for bad, why in [
        ("x=transit-b", "N=MOUNT"),
        ("0=transit-b", "out of 1..255"),
        ("1=transit-b,1=transit-c", "given twice"),
        ("1=transit", "another shard uses"),
        ("1=http://bao-2:8200/transit", "another cluster"),  # no credentials for it
        ("1=http://bao-2:8200/", "names no mount"),
    ]:
        with pytest.raises(KeyProviderConfigError, match=why):
            parse_shards(bad, {}, "transit")
    with pytest.raises(KeyProviderConfigError, match="not a configured shard"):
        parse_open("3", shards)
    with pytest.raises(ConfigError):  # start-up refuses it
        Settings.from_env({"PII_VAULT_KEY_PROVIDER": "transit", "PII_VAULT_KEY_SHARDS": "9"})


def _keys_on(client: hvac.Client, mount: str) -> set[str]:
    try:
        names = client.secrets.transit.list_keys(mount_point=mount)["data"]["keys"]
    except hvac.exceptions.InvalidPath:
        return set()
    n = len(SUBJECT_KEY_PREFIX)
    return {k[n:] for k in names if k.startswith(SUBJECT_KEY_PREFIX)}


@pytest.mark.slow
def test_subjects_on_a_second_cluster_live_read_and_shred_there(
    database: Database, openbao: OpenBaoServer, own_openbao: OpenBaoServer
) -> None:
    """Primary: the session's OpenBao (own mount); shard 1: another OpenBao cluster, with a
    token that may touch subject keys on its mount only."""
    mount = f"t{uuid.uuid4().hex[:10]}"
    primary = TransitKeyProvider(openbao.addr, openbao.server.bootstrap(mount), mount=mount)
    legacy_service = VaultService(database.engine, primary)
    legacy = legacy_service.create_subject({"email": "before@example.com"})  # before sharding
    assert shard_of(legacy.subject_id) == 0

    shard_token = own_openbao.server.bootstrap_shard("pii-shard")
    shard = TransitKeyProvider(own_openbao.addr, shard_token, mount="pii-shard")
    keys = ShardedKeys(primary, {1: shard}, open_shards=[1])
    service = VaultService(database.engine, keys)
    created = service.create_subject(ALICE, external_id="sharded-1")
    batch = service.tokenize(
        [service.validator.prepare_record(_record(f"ext-{i}")) for i in range(5)]
    )
    new_ids = {created.subject_id} | {r.subject_id for r in batch if r.subject_id}
    assert all(shard_of(s) == 1 for s in new_ids)

    primary_root, shard_root = openbao.server.client(), own_openbao.server.client()
    assert _keys_on(shard_root, "pii-shard") == new_ids  # every new key on the second cluster
    assert _keys_on(primary_root, mount) == {legacy.subject_id}  # the primary kept only its own
    assert set(keys.subject_key_ids()) == new_ids | {legacy.subject_id}

    service.cache.clear()
    values = {r.field: r.value for r in service.detokenize(list(created.tokens.values()))}
    assert values == ALICE
    assert service.detokenize(list(legacy.tokens.values()))[0].value == "before@example.com"

    # A full shard is closed: new subjects go elsewhere, its subjects are still served.
    closed = VaultService(database.engine, ShardedKeys(primary, {1: shard}, open_shards=[0]))
    later = closed.create_subject({"email": "later@example.com"})
    assert shard_of(later.subject_id) == 0 and later.subject_id in _keys_on(primary_root, mount)
    closed.cache.clear()
    assert closed.detokenize([created.tokens["email"]])[0].value == ALICE["email"]

    # Shredding destroys the key where it lives.
    Shredder(service.tx, keys, service.datakeys, keys).shred(created.subject_id)
    assert created.subject_id not in _keys_on(shard_root, "pii-shard")
    assert service.detokenize([created.tokens["email"]])[0].error is not None

    # The shard's cluster down: readiness fails, its subjects fail closed, the rest is served.
    own_openbao.server.stop()
    with pytest.raises(Exception):  # noqa: B017 - KeyUnavailable from the backend
        keys.check()
    service.cache.clear()
    other = next(iter(new_ids - {created.subject_id}))
    with pytest.raises(KeyProviderUnavailable):
        service.reveal(other, ["email"])
    assert service.detokenize(list(legacy.tokens.values()))[0].value == "before@example.com"
    keys.close()


def _record(external_id: str) -> TokenizeRecord:
    return TokenizeRecord(fields={"email": f"{external_id}@example.com"}, external_id=external_id)


@pytest.mark.slow
def test_init_sets_up_shards_and_the_service_runs_on_them(tmp_path: Path) -> None:
    """`init` enables a same-cluster shard's mount and widens the service policy to it;
    `init-shard` sets up a shard on another cluster; the runtime built from the
    environment routes new subjects there."""
    with ManagedOpenBao(tmp_path / "a") as a, ManagedOpenBao(tmp_path / "b") as b:
        env = {
            "PII_VAULT_HOME": str(tmp_path / "home"),
            "PII_VAULT_KEY_PROVIDER": "transit",
            "VAULT_ADDR": a.addr,
            "VAULT_TOKEN": a.root_token,
            "PII_VAULT_DATABASE_URL": "",
            "PII_VAULT_KEY_SHARDS": f"1=transit-b,2={b.addr}/transit",
        }
        code, out, err = run(["init"], {**env, "PII_VAULT_SHARD_2_TOKEN": "unused-here"})
        assert code == 0, err
        assert "shard 1 on mount 'transit-b/' ready" in out and "init-shard 2" in out
        privileged_b = {**env, "VAULT_TOKEN": b.root_token, "PII_VAULT_SHARD_2_TOKEN": "x"}
        code, out, err = run(["init-shard", "2", "--service-token"], privileged_b)
        assert code == 0, err
        shard_token = out.strip().splitlines()[-1]
        service_env = {
            **env,
            "VAULT_TOKEN": create_service_token(a.client()),
            "PII_VAULT_SHARD_2_TOKEN": shard_token,
            "PII_VAULT_KEY_SHARDS_OPEN": "1,2",
        }
        rt = open_runtime(Settings.from_env(service_env))
        try:
            rt.check()
            made = [rt.vault.create_subject({"email": f"s{i}@example.com"}) for i in range(12)]
            shards = {shard_of(m.subject_id) for m in made}
            assert shards == {1, 2}  # spread over the open shards (12 draws: 2^-11 to fail)
            on_b = _keys_on(b.client(), "transit")
            on_a_shard = _keys_on(a.client(), "transit-b")
            assert on_b | on_a_shard == {m.subject_id for m in made}
            assert all(shard_of(s) == 2 for s in on_b) and all(shard_of(s) == 1 for s in on_a_shard)
            rt.vault.cache.clear()
            for m in made:
                assert rt.vault.detokenize([m.tokens["email"]])[0].value.endswith("@example.com")
        finally:
            rt.close()
