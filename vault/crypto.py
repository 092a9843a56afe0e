"""Field encryption: the only module that touches an AEAD primitive of ``cryptography``.

Format version 1 (all integers big-endian)::

    0x01 | dek_id (16 bytes, UUID) | nonce (12 bytes) | AES-256-GCM ciphertext+tag

The associated data binds the ciphertext to its place::

    b"pii-vault/field" | 0x01 | subject_id (16 bytes) | dek_id (16 bytes) | field (UTF-8)

so a ciphertext copied to another subject or field, or relabelled with another
data key, fails. Every failure surfaces as the one ``DecryptionError``.
"""

from __future__ import annotations

import os
import uuid

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from vault.errors import DecryptionError

FORMAT_V1 = 1
_DOMAIN = b"pii-vault/field"
_NONCE_LEN = 12
_HEADER_LEN = 1 + 16 + _NONCE_LEN
_TAG_LEN = 16
KEY_LEN = 32


def associated_data(subject_id: uuid.UUID, field: str, dek_id: uuid.UUID) -> bytes:
    return _DOMAIN + bytes([FORMAT_V1]) + subject_id.bytes + dek_id.bytes + field.encode("utf-8")


def encrypt_field(
    dek: bytes,
    dek_id: uuid.UUID,
    subject_id: uuid.UUID,
    field: str,
    plaintext: bytes,
    *,
    nonce: bytes | None = None,
) -> bytes:
    """Encrypt one field value. ``nonce`` is for known-answer tests only."""
    if len(dek) != KEY_LEN:
        raise ValueError("data key must be 32 bytes")
    nonce = os.urandom(_NONCE_LEN) if nonce is None else nonce
    if len(nonce) != _NONCE_LEN:
        raise ValueError("nonce must be 12 bytes")
    header = bytes([FORMAT_V1]) + dek_id.bytes + nonce
    sealed = AESGCM(dek).encrypt(nonce, plaintext, associated_data(subject_id, field, dek_id))
    return header + sealed


def ciphertext_dek_id(blob: bytes) -> uuid.UUID:
    """The data-key id a ciphertext names (unauthenticated until decryption succeeds)."""
    if len(blob) < _HEADER_LEN + _TAG_LEN or blob[0] != FORMAT_V1:
        raise DecryptionError()
    return uuid.UUID(bytes=bytes(blob[1:17]))


def decrypt_field(dek: bytes, subject_id: uuid.UUID, field: str, blob: bytes) -> bytes:
    dek_id = ciphertext_dek_id(blob)
    nonce = bytes(blob[17:_HEADER_LEN])
    try:
        return AESGCM(dek).decrypt(
            nonce, bytes(blob[_HEADER_LEN:]), associated_data(subject_id, field, dek_id)
        )
    except (InvalidTag, ValueError) as exc:
        raise DecryptionError() from exc
