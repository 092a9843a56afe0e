"""Region codes (policy §7): an ISO 3166-1 country (``DE``) or an ISO 3166-2 subdivision
(``US-CA``), checked against pycountry's tables. Before (issue 23) any short code was
taken: ``PII_VAULT_DEFAULT_REGION=XX`` gave subjects a region no transfer rule or
shard binding could ever name."""

from __future__ import annotations

import functools

import pycountry


@functools.cache
def known_region(code: str) -> bool:
    upper = code.strip().upper()
    if "-" in upper:
        return pycountry.subdivisions.get(code=upper) is not None  # type: ignore[no-untyped-call]
    return len(upper) == 2 and pycountry.countries.get(alpha_2=upper) is not None
