"""The one use of biometric data (policy §1 biometrics, issue 19): compare a presented
template with the stored one and learn only "match" or "no match". The stored template
never leaves the vault (the policy denies detokenize and reveal of biometrics to all).

A template is what a face or voice SDK emits: by default a feature vector of
little-endian float32 values, matched by cosine similarity at or above a threshold
(``PII_VAULT_BIOMETRIC_THRESHOLD``, 0.9); identical bytes always match; templates of
different shapes never do.
"""

from __future__ import annotations

import hmac
import math
import struct

DEFAULT_THRESHOLD = 0.9


def _vector(template: bytes) -> tuple[float, ...] | None:
    if not template or len(template) % 4:
        return None
    values = struct.unpack(f"<{len(template) // 4}f", template)
    return values if all(math.isfinite(v) for v in values) else None


def matches(stored: bytes, presented: bytes, threshold: float = DEFAULT_THRESHOLD) -> bool:
    if hmac.compare_digest(stored, presented):
        return True
    a, b = _vector(stored), _vector(presented)
    if a is None or b is None or len(a) != len(b):
        return False
    norm = math.sqrt(sum(x * x for x in a)) * math.sqrt(sum(y * y for y in b))
    if norm == 0:
        return False
    return sum(x * y for x, y in zip(a, b, strict=True)) / norm >= threshold
