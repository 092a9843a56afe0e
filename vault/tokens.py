"""Token generation: opaque random tokens, and format-preserving card tokens.

A card token keeps the card's length and last four digits and always fails the
Luhn check, so it can never be mistaken for (or charged as) a real card number.
"""

from __future__ import annotations

import secrets

from vault.formats import luhn_ok

TOKEN_PREFIX = "tok_"


def random_token() -> str:
    """``tok_`` + 192 random bits (url-safe base64)."""
    return TOKEN_PREFIX + secrets.token_urlsafe(24)


def card_token(card_digits: str) -> str:
    """Random digits, the card's last four, length kept, Luhn check failing."""
    if not card_digits.isdigit() or len(card_digits) < 12:
        raise ValueError("card token needs a card number of at least 12 digits")
    body = [secrets.choice("0123456789") for _ in range(len(card_digits) - 4)]
    body[0] = secrets.choice("123456789")
    candidate = "".join(body) + card_digits[-4:]
    if luhn_ok(candidate):
        # Changing any one digit changes the Luhn sum mod 10, so this always fails.
        body[-1] = str((int(body[-1]) + 1) % 10)
        candidate = "".join(body) + card_digits[-4:]
    return candidate


def looks_like_token(value: str) -> bool:
    if value.startswith(TOKEN_PREFIX):
        return 20 <= len(value) <= 64 and value[4:].replace("-", "").replace("_", "").isalnum()
    return value.isascii() and value.isdigit() and 12 <= len(value) <= 19
