"""Issue 19 (§7): keys pinned to the subject's jurisdiction. A shard bound to a region
(``PII_VAULT_SHARD_<N>_REGION``) keys that region's subjects and no others; a subject of
a region with a bound shard is never keyed elsewhere (refused if the shard is closed,
failed closed if its cluster is down). Two real OpenBao clusters, SQLite and PostgreSQL.

Before: ``PII_VAULT_DEFAULT_REGION`` and a subject's region were labels; a DE subject's
key landed on whichever open shard the random choice picked.
"""

from __future__ import annotations

import uuid

import pytest
from sqlalchemy import text

from keys.errors import KeyProviderConfigError
from keys.sharding import ShardedKeys, parse_region, parse_shards, shard_of
from keys.transit import TransitKeyProvider
from tests.conftest import Database, OpenBaoServer
from tests.test_sharding import _keys_on
from vault.config import Settings
from vault.errors import ConfigError, KeyProviderUnavailable, RegionKeysUnavailable
from vault.results import TokenizeRecord
from vault.service import VaultService


def _count(database: Database) -> int:
    with database.engine.connect() as conn:
        return int(conn.execute(text("SELECT count(*) FROM subjects")).scalar_one())


@pytest.mark.slow
def test_a_subject_is_keyed_in_its_regions_cluster_only(
    database: Database, openbao: OpenBaoServer, own_openbao: OpenBaoServer
) -> None:
    """Primary (shard 0, region of no binding: CN, the default): the session's OpenBao;
    shard 1, bound to DE: another cluster."""
    mount = f"t{uuid.uuid4().hex[:10]}"
    primary = TransitKeyProvider(openbao.addr, openbao.server.bootstrap(mount), mount=mount)
    de = TransitKeyProvider(
        own_openbao.addr, own_openbao.server.bootstrap_shard("pii-de"), mount="pii-de"
    )
    keys = ShardedKeys(primary, {1: de}, regions={1: "DE"})
    service = VaultService(database.engine, keys)
    cn_ids = {service.create_subject({"email": f"cn{i}@example.com"}).subject_id for i in range(6)}
    de_ids = {
        service.create_subject({"email": f"de{i}@example.com"}, region="de").subject_id
        for i in range(6)
    }
    batch = service.tokenize(
        [
            service.validator.prepare_record(
                TokenizeRecord(
                    fields={"email": f"b{i}@example.com"},
                    external_id=f"b-{uuid.uuid4().hex[:8]}",
                    region="DE" if i % 2 else None,
                )
            )
            for i in range(6)
        ]
    )
    de_ids |= {r.subject_id for i, r in enumerate(batch) if i % 2 and r.subject_id}
    cn_ids |= {r.subject_id for i, r in enumerate(batch) if not i % 2 and r.subject_id}
    assert len(de_ids) == 9 and len(cn_ids) == 9
    assert all(shard_of(s) == 1 for s in de_ids) and all(shard_of(s) == 0 for s in cn_ids)
    assert _keys_on(own_openbao.server.client(), "pii-de") == de_ids  # DE keys in DE only
    assert not (_keys_on(openbao.server.client(), mount) & de_ids)

    # A region change that would take a key out of its jurisdiction is refused (keys never
    # move); within the unbound regions it is only a correction.
    from vault.attributes import SubjectAttributes
    from vault.errors import ValidationError

    attributes = SubjectAttributes(service)
    de_one, cn_one = sorted(de_ids)[0], sorted(cn_ids)[0]
    with pytest.raises(ValidationError, match="keys never move"):
        attributes.change(de_one, region="CN")
    with pytest.raises(ValidationError, match="keys never move"):
        attributes.change(cn_one, region="DE")
    assert attributes.change(cn_one, region="HK")[1] == ["region"]

    # The DE shard closed: a new DE subject is refused, not keyed on the primary.
    before = _count(database)
    closed = VaultService(
        database.engine, ShardedKeys(primary, {1: de}, open_shards=[0], regions={1: "DE"})
    )
    with pytest.raises(RegionKeysUnavailable, match="region DE"):
        closed.create_subject({"email": "refused@example.com"}, region="DE")
    assert _count(database) == before
    assert closed.create_subject({"email": "cn-ok@example.com"}).subject_id  # CN still served

    # The DE cluster down: DE subjects fail closed (no fallback), CN subjects are served.
    own_openbao.server.stop()
    with pytest.raises(KeyProviderUnavailable):
        service.create_subject({"email": "de-down@example.com"}, region="DE")
    assert _count(database) == before + 1
    assert service.create_subject({"email": "cn-up@example.com"}).subject_id
    keys.close()


def test_region_bindings_are_configuration_checked_at_start_up() -> None:
    env = {
        "PII_VAULT_KEY_PROVIDER": "transit",
        "VAULT_ADDR": "http://127.0.0.1:8200",
        "PII_VAULT_KEY_SHARDS": "1=pii-de",
        "PII_VAULT_SHARD_1_REGION": "de",
        "PII_VAULT_SHARD_0_REGION": "CN",
    }
    settings = Settings.from_env(env)
    assert settings.keys.shards[0].region == "DE" and settings.keys.primary_region == "CN"
    with pytest.raises(ConfigError, match="SHARD_1_REGION"):
        Settings.from_env({**env, "PII_VAULT_SHARD_1_REGION": "not a region!"})
    assert parse_region({}, 3) is None
    assert parse_shards("1=m", {"PII_VAULT_SHARD_1_REGION": "US"}, "transit")[0].region == "US"
    with pytest.raises(KeyProviderConfigError):
        ShardedKeys(object(), {}, regions={2: "DE"})  # type: ignore[arg-type]
