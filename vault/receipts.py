"""Signed deletion receipts, verifiable offline against the vault's pinned key.

What a receipt proves (issue 17, README "Deletion receipts"): that a holder of the
vault's signing key signed it. The service's Vault token may sign any bytes with that
key, so a receipt alone does not prove the key is gone: ``Shredder.confirm`` (the
console's "verified") also checks the shred published outside the database and the
subject key's absence in Vault.
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from keys.signing import verify_signature

RECEIPT_TYPE = "pii-vault.deletion-receipt"


@dataclass(frozen=True)
class DeletionReceipt:
    subject_id: str
    requested_at: str
    shredded_at: str
    key_provider: str
    signature: str  # base64 Ed25519 over payload()
    public_key: str  # base64 raw Ed25519 public key
    # What a legal retention floor kept (policy §4): the held subject, fields, end date.
    held: Mapping[str, Any] | None = None

    def payload(self) -> bytes:
        return receipt_payload(
            self.subject_id, self.requested_at, self.shredded_at, self.key_provider, self.held
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "type": RECEIPT_TYPE,
            "version": 1,
            "subject_id": self.subject_id,
            "requested_at": self.requested_at,
            "shredded_at": self.shredded_at,
            "key_provider": self.key_provider,
            "subject_key_destroyed": True,
            "data_deleted": True,
            **({"held": dict(self.held)} if self.held else {}),
            "signature": self.signature,
            "public_key": self.public_key,
        }


def receipt_payload(
    subject_id: str,
    requested_at: str,
    shredded_at: str,
    provider: str,
    held: Mapping[str, Any] | None = None,
) -> bytes:
    """Canonical JSON (sorted keys, no spaces): the exact bytes that are signed. ``held``
    (what a retention floor kept) is signed too, and only present when something was."""
    body: dict[str, Any] = {
        "type": RECEIPT_TYPE,
        "version": 1,
        "subject_id": subject_id,
        "requested_at": requested_at,
        "shredded_at": shredded_at,
        "key_provider": provider,
        "subject_key_destroyed": True,
        "data_deleted": True,
    }
    if held:
        body["held"] = dict(held)
    return json.dumps(body, sort_keys=True, separators=(",", ":")).encode("utf-8")


def verify_receipt(receipt: Mapping[str, Any], public_key: bytes) -> bool:
    """True when the receipt's signature verifies against ``public_key``, the vault's pinned key.

    The ``public_key`` inside a receipt is informational: anyone can sign a
    receipt with their own key and put its public half there, so it is never
    used to verify.
    """
    try:
        payload = receipt_payload(
            str(receipt["subject_id"]),
            str(receipt["requested_at"]),
            str(receipt["shredded_at"]),
            str(receipt["key_provider"]),
            receipt.get("held") or None,
        )
        signature = base64.b64decode(str(receipt["signature"]), validate=True)
    except (KeyError, binascii.Error, ValueError):
        return False
    return verify_signature(public_key, payload, signature)
