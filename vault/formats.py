"""What values look like: validators (value -> the bytes that get encrypted) and maskers
(plaintext -> what a masked view may show), by the names ``fields.toml`` uses.

Validators match in full (``fullmatch``: no trailing newline slips through),
refuse control characters where they mean nothing, and say why with a short
reason code, never the value. Every text mask shows at most half of a value's
characters (of the local part, for an email address); short values show less
or nothing. ``card`` shows the last 4 of 12-19 digits, ``year`` the year of a
date, ``ip`` the network half, ``mac`` the vendor half.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import re
import unicodedata
from collections.abc import Callable

_EMAIL = re.compile(
    r"^[^@\s\x00-\x1f\x7f]{1,64}@[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?)+$"
)
_E164 = re.compile(r"^\+[1-9][0-9]{6,14}$")
_COUNTRY = re.compile(r"^[A-Z]{2}$")
_DOCUMENT = re.compile(r"^[A-Z0-9]{4,30}$")
_BANK = re.compile(r"^[A-Z0-9]{6,34}$")
_DECIMAL = re.compile(r"^-?[0-9]{1,18}(?:\.[0-9]{1,4})?$")
_MAC = re.compile(r"^[0-9A-F]{2}(?::[0-9A-F]{2}){5}$")


class FieldValueError(ValueError):
    """A value failed validation; ``reason`` is a short code safe to log."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def luhn_ok(digits: str) -> bool:
    total = 0
    for i, ch in enumerate(reversed(digits)):
        d = ord(ch) - 48
        if i % 2 == 1:
            d *= 2
            if d > 9:
                d -= 9
        total += d
    return total % 10 == 0


def _has_control(text: str) -> bool:
    return any(unicodedata.category(c) == "Cc" and c not in "\n\t\r" for c in text)


# -- validators: str -> normalised str -------------------------------------------


def _v_text(text: str) -> str:
    if not text.strip():
        raise FieldValueError("empty")
    if _has_control(text):
        raise FieldValueError("control_characters")
    return text


def _v_email(text: str) -> str:
    text = text.strip()
    if not _EMAIL.fullmatch(text):
        raise FieldValueError("not_an_email")
    local, domain = text.rsplit("@", 1)
    return f"{local}@{domain.lower()}"


def _v_e164(text: str) -> str:
    compact = re.sub(r"[\s().-]", "", text)
    if not _E164.fullmatch(compact):
        raise FieldValueError("not_e164")
    return compact


def _v_past_date(text: str) -> str:
    try:
        day = dt.date.fromisoformat(text.strip())
    except ValueError as exc:
        raise FieldValueError("not_iso_date") from exc
    if len(text.strip()) != 10:
        raise FieldValueError("not_iso_date")
    if day > dt.date.today() or day.year < 1880:
        raise FieldValueError("date_out_of_range")
    return day.isoformat()


def _v_country(text: str) -> str:
    code = text.strip().upper()
    if not _COUNTRY.fullmatch(code):
        raise FieldValueError("not_iso3166_alpha2")
    return code


def _v_document(text: str) -> str:
    compact = re.sub(r"[\s-]", "", text).upper()
    if not _DOCUMENT.fullmatch(compact):
        raise FieldValueError("not_a_document_number")
    return compact


def _v_luhn(text: str) -> str:
    digits = re.sub(r"[\s-]", "", text)
    if not digits.isascii() or not digits.isdigit() or not 12 <= len(digits) <= 19:
        raise FieldValueError("not_a_card_number")
    if not luhn_ok(digits):
        raise FieldValueError("luhn_check_failed")
    return digits


def _v_bank(text: str) -> str:
    compact = re.sub(r"[\s-]", "", text).upper()
    if not _BANK.fullmatch(compact):
        raise FieldValueError("not_a_bank_account")
    return compact


def _v_decimal(text: str) -> str:
    text = text.strip()
    if not _DECIMAL.fullmatch(text):
        raise FieldValueError("not_a_decimal")
    return text


def _v_ip(text: str) -> str:
    text = text.strip()
    if "%" in text:  # a scoped IPv6 address names an interface of some host: not data here
        raise FieldValueError("not_an_ip_address")
    try:
        return str(ipaddress.ip_address(text))
    except ValueError as exc:
        raise FieldValueError("not_an_ip_address") from exc


def _v_mac(text: str) -> str:
    mac = text.strip().upper().replace("-", ":")
    if not _MAC.fullmatch(mac):
        raise FieldValueError("not_a_mac_address")
    return mac


TEXT_VALIDATORS: dict[str, Callable[[str], str]] = {
    "text": _v_text,
    "email": _v_email,
    "e164": _v_e164,
    "past_date": _v_past_date,
    "country": _v_country,
    "document_number": _v_document,
    "luhn": _v_luhn,
    "bank_account": _v_bank,
    "decimal": _v_decimal,
    "ip": _v_ip,
    "mac": _v_mac,
}
BINARY_VALIDATORS = {"binary"}


# -- maskers: plaintext -> what a masked view shows ------------------------------


# Every text mask shows at most half of the value's characters (of the local part, for an
# email address): short values show less or nothing. `card` shows the last 4 of 12-19
# digits, `year` the year of a date, `ip` the network half, `mac` the vendor half.


def _m_last4(text: str) -> str:
    keep = min(4, len(text) // 2)
    return "*" * (len(text) - keep) + (text[-keep:] if keep else "")


def _m_card(text: str) -> str:
    return "*" * (len(text) - 4) + text[-4:]


def _initial(word: str) -> str:
    return word[:1] if len(word) >= 2 else ""


def _m_email(text: str) -> str:
    local, _, domain = text.rpartition("@")
    return f"{_initial(local)}***@{domain}"


def _m_initials(text: str) -> str:
    return " ".join(f"{_initial(word)}***" for word in text.split()) or "***"


def _m_first(text: str) -> str:
    return f"{_initial(text.strip())}***"


def _m_year(text: str) -> str:
    return f"{text[:4]}-**-**"


def _m_ip(text: str) -> str:
    addr = ipaddress.ip_address(text)
    if addr.version == 4:
        a, b, _, _ = text.split(".")
        return f"{a}.{b}.*.*"
    groups = addr.exploded.split(":")
    return ":".join(groups[:2]) + ":*:*:*:*:*:*"


def _m_mac(text: str) -> str:
    return text[:8] + ":**:**:**"


def _m_redacted(_: str) -> str:
    return "[redacted]"


MASKERS: dict[str, Callable[[str], str]] = {
    "last4": _m_last4,
    "card": _m_card,
    "email": _m_email,
    "initials": _m_initials,
    "first": _m_first,
    "year": _m_year,
    "ip": _m_ip,
    "mac": _m_mac,
    "redacted": _m_redacted,
}
