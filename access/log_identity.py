"""The audit log's identity, pinned outside the database once, at ``pii-vault init`` (issue 17).

Before this, the anchors' namespace was whatever ``audit_head.log_id`` said: someone
who could write the database set a fresh id, rewrote the chain, and the service
anchored the forgery itself under a namespace nobody looked at. Now ``init`` (with
the operator's token) writes the identity into the anchor store, where the service
may read it but never write it, limits the service policy to anchors under that id,
and anchors a genesis event at once, so an emptied or shortened log is always
behind an anchor.
"""

from __future__ import annotations

import datetime as dt

from sqlalchemy import Engine, select

from access.errors import AccessConfigError
from access.models import AuditHead
from keys.provider import AnchorStore


def settle_log_id(store: AnchorStore, engine: Engine) -> str:
    """The log id this deployment uses: the pinned one if it is the database's; else, with
    nothing pinned, the database's own, which ``pin`` then writes. A database holding
    another log is refused, and so is a fresh one (issue 23): it is a second deployment,
    which must not take over the first one's mounts. (A fresh database could not stand in
    for a lost one anyway: the pinned log's anchors are there and it cannot extend them;
    a lost database is restored from its backup.)"""
    with engine.begin() as conn:
        row = conn.execute(
            select(AuditHead.log_id, AuditHead.seq).where(AuditHead.id == 1)
        ).one_or_none()
        if row is None or not row.log_id:
            raise AccessConfigError("the audit tables are not initialised")
        identity = store.identity()
        if identity is None:
            return str(row.log_id)
        pinned = str(identity.get("log_id"))
        if pinned == row.log_id:
            return pinned
    if row.seq == 0:
        raise AccessConfigError(
            f"this Vault's anchor store belongs to deployment {pinned} and this database is "
            "a new one: a second deployment on the same Vault needs its own "
            "PII_VAULT_TRANSIT_MOUNT, PII_VAULT_ANCHOR_MOUNT and PII_VAULT_VAULT_POLICY "
            "(a lost database is restored from its backup); nothing was changed"
        )
    raise AccessConfigError(
        "this database holds another audit log than the one pinned in the anchor store "
        "(a replaced database?): `pii-vault audit verify` says more; nothing was changed"
    )


def database_log_id(engine: Engine) -> str:
    """The deployment's name as its database says: its audit log's id."""
    with engine.connect() as conn:
        log_id = conn.scalar(select(AuditHead.log_id).where(AuditHead.id == 1))
    if not log_id:
        raise AccessConfigError("the audit tables are not initialised: run `pii-vault init`")
    return str(log_id)


def identity_record(log_id: str) -> dict[str, object]:
    return {
        "v": 1,
        "log_id": log_id,
        "pinned_at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
    }


def pin(store: AnchorStore, log_id: str) -> bool:
    """Write the identity once; True if it was written now."""
    if store.identity() is not None:
        return False
    return store.pin_identity(identity_record(log_id))
