"""Contract suite every key provider passes, plus backend-specific behaviour."""

from __future__ import annotations

import base64
import contextlib
import os
import stat
import uuid
from pathlib import Path
from typing import Any

import hvac
import hvac.exceptions
import pytest
import requests

from api.demo.openbao import free_port
from keys import (
    CallCounter,
    KeyBackend,
    KeyDestroyed,
    KeyProviderConfigError,
    KeyProviderError,
    KeyProviderSettings,
    KeyUnavailable,
    UnwrapFailed,
    build_key_provider,
    verify_signature,
)
from keys.local import LocalKeyProvider, load_master_key
from keys.sharding import ShardedKeys
from keys.transit import TransitKeyProvider
from keys.transit_setup import policy_text
from tests.conftest import Database, OpenBaoServer


def new_subject(provider: KeyBackend) -> str:
    subject = str(uuid.uuid4())
    provider.create_subject_key(subject)
    return subject


# -- the contract ------------------------------------------------------------------


def test_data_key_round_trip(provider: KeyBackend) -> None:
    subject = new_subject(provider)
    dk = provider.generate_data_key(subject)
    assert len(dk.plaintext) == 32
    assert base64.b64encode(dk.plaintext).decode() not in dk.wrapped
    assert provider.unwrap_data_key(subject, dk.wrapped) == dk.plaintext
    assert provider.generate_data_key(subject).plaintext != dk.plaintext
    assert "plaintext" not in repr(dk) and repr(dk.plaintext) not in repr(dk)


def test_wrapped_key_moved_to_another_subject_fails(provider: KeyBackend) -> None:
    alice, bob = new_subject(provider), new_subject(provider)
    dk = provider.generate_data_key(alice)
    with pytest.raises(UnwrapFailed) as info:
        provider.unwrap_data_key(bob, dk.wrapped)
    assert str(info.value) == "wrapped data key could not be unwrapped"


@pytest.mark.parametrize("position", [-1, -5, -20])
def test_tampered_wrapped_key_fails_generically(provider: KeyBackend, position: int) -> None:
    subject = new_subject(provider)
    dk = provider.generate_data_key(subject)
    prefix, body = dk.wrapped.rsplit(":", 1)
    raw = bytearray(base64.b64decode(body))
    raw[position] ^= 0x01
    tampered = f"{prefix}:{base64.b64encode(bytes(raw)).decode()}"
    with pytest.raises(UnwrapFailed) as info:
        provider.unwrap_data_key(subject, tampered)
    assert str(info.value) == "wrapped data key could not be unwrapped"
    with pytest.raises(UnwrapFailed):
        provider.unwrap_data_key(subject, "not a wrapped key")


def test_rotation_keeps_old_keys_and_rewraps(provider: KeyBackend) -> None:
    subject = new_subject(provider)
    old = provider.generate_data_key(subject)
    provider.rotate_subject_key(subject)
    assert provider.unwrap_data_key(subject, old.wrapped) == old.plaintext
    (rewrapped,) = provider.rewrap_data_keys(subject, [old.wrapped])
    assert rewrapped != old.wrapped
    assert provider.unwrap_data_key(subject, rewrapped) == old.plaintext
    newer = provider.generate_data_key(subject)
    assert provider.unwrap_data_key(subject, newer.wrapped) == newer.plaintext
    assert provider.rewrap_data_keys(subject, []) == []


def test_destroy_is_hard_and_idempotent(provider: KeyBackend) -> None:
    subject = new_subject(provider)
    dk = provider.generate_data_key(subject)
    assert provider.subject_key_exists(subject)
    provider.destroy_subject_key(subject)
    assert not provider.subject_key_exists(subject)
    with pytest.raises(KeyDestroyed):
        provider.unwrap_data_key(subject, dk.wrapped)
    with pytest.raises(KeyDestroyed):
        provider.generate_data_key(subject)
    with pytest.raises(KeyDestroyed):
        provider.rotate_subject_key(subject)
    provider.destroy_subject_key(subject)  # "not found" means done
    provider.destroy_subject_key(str(uuid.uuid4()))


def test_destroying_one_subject_leaves_others(provider: KeyBackend) -> None:
    alice, bob = new_subject(provider), new_subject(provider)
    dk = provider.generate_data_key(bob)
    provider.destroy_subject_key(alice)
    assert provider.unwrap_data_key(bob, dk.wrapped) == dk.plaintext


def test_index_keys_rotate_and_retired_versions_are_gone(
    provider: KeyBackend, request: pytest.FixtureRequest
) -> None:
    """After a rotation and a retirement, nobody can compute a digest of the old version."""
    admin: Any = provider
    if isinstance(provider, TransitKeyProvider | ShardedKeys):
        bao: OpenBaoServer = request.getfixturevalue("openbao")
        with pytest.raises(KeyProviderConfigError):  # the service token may not rotate...
            provider.rotate_index_key()
        with pytest.raises(KeyProviderConfigError):  # ...nor retire versions
            provider.retire_index_keys_before(1)
        admin = TransitKeyProvider(bao.addr, bao.server.root_token)
    (old,) = provider.blind_index([b"phone\x00+14155550100"])
    version = admin.rotate_index_key()
    (new,) = provider.blind_index([b"phone\x00+14155550100"])
    assert new.startswith(f"v{version}:") and new != old
    assert provider.blind_index([b"phone\x00+14155550100"], version=version - 1) == [old]
    admin.retire_index_keys_before(version)
    with pytest.raises(KeyProviderError):
        provider.blind_index([b"phone\x00+14155550100"], version=version - 1)
    assert provider.blind_index([b"phone\x00+14155550100"]) == [new]


def test_blind_index_is_deterministic_and_keyed(provider: KeyBackend) -> None:
    a1, b, a2 = provider.blind_index(
        [b"email\x00a@example.com", b"email\x00b@example.com", b"email\x00a@example.com"]
    )
    assert a1 == a2 and a1 != b
    assert "a@example.com" not in a1 and a1.split(":", 1)[0][1:].isdigit()
    assert base64.b64decode(a1.split(":", 1)[1]) != b"email\x00a@example.com"
    assert provider.blind_index([]) == []


def test_signatures_verify_with_the_public_key_only(provider: KeyBackend) -> None:
    message = b'{"subject_id":"x"}'
    signature = provider.sign(message)
    public = provider.signing_public_key()
    assert len(signature) == 64 and len(public) == 32
    assert verify_signature(public, message, signature)
    assert not verify_signature(public, message + b" ", signature)
    assert not verify_signature(public, message, bytes(64))


def test_calls_are_counted_by_the_wrapper(provider: KeyBackend) -> None:
    counter = CallCounter()
    counted = counter.wrap(provider)
    subject = new_subject(counted)
    counted.generate_data_key(subject)
    assert counter.count == 2
    assert isinstance(counted, KeyBackend) and counted.name == provider.name
    counted.close()  # lifecycle is not a request
    assert counter.count == 2


def test_check_passes_when_healthy(provider: KeyBackend) -> None:
    provider.check()


# -- transit specifics ---------------------------------------------------------------


def test_transit_subject_keys_are_non_exportable(openbao: OpenBaoServer) -> None:
    provider = openbao.provider()
    subject = new_subject(provider)
    info = openbao.server.client().secrets.transit.read_key(f"pii-subject-{subject}")["data"]
    assert info["exportable"] is False
    assert info["allow_plaintext_backup"] is False
    assert info["type"] == "aes256-gcm96"
    assert info["deletion_allowed"] is False


def test_transit_service_token_is_least_privilege(openbao: OpenBaoServer) -> None:
    client = openbao.server.client(openbao.service_token)
    transit = client.secrets.transit
    denied = [
        lambda: transit.create_key("pii-subject-evil", exportable=True),
        lambda: transit.create_key("pii-subject-evil2", allow_plaintext_backup=True),
        lambda: transit.export_key("pii-audit", key_type="signing-key"),
        lambda: transit.delete_key("pii-audit"),
        lambda: transit.update_key_configuration("pii-index", deletion_allowed=True),
        lambda: transit.create_key("other-key"),
        lambda: client.sys.list_mounted_secrets_engines(),
        lambda: client.sys.list_policies(),
        lambda: client.secrets.transit.backup_key("pii-audit"),
    ]
    for attempt in denied:
        with pytest.raises((hvac.exceptions.Forbidden, hvac.exceptions.InvalidRequest)):
            attempt()
    assert "transit/keys/pii-subject-*" in policy_text()
    assert '"pii/keys/pii-subject-*"' in policy_text("pii")


def test_anchor_store_is_create_only_for_the_service_token(openbao: OpenBaoServer) -> None:
    """An insider with the service token can add anchors but never rewrite or remove one."""
    store = openbao.provider().anchor_store()
    log = str(uuid.uuid4())
    assert store.put(log, 0, {"seq": 3, "head": "a"})
    assert not store.put(log, 0, {"seq": 3, "head": "forged"})  # create-only
    assert store.get(log, 0) == {"seq": 3, "head": "a"}
    assert store.keys(log) == [0] and store.get(log, 7) is None and store.keys("other") == []
    kv = openbao.server.client(openbao.service_token).secrets.kv.v2
    path, mount = f"anchors/{log}/{0:020d}", "pii-audit-anchors"
    refused = [
        lambda: kv.create_or_update_secret(path, {"seq": 9}, cas=1, mount_point=mount),
        lambda: kv.create_or_update_secret(path, {"seq": 9}, mount_point=mount),
        lambda: kv.delete_latest_version_of_secret(path, mount_point=mount),
        lambda: kv.delete_secret_versions(path, [1], mount_point=mount),
        lambda: kv.undelete_secret_versions(path, [1], mount_point=mount),
        lambda: kv.destroy_secret_versions(path, [1], mount_point=mount),
        lambda: kv.delete_metadata_and_all_versions(path, mount_point=mount),
        lambda: kv.update_metadata(path, max_versions=5, mount_point=mount),
        lambda: kv.configure(max_versions=0, cas_required=False, mount_point=mount),
        lambda: openbao.server.client(openbao.service_token).sys.disable_secrets_engine(mount),
    ]
    for attempt in refused:
        with pytest.raises(hvac.exceptions.Forbidden):
            attempt()
    assert store.get(log, 0) == {"seq": 3, "head": "a"}


def test_transit_unreachable_is_key_unavailable() -> None:
    provider = TransitKeyProvider(f"http://127.0.0.1:{free_port()}", "token", timeout=1)
    with pytest.raises(KeyUnavailable, match="key provider unavailable"):
        provider.check()
    with pytest.raises(KeyUnavailable, match="key provider unavailable"):
        provider.unwrap_data_key(str(uuid.uuid4()), "vault:v1:AAAA")


def test_transit_bad_token_is_config_error(openbao: OpenBaoServer) -> None:
    provider = TransitKeyProvider(openbao.addr, "not-a-real-token")
    with pytest.raises(KeyProviderConfigError):
        provider.create_subject_key(str(uuid.uuid4()))


@pytest.mark.slow
def test_transit_sealed_and_stopped_are_key_unavailable(own_openbao: OpenBaoServer) -> None:
    provider = own_openbao.provider()
    subject = new_subject(provider)
    dk = provider.generate_data_key(subject)
    own_openbao.server.seal()
    with pytest.raises(KeyUnavailable, match="sealed"):
        provider.check()
    with pytest.raises(KeyUnavailable, match="sealed"):
        provider.unwrap_data_key(subject, dk.wrapped)
    own_openbao.server.unseal()
    assert provider.unwrap_data_key(subject, dk.wrapped) == dk.plaintext
    own_openbao.server.stop()
    with pytest.raises(KeyUnavailable, match="cannot reach"):
        provider.unwrap_data_key(subject, dk.wrapped)
    own_openbao.server.start()  # persistent storage: the key survived the restart
    assert provider.unwrap_data_key(subject, dk.wrapped) == dk.plaintext


# -- local specifics -----------------------------------------------------------------


def test_local_master_key_file_is_created_0600(tmp_path: Path) -> None:
    key = load_master_key(tmp_path)
    path = tmp_path / "master.key"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert load_master_key(tmp_path) == key
    os.chmod(path, 0o644)
    with pytest.raises(KeyProviderConfigError, match="chmod 600"):
        load_master_key(tmp_path)


def test_local_master_key_from_environment(tmp_path: Path) -> None:
    raw = os.urandom(32)
    assert load_master_key(tmp_path, base64.urlsafe_b64encode(raw).decode()) == raw
    assert not (tmp_path / "master.key").exists()
    with pytest.raises(KeyProviderConfigError):
        load_master_key(tmp_path, base64.urlsafe_b64encode(b"short").decode())
    with pytest.raises(KeyProviderConfigError):
        load_master_key(tmp_path, "%%%not base64%%%")


def test_local_wrong_master_key_is_refused(tmp_path: Path) -> None:
    LocalKeyProvider(tmp_path / "keys.db", os.urandom(32)).close()
    with pytest.raises(KeyProviderConfigError, match="master key"):
        LocalKeyProvider(tmp_path / "keys.db", os.urandom(32))


def test_local_keystore_holds_no_raw_keys(tmp_path: Path) -> None:
    """Every key the keystore keeps (subject keys of each version, index and signing keys)
    is stored only wrapped under the master key."""
    master = os.urandom(32)
    provider = LocalKeyProvider(tmp_path / "keys.db", master)
    subject = new_subject(provider)
    provider.rotate_subject_key(subject)
    subject_keys = list(provider._subject_keys(subject).values())  # white box: the raw keys
    assert len(subject_keys) == 2 and all(len(k) == 32 for k in subject_keys)
    service_keys = [*provider._index_keys().values(), bytes(provider._signing_key)]
    provider.close()
    raw = b"".join(p.read_bytes() for p in tmp_path.glob("keys.db*"))
    assert b"subject_keys" in raw  # really the keystore file
    for key in [*subject_keys, *service_keys, master]:
        assert key not in raw


def test_factory_rejects_bad_configuration(tmp_path: Path) -> None:
    with pytest.raises(KeyProviderConfigError, match="unknown key provider"):
        build_key_provider(KeyProviderSettings(kind="kms", home=tmp_path))
    with pytest.raises(KeyProviderConfigError, match="VAULT_ADDR"):
        build_key_provider(KeyProviderSettings(kind="transit", home=tmp_path))
    with pytest.raises(KeyProviderConfigError, match="VAULT_TOKEN"):
        build_key_provider(
            KeyProviderSettings(kind="transit", home=tmp_path, vault_addr="http://127.0.0.1:1")
        )
    settings = KeyProviderSettings(
        kind="transit", home=tmp_path, vault_addr="http://x", vault_token="s.secret-token"
    )
    assert "secret-token" not in repr(settings)
    assert isinstance(build_key_provider(KeyProviderSettings(home=tmp_path)), LocalKeyProvider)


# -- one translation point: hvac/requests errors never escape ---------------------------------


class _Refusing:
    """Stands in for hvac's transit API: every call fails the way a real Vault can."""

    def __init__(self, error: Exception) -> None:
        self.error = error

    def __getattr__(self, name: str) -> object:
        def fail(*_args: object, **_kwargs: object) -> object:
            raise self.error

        return fail


def _refusing_provider(error: Exception) -> TransitKeyProvider:
    client = hvac.Client(url="http://127.0.0.1:1")
    client.secrets.transit = _Refusing(error)  # type: ignore[misc]
    client.adapter.post = _Refusing(error).post  # type: ignore[method-assign]
    return TransitKeyProvider("http://127.0.0.1:1", "t", client=client)


@pytest.mark.parametrize(
    "error",
    [
        hvac.exceptions.InvalidRequest("unsupported operation"),
        hvac.exceptions.InvalidRequest("no existing key named pii-subject-x could be found"),
        hvac.exceptions.InvalidPath("no handler for route"),
        hvac.exceptions.Forbidden("permission denied"),
        hvac.exceptions.InternalServerError("boom"),
        hvac.exceptions.UnexpectedError("teapot"),
        requests.exceptions.ChunkedEncodingError("cut"),
        KeyError("data"),
    ],
)
def test_transit_raises_only_key_errors(error: Exception) -> None:
    provider = _refusing_provider(error)
    calls = [
        lambda: provider.create_subject_key("s"),
        lambda: provider.subject_key_exists("s"),
        lambda: provider.generate_data_key("s"),
        lambda: provider.unwrap_data_key("s", "vault:v1:x"),
        lambda: provider.rotate_subject_key("s"),
        lambda: provider.rewrap_data_keys("s", ["vault:v1:x"]),
        lambda: provider.destroy_subject_key("s"),
        lambda: provider.blind_index([b"x"]),
        lambda: provider.sign(b"x"),
        lambda: provider.signing_public_key(),
    ]
    for call in calls:
        with contextlib.suppress(KeyProviderError):  # the only kind allowed out
            call()


def test_a_refused_rotation_is_a_503_not_a_500(database: Database, tmp_path: Path) -> None:
    """Seen before: rotate let hvac's InvalidRequest escape, which the API answered with 500."""
    from vault.errors import KeyProviderUnavailable
    from vault.service import VaultService

    local = LocalKeyProvider(tmp_path / "keys.db", os.urandom(32))
    created = VaultService(database.engine, local).create_subject({"email": "r@example.com"})
    refusing = _refusing_provider(hvac.exceptions.InvalidRequest("unsupported operation"))
    with pytest.raises(KeyProviderUnavailable):
        VaultService(database.engine, refusing).rotate_subject_key(created.subject_id)
    local.close()
