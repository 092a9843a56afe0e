"""One deployment per transit mount (issue 23).

Two deployments initialised against one mount each saw the other's subject keys as
orphans: ``reconcile`` destroyed them and ``reindex`` retired the other's index-key
versions. Now ``pii-vault init`` claims each mount it sets up with a marker key,
``pii-deployment-<audit log id>``, created in the mount itself with the operator's token
(the service policy may create subject keys only, so a service token cannot forge or
move a claim; the claim is found wherever the mount is, whatever anchor mount or
database points at it). ``init`` refuses a mount another deployment claimed, or an
unclaimed one holding subject keys this database does not know; ``reconcile``,
``reindex`` and ``rotate-keys`` refuse a mount whose claim is not theirs.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import hvac
import hvac.exceptions as hv

from keys.errors import KeyProviderConfigError

CLAIM_PREFIX = "pii-deployment-"
SUBJECT_PREFIX = "pii-subject-"


class ForeignMount(KeyProviderConfigError):
    """The mount belongs to another deployment: nothing is changed in it."""


def claims_in(key_names: Sequence[str]) -> list[str]:
    n = len(CLAIM_PREFIX)
    return sorted(str(k)[n:] for k in key_names if str(k).startswith(CLAIM_PREFIX))


def check_claim(claims: Sequence[str], deployment: str, mount: str) -> bool:
    """True if ``deployment`` holds the mount's one claim, False if nobody claimed it;
    raise ForeignMount if another deployment did."""
    others = [c for c in claims if c != deployment]
    if others:
        raise ForeignMount(
            f"transit mount {mount}/ belongs to another deployment ({', '.join(others)}); "
            f"this database is deployment {deployment}: nothing was changed. A second "
            "deployment needs its own PII_VAULT_TRANSIT_MOUNT, PII_VAULT_ANCHOR_MOUNT and "
            "PII_VAULT_VAULT_POLICY"
        )
    return deployment in claims


def backend_claims(backend: object) -> dict[str, list[str]]:
    """Each transit mount of a key backend and who claimed it (none: the local provider,
    whose keys live beside its own database)."""
    claims = getattr(backend, "mount_claims", None)
    return dict(claims()) if callable(claims) else {}


def verify_ours(backend: object, deployment: str) -> list[str]:
    """Before a job that destroys or retires keys: raise ForeignMount if a mount is another
    deployment's; return the mounts nobody claimed yet (from before claims: ``init``
    claims them)."""
    return [m for m, c in backend_claims(backend).items() if not check_claim(c, deployment, m)]


def _names(client: hvac.Client, mount: str) -> list[str]:
    try:
        resp = client.secrets.transit.list_keys(mount_point=mount)
    except hv.InvalidPath:
        return []
    return [str(k) for k in resp["data"]["keys"]]


def foreign_keys(client: hvac.Client, mount: str, known: Callable[[list[str]], set[str]]) -> int:
    """How many subject keys in an unclaimed ``mount`` this database does not know."""
    n = len(SUBJECT_PREFIX)
    ids = [k[n:] for k in _names(client, mount) if k.startswith(SUBJECT_PREFIX)]
    return len(set(ids) - known(ids))


def verify_claimable(
    client: hvac.Client, mount: str, deployment: str, known: Callable[[list[str]], set[str]]
) -> bool:
    """Before ``init`` changes anything: True if the mount is already ours; False if it may
    be claimed (new, or unclaimed with only keys this database knows, i.e. a deployment
    from before claims, upgraded); raise ForeignMount otherwise."""
    if check_claim(claims_in(_names(client, mount)), deployment, mount):
        return True
    strangers = foreign_keys(client, mount, known)
    if strangers:
        raise ForeignMount(
            f"transit mount {mount}/ holds {strangers} subject key(s) this database does not "
            "know and no deployment's claim: it is another deployment's (from before "
            "claims) or this is the wrong database; nothing was changed"
        )
    return False


def claim(client: hvac.Client, mount: str, deployment: str) -> None:
    """Write the claim (privileged). Checked again after: of two inits racing for one
    mount, both see two claims and the operator removes one."""
    client.secrets.transit.create_key(
        f"{CLAIM_PREFIX}{deployment}",
        key_type="aes256-gcm96",
        exportable=False,
        allow_plaintext_backup=False,
        mount_point=mount,
    )
    check_claim(claims_in(_names(client, mount)), deployment, mount)
