"""Setting transit up (privileged, once): the mount, the shared keys, the service policy,
the audit-anchor mount, and service tokens. Used by ``pii-vault init``, the demo and tests.
"""

from __future__ import annotations

import contextlib
import re
import time
from collections.abc import Sequence
from importlib import resources

import hvac
import hvac.exceptions as hv

from keys.anchors import ANCHOR_MOUNT
from keys.hvac_errors import config_error, provider_error, vault_errors
from keys.transit import INDEX_KEY, POLICY_NAME, SIGNING_KEY


def policy_text(mount: str = "transit") -> str:
    """The shipped least-privilege HCL policy, rewritten for ``mount``."""
    text = resources.files("keys").joinpath("policy.hcl").read_text(encoding="utf-8")
    return text if mount == "transit" else text.replace('"transit/', f'"{mount}/')


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


def _enable_transit(client: hvac.Client, mount: str) -> None:
    mounts = client.sys.list_mounted_secrets_engines()
    mounts = mounts.get("data", mounts)
    if f"{mount}/" not in mounts:
        client.sys.enable_secrets_engine("transit", path=mount)


def bootstrap_shard(client: hvac.Client, *, mount: str, policy_name: str = POLICY_NAME) -> None:
    """A shard on another cluster: its transit mount and a policy for subject keys only.
    Idempotent; needs that cluster's privileged token (``pii-vault init-shard``)."""
    privileged = config_error("init-shard needs a privileged Vault token (mounts, policies)")
    with vault_errors(
        missing=privileged, invalid=provider_error("Vault shard set-up failed"), denied=privileged
    ):
        _enable_transit(client, mount)
        client.sys.create_or_update_policy(name=policy_name, policy=shard_policy_text(mount))


def bootstrap_transit(
    client: hvac.Client,
    *,
    mount: str = "transit",
    policy_name: str = POLICY_NAME,
    shard_mounts: Sequence[str] = (),
) -> None:
    """Create the mount, shared keys and service policy. Idempotent; needs a privileged token.

    ``shard_mounts``: subject-key shards on this same cluster; their mounts are enabled
    and the service policy covers them too. Used by ``pii-vault init`` and by the
    managed OpenBao of tests and the demo.
    """
    privileged = config_error(
        "init needs a privileged Vault token (mounts, policies, transit keys)"
    )
    with vault_errors(
        missing=privileged, invalid=provider_error("Vault bootstrap failed"), denied=privileged
    ):
        mounts = client.sys.list_mounted_secrets_engines()
        mounts = mounts.get("data", mounts)
        if f"{mount}/" not in mounts:
            client.sys.enable_secrets_engine("transit", path=mount)
        transit = client.secrets.transit
        existing: set[str] = set()
        with contextlib.suppress(hv.InvalidPath):  # no keys yet
            existing = set(transit.list_keys(mount_point=mount)["data"]["keys"])
        for name, key_type in ((INDEX_KEY, "aes256-gcm96"), (SIGNING_KEY, "ed25519")):
            if name not in existing:
                transit.create_key(
                    name,
                    key_type=key_type,
                    exportable=False,
                    allow_plaintext_backup=False,
                    mount_point=mount,
                )
        if f"{ANCHOR_MOUNT}/" not in mounts:
            client.sys.enable_secrets_engine("kv", path=ANCHOR_MOUNT, options={"version": "2"})
            _configure_anchor_mount(client)
        for shard in shard_mounts:
            _enable_transit(client, shard)
        policy = "\n".join([policy_text(mount), *(shard_policy_text(m) for m in shard_mounts)])
        client.sys.create_or_update_policy(name=policy_name, policy=policy)


def _configure_anchor_mount(client: hvac.Client) -> None:
    """One version per anchor (they are never rewritten), check-and-set always.

    A new KV v2 mount on persistent storage upgrades itself for a moment after
    it is enabled and refuses requests meanwhile: wait for it (up to ~20 s).
    """
    for attempt in range(100):
        try:
            client.secrets.kv.v2.configure(
                max_versions=1, cas_required=True, mount_point=ANCHOR_MOUNT
            )
            return
        except hv.InvalidRequest as exc:
            if "upgrading" not in str(exc).lower() or attempt == 99:
                raise
            time.sleep(0.2)


def create_service_token(
    client: hvac.Client, *, policy_name: str = POLICY_NAME, ttl: str = "768h"
) -> str:
    """A token limited to the service policy (for the managed server and operators)."""
    failed = provider_error("could not create a service token")
    with vault_errors(missing=failed, invalid=failed, denied=failed):
        resp = client.auth.token.create(policies=[policy_name], ttl=ttl, renewable=True)
        return str(resp["auth"]["client_token"])
