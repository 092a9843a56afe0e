"""Tokens: random ones carry >= 128 bits; card tokens keep length and last four, fail Luhn."""

from __future__ import annotations

import base64

from hypothesis import given
from hypothesis import strategies as st

from vault.formats import luhn_ok
from vault.tokens import card_token, looks_like_token, random_token


def test_random_tokens() -> None:
    tokens = {random_token() for _ in range(1000)}
    assert len(tokens) == 1000
    token = next(iter(tokens))
    assert token.startswith("tok_")
    assert len(base64.urlsafe_b64decode(token[4:] + "==")) * 8 >= 128
    assert all(looks_like_token(t) for t in tokens)


def _with_check_digit(body: str) -> str:
    for d in "0123456789":
        if luhn_ok(body + d):
            return body + d
    raise AssertionError


@given(st.text(alphabet="0123456789", min_size=11, max_size=18))
def test_card_tokens_preserve_format_and_fail_luhn(body: str) -> None:
    card = _with_check_digit(body)
    token = card_token(card)
    assert len(token) == len(card)
    assert token[-4:] == card[-4:]
    assert token.isdigit() and token[0] != "0"
    assert not luhn_ok(token)
    assert token != card
    assert looks_like_token(token)


def test_not_tokens() -> None:
    for value in ("", "tok_", "hello", "4242", "tok_" + "x" * 100, "tok_abc def ghi jkl mno p"):
        assert not looks_like_token(value)
