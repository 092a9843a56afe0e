"""Setting transit up (privileged, once): the mount, the shared keys, the service policy,
the audit-anchor mount, and service tokens. Used by ``pii-vault init``, the demo and tests.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Sequence
from functools import partial
from importlib import resources
from typing import Any, TypeVar

import hvac
import hvac.exceptions as hv

from keys.anchors import ANCHOR_MOUNT
from keys.claims import ForeignMount, claim, verify_claimable
from keys.errors import KeyProviderConfigError
from keys.hvac_errors import config_error, provider_error, vault_errors
from keys.transit import GRANT_KEY, INDEX_KEY, POLICY_NAME, SIGNING_KEY

T = TypeVar("T")


_OPEN_ANCHORS = f"""path "{ANCHOR_MOUNT}/data/anchors/*" {{
  capabilities = ["create", "read"]
}}
"""


def policy_text(
    mount: str = "transit", log_id: str | None = None, anchor_mount: str = ANCHOR_MOUNT
) -> str:
    """The shipped least-privilege HCL policy, rewritten for ``mount`` and ``anchor_mount``;
    with ``log_id`` (the pinned audit log), anchors may be created under that log only."""
    text = resources.files("keys").joinpath("policy.hcl").read_text(encoding="utf-8")
    if log_id is not None:
        if not log_id.replace("-", "").isalnum() or _OPEN_ANCHORS not in text:
            raise KeyProviderConfigError("invalid audit log id for the service policy")
        pinned = (
            f'path "{ANCHOR_MOUNT}/data/anchors/{log_id}/*" {{\n'
            '  capabilities = ["create", "read"]\n}\n'
            f'path "{ANCHOR_MOUNT}/data/anchors/*" {{\n  capabilities = ["read"]\n}}\n'
        )
        text = text.replace(_OPEN_ANCHORS, pinned)
    if anchor_mount != ANCHOR_MOUNT:
        text = text.replace(f'"{ANCHOR_MOUNT}/', f'"{anchor_mount}/')
    return text if mount == "transit" else text.replace('"transit/', f'"{mount}/')


_PINNED_LOG = re.compile(r'path "[^"]+/data/anchors/([0-9a-fA-F-]+)/\*"')


def _policy_owner(client: hvac.Client, name: str) -> str | None:
    """The audit log a policy written by init was pinned to, if any."""
    try:
        current = client.sys.read_policy(name=name)
    except hv.InvalidPath:
        return None
    found = _PINNED_LOG.search(str(current.get("data", current).get("rules") or ""))
    return found.group(1) if found else None


_STANZA = re.compile(r'^path "([^"]+)" \{\n.*?^\}\n', re.DOTALL | re.MULTILINE)


def shard_policy_text(mount: str) -> str:
    """The subject-key part of the service policy, for a shard's ``mount``: a shard holds
    subject keys only (the index key, signing key and anchors stay on the primary)."""
    stanzas = [
        m.group(0)
        for m in _STANZA.finditer(policy_text(mount))
        if "/pii-subject-" in m.group(1) or m.group(1) == f"{mount}/keys"
    ]
    return f"# pii-vault subject-key shard on mount {mount}/\n\n" + "\n".join(stanzas)


def _nothing(ids: list[str]) -> set[str]:
    """``known`` when no database was given: it knows no subject."""
    return set()


def _claim(client: hvac.Client, mount: str, log_id: str, done: list[str]) -> None:
    """Claim ``mount`` for deployment ``log_id`` (a mount enabled moments ago: retried)."""
    _just_made(partial(claim, client, mount, log_id))
    done.append(f"claimed the mount {mount}/ for deployment {log_id}")


def _mounts(client: hvac.Client) -> dict[str, Any]:
    mounts = client.sys.list_mounted_secrets_engines()
    return dict(mounts.get("data", mounts))


def _just_made(step: Callable[[], T], attempts: int = 50) -> T:
    """Run ``step`` on a mount enabled moments ago: a standby (or the mount itself, still
    upgrading) may answer 404/400 for a moment. Retried for up to ~10 s."""
    for attempt in range(attempts):
        try:
            return step()
        except (hv.InvalidPath, hv.InvalidRequest) as exc:
            text = str(exc).lower()
            transient = isinstance(exc, hv.InvalidPath) or "upgrad" in text
            if not transient or attempt == attempts - 1:
                raise
            time.sleep(0.2)
    raise AssertionError("unreachable")


def _enable(
    client: hvac.Client,
    mounts: dict[str, Any],
    kind: str,
    path: str,
    done: list[str],
    options: dict[str, str] | None = None,
) -> bool:
    """Enable ``kind`` at ``path`` unless it is there; a path taken by another engine is an
    error (init never replaces a mount). True if it was enabled now."""
    found = mounts.get(f"{path}/")
    if found is not None:
        if found.get("type") != kind:
            raise KeyProviderConfigError(
                f"mount {path}/ exists but is a {found.get('type')} engine, not {kind}"
            )
        if kind == "kv" and str((found.get("options") or {}).get("version")) != "2":
            raise KeyProviderConfigError(f"mount {path}/ is KV version 1, not 2")
        return False
    client.sys.enable_secrets_engine(kind, path=path, options=options)
    done.append(f"enabled the {kind} mount {path}/")
    return True


def _policy(client: hvac.Client, name: str, text: str, done: list[str]) -> None:
    try:
        current = client.sys.read_policy(name=name)
        current = current.get("data", current).get("rules")
    except hv.InvalidPath:
        current = None
    if current == text:
        return
    client.sys.create_or_update_policy(name=name, policy=text)
    done.append(f"{'wrote' if current is None else 'repaired'} the policy {name}")


def bootstrap_shard(
    client: hvac.Client,
    *,
    mount: str,
    policy_name: str = POLICY_NAME,
    log_id: str | None = None,
    known: Callable[[list[str]], set[str]] | None = None,
) -> list[str]:
    """A shard on another cluster: its transit mount and a policy for subject keys only,
    the mount claimed for deployment ``log_id`` (keys/claims.py) when given. Idempotent
    and exact; needs that cluster's privileged token (``pii-vault init-shard``).
    Returns what it created or repaired."""
    privileged = config_error("init-shard needs a privileged Vault token (mounts, policies)")
    done: list[str] = []
    with vault_errors(
        missing=privileged, invalid=provider_error("Vault shard set-up failed"), denied=privileged
    ):
        ours = log_id is not None and verify_claimable(client, mount, log_id, known or _nothing)
        _enable(client, _mounts(client), "transit", mount, done)
        if log_id is not None and not ours:
            _claim(client, mount, log_id, done)
        _just_made(lambda: _policy(client, policy_name, shard_policy_text(mount), done))
    return done


# The shared keys and how they must be: non-exportable, no plaintext backup.
SHARED_KEYS = ((INDEX_KEY, "aes256-gcm96"), (SIGNING_KEY, "ed25519"), (GRANT_KEY, "aes256-gcm96"))


def _shared_key(client: hvac.Client, mount: str, name: str, key_type: str, done: list[str]) -> None:
    transit = client.secrets.transit
    try:
        key = transit.read_key(name, mount_point=mount)["data"]
    except hv.InvalidPath:
        transit.create_key(
            name,
            key_type=key_type,
            exportable=False,
            allow_plaintext_backup=False,
            mount_point=mount,
        )
        done.append(f"created the key {mount}/{name}")
        return
    if key.get("type") != key_type:
        raise KeyProviderConfigError(
            f"key {mount}/{name} is {key.get('type')}, not {key_type}: it cannot be repaired"
        )
    if key.get("exportable") or key.get("allow_plaintext_backup"):
        raise KeyProviderConfigError(
            f"key {mount}/{name} is exportable or has a plaintext backup: it has left Vault's "
            "protection and must be replaced (a new deployment), not repaired"
        )
    if key.get("deletion_allowed"):
        transit.update_key_configuration(name, deletion_allowed=False, mount_point=mount)
        done.append(f"repaired the key {mount}/{name} (deletion no longer allowed)")


def bootstrap_transit(
    client: hvac.Client,
    *,
    mount: str = "transit",
    policy_name: str = POLICY_NAME,
    shard_mounts: Sequence[str] = (),
    log_id: str | None = None,
    anchor_mount: str = ANCHOR_MOUNT,
    known: Callable[[list[str]], set[str]] | None = None,
) -> list[str]:
    """Create, or verify and repair, everything the service needs: the mount, the shared
    keys, the audit-anchor mount's settings and the service policy. Idempotent and exact:
    every run checks every setting it owns (a mount made through a standby is retried
    until it answers). Returns what it created or repaired; needs a privileged token.

    ``shard_mounts``: subject-key shards on this same cluster; their mounts are enabled
    and the service policy covers them too. ``log_id``: the pinned audit log, the only
    one the service may create anchors under; it is also the deployment's name, and each
    mount is claimed for it (keys/claims.py) after everything was checked and before
    anything is changed. ``known``: which of some subject ids this deployment's database
    holds (an unclaimed mount may hold only those). Used by ``pii-vault init`` and by the
    managed OpenBao of tests and the demo.
    """
    privileged = config_error(
        "init needs a privileged Vault token (mounts, policies, transit keys)"
    )
    done: list[str] = []
    transit_mounts = [mount, *shard_mounts]
    with vault_errors(
        missing=privileged, invalid=provider_error("Vault bootstrap failed"), denied=privileged
    ):
        mounts = _mounts(client)
        claimed: dict[str, bool] = {}
        if log_id is not None:  # every check first: a refusal changes nothing
            owner = _policy_owner(client, policy_name)
            if owner is not None and owner != log_id:
                raise ForeignMount(
                    f"the Vault policy {policy_name} belongs to another deployment ({owner}); "
                    "nothing was changed. A second deployment needs its own "
                    "PII_VAULT_VAULT_POLICY, PII_VAULT_TRANSIT_MOUNT and PII_VAULT_ANCHOR_MOUNT"
                )
            for m in transit_mounts:
                claimed[m] = verify_claimable(client, m, log_id, known or _nothing)
        _enable(client, mounts, "transit", mount, done)
        for name, key_type in SHARED_KEYS:
            _just_made(partial(_shared_key, client, mount, name, key_type, done))
        _enable(client, mounts, "kv", anchor_mount, done, options={"version": "2"})
        _just_made(lambda: _anchor_mount(client, done, anchor_mount))
        for shard in shard_mounts:
            _enable(client, mounts, "transit", shard, done)
        if log_id is not None:
            for m in transit_mounts:
                if not claimed[m]:
                    _claim(client, m, log_id, done)
        policy = "\n".join(
            [
                policy_text(mount, log_id, anchor_mount),
                *(shard_policy_text(m) for m in shard_mounts),
            ]
        )
        _policy(client, policy_name, policy, done)
    return done


def _anchor_mount(client: hvac.Client, done: list[str], mount: str = ANCHOR_MOUNT) -> None:
    """One version per anchor (they are never rewritten), check-and-set always: checked on
    every run, not only when the mount is created (issue 24: a re-run left it unset)."""
    kv = client.secrets.kv.v2
    config = kv.read_configuration(mount_point=mount)["data"]
    if config.get("max_versions") == 1 and config.get("cas_required") is True:
        return
    kv.configure(max_versions=1, cas_required=True, mount_point=mount)
    done.append(f"set {mount}/ to check-and-set with one version per anchor")


def pin_log_identity(
    client: hvac.Client, record: dict[str, Any], mount: str = ANCHOR_MOUNT
) -> bool:
    """Write the audit log's identity once (privileged; ``pii-vault init``). Retried while the
    anchor mount, enabled moments ago, is still upgrading. True if written now."""
    from keys.anchors import IDENTITY_PATH, KvAnchors

    if KvAnchors(client, mount).identity() is not None:
        return False
    kv = client.secrets.kv.v2
    failed = provider_error("could not pin the audit log's identity")
    with vault_errors(missing=failed, invalid=failed, denied=failed):
        _just_made(
            lambda: kv.create_or_update_secret(
                IDENTITY_PATH, secret=record, cas=0, mount_point=mount
            )
        )
    return True


def create_service_token(
    client: hvac.Client, *, policy_name: str = POLICY_NAME, ttl: str = "768h"
) -> str:
    """A token limited to the service policy (for the managed server and operators)."""
    failed = provider_error("could not create a service token")
    with vault_errors(missing=failed, invalid=failed, denied=failed):
        resp = client.auth.token.create(policies=[policy_name], ttl=ttl, renewable=True)
        return str(resp["auth"]["client_token"])
