"""Signature verification needs only the public key, so it lives apart from any provider."""

from __future__ import annotations

from nacl.exceptions import BadSignatureError
from nacl.exceptions import ValueError as NaclValueError
from nacl.signing import VerifyKey


def verify_signature(public_key: bytes, message: bytes, signature: bytes) -> bool:
    """True when ``signature`` is a valid Ed25519 signature of ``message``."""
    try:
        VerifyKey(public_key).verify(message, signature)
    except (BadSignatureError, NaclValueError, TypeError):
        return False
    return True
