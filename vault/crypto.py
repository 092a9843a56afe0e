"""Field encryption: the only module that touches an AEAD primitive of ``cryptography``.

Format version 2 (written since issue 17; version 1 is still read)::

    0x02 | dek_id (16 bytes, UUID) | nonce (12 bytes) | AES-256-GCM(pad(value))+tag

``pad``: ISO/IEC 7816-4 (0x80, then zeros) up to the next multiple of 16 bytes, so a
dump shows a value's length only in 16-byte classes: every gender, every date of
birth, every short code has the same ciphertext length. Version 1 is the same without
the padding. The associated data binds the ciphertext to its place::

    b"pii-vault/field" | version | subject_id (16 bytes) | dek_id (16 bytes) | field (UTF-8)

so a ciphertext copied to another subject or field, or relabelled with another
data key, fails. Every failure surfaces as the one ``DecryptionError``.
"""

from __future__ import annotations

import hashlib
import os
import uuid

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from vault.errors import DecryptionError

FORMAT_V1 = 1
FORMAT_V2 = 2  # padded
PAD_BLOCK = 16
_DOMAIN = b"pii-vault/field"
_NONCE_LEN = 12
_HEADER_LEN = 1 + 16 + _NONCE_LEN
_TAG_LEN = 16
KEY_LEN = 32


def associated_data(
    subject_id: uuid.UUID, field: str, dek_id: uuid.UUID, version: int = FORMAT_V1
) -> bytes:
    return _DOMAIN + bytes([version]) + subject_id.bytes + dek_id.bytes + field.encode("utf-8")


def pad(value: bytes) -> bytes:
    filled = value + b"\x80"
    return filled + b"\x00" * (-len(filled) % PAD_BLOCK)


def unpad(padded: bytes) -> bytes:
    end = padded.rfind(b"\x80")
    if end < 0 or padded[end + 1 :].strip(b"\x00") or len(padded) % PAD_BLOCK:
        raise DecryptionError()
    return padded[:end]


def encrypt_field(
    dek: bytes,
    dek_id: uuid.UUID,
    subject_id: uuid.UUID,
    field: str,
    plaintext: bytes,
    *,
    nonce: bytes | None = None,
    version: int = FORMAT_V2,
) -> bytes:
    """Encrypt one field value. ``nonce`` and ``version`` are for known-answer tests only."""
    if len(dek) != KEY_LEN:
        raise ValueError("data key must be 32 bytes")
    nonce = os.urandom(_NONCE_LEN) if nonce is None else nonce
    if len(nonce) != _NONCE_LEN:
        raise ValueError("nonce must be 12 bytes")
    if version not in (FORMAT_V1, FORMAT_V2):
        raise ValueError("unknown format version")
    header = bytes([version]) + dek_id.bytes + nonce
    body = pad(plaintext) if version == FORMAT_V2 else plaintext
    sealed = AESGCM(dek).encrypt(nonce, body, associated_data(subject_id, field, dek_id, version))
    return header + sealed


def ciphertext_dek_id(blob: bytes) -> uuid.UUID:
    """The data-key id a ciphertext names (unauthenticated until decryption succeeds)."""
    if len(blob) < _HEADER_LEN + _TAG_LEN or blob[0] not in (FORMAT_V1, FORMAT_V2):
        raise DecryptionError()
    return uuid.UUID(bytes=bytes(blob[1:17]))


def decrypt_field(dek: bytes, subject_id: uuid.UUID, field: str, blob: bytes) -> bytes:
    dek_id = ciphertext_dek_id(blob)
    version = blob[0]
    nonce = bytes(blob[17:_HEADER_LEN])
    try:
        plain = AESGCM(dek).decrypt(
            nonce, bytes(blob[_HEADER_LEN:]), associated_data(subject_id, field, dek_id, version)
        )
    except (InvalidTag, ValueError) as exc:
        raise DecryptionError() from exc
    return unpad(plain) if version == FORMAT_V2 else plain


def _secret_key(secret: str, context: bytes) -> bytes:
    return hashlib.sha256(b"pii-vault/secret-key/v1|" + context + b"|" + secret.encode()).digest()


def seal_with_secret(secret: str, context: bytes, plaintext: bytes) -> bytes:
    """Encrypt under a key derived from a high-entropy ``secret`` the database never holds
    (a console session's id: only its hash is stored), so a dump of the row reads nothing."""
    nonce = os.urandom(_NONCE_LEN)
    return nonce + AESGCM(_secret_key(secret, context)).encrypt(nonce, plaintext, context)


def open_with_secret(secret: str, context: bytes, blob: bytes) -> bytes:
    try:
        return AESGCM(_secret_key(secret, context)).decrypt(
            blob[:_NONCE_LEN], blob[_NONCE_LEN:], context
        )
    except (InvalidTag, ValueError) as exc:
        raise DecryptionError() from exc
