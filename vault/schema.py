"""The field schema: loaded from ``fields.toml``, checked strictly at start-up.

Validators normalise a value to the bytes that get encrypted; maskers turn a
plaintext into what a masked view may show; ``index_form`` is the canonical form
fed to the blind index so ``J@Example.com`` and ``j@example.com`` match.
Validation messages carry reason codes, never the rejected value.
"""

from __future__ import annotations

import calendar
import datetime as dt
import ipaddress
import re
import tomllib
import unicodedata
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Literal

from vault.errors import ConfigError

Value = str | bytes

_EMAIL = re.compile(
    r"^[^@\s]{1,64}@[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?)+$"
)
_E164 = re.compile(r"^\+[1-9][0-9]{6,14}$")
_COUNTRY = re.compile(r"^[A-Z]{2}$")
_DOCUMENT = re.compile(r"^[A-Z0-9]{4,30}$")
_BANK = re.compile(r"^[A-Z0-9]{6,34}$")
_DECIMAL = re.compile(r"^-?[0-9]{1,18}(?:\.[0-9]{1,4})?$")
_MAC = re.compile(r"^[0-9A-F]{2}(?::[0-9A-F]{2}){5}$")
_PERIOD = re.compile(r"^P(?:(\d+)Y)?(?:(\d+)M)?(?:(\d+)D)?$")


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
    if not _EMAIL.match(text):
        raise FieldValueError("not_an_email")
    local, domain = text.rsplit("@", 1)
    return f"{local}@{domain.lower()}"


def _v_e164(text: str) -> str:
    compact = re.sub(r"[\s().-]", "", text)
    if not _E164.match(compact):
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
    if not _COUNTRY.match(code):
        raise FieldValueError("not_iso3166_alpha2")
    return code


def _v_document(text: str) -> str:
    compact = re.sub(r"[\s-]", "", text).upper()
    if not _DOCUMENT.match(compact):
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
    if not _BANK.match(compact):
        raise FieldValueError("not_a_bank_account")
    return compact


def _v_decimal(text: str) -> str:
    text = text.strip()
    if not _DECIMAL.match(text):
        raise FieldValueError("not_a_decimal")
    return text


def _v_ip(text: str) -> str:
    try:
        return str(ipaddress.ip_address(text.strip()))
    except ValueError as exc:
        raise FieldValueError("not_an_ip_address") from exc


def _v_mac(text: str) -> str:
    mac = text.strip().upper().replace("-", ":")
    if not _MAC.match(mac):
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


def _m_last4(text: str) -> str:
    keep = text[-4:] if len(text) > 4 else ""
    return "*" * (len(text) - len(keep)) + keep


def _m_card(text: str) -> str:
    return "*" * (len(text) - 4) + text[-4:]


def _m_email(text: str) -> str:
    local, _, domain = text.rpartition("@")
    return f"{local[:1]}***@{domain}"


def _m_initials(text: str) -> str:
    return " ".join(f"{word[:1]}***" for word in text.split()) or "***"


def _m_first(text: str) -> str:
    return f"{text.strip()[:1]}***"


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
TOKEN_STYLES = ("random", "card")


@dataclass(frozen=True)
class Retention:
    """``None`` period means "until the subject's account is deleted"."""

    years: int = 0
    months: int = 0
    days: int = 0
    until_account_deletion: bool = True

    def expires(self, written: dt.datetime) -> dt.datetime | None:
        if self.until_account_deletion:
            return None
        months = written.year * 12 + written.month - 1 + self.years * 12 + self.months
        year, month0 = divmod(months, 12)
        day = min(written.day, calendar.monthrange(year, month0 + 1)[1])
        return written.replace(year=year, month=month0 + 1, day=day) + dt.timedelta(days=self.days)

    @classmethod
    def parse(cls, text: str) -> Retention:
        if text == "account":
            return cls()
        match = _PERIOD.match(text)
        if not match or text == "P":
            raise ValueError(text)
        years, months, days = (int(g) if g else 0 for g in match.groups())
        return cls(years=years, months=months, days=days, until_account_deletion=False)


@dataclass(frozen=True)
class FieldSpec:
    name: str
    category: str
    type: Literal["string", "binary"]
    validation: str
    max_length: int
    mask: str
    token: str
    searchable: bool
    retention: Retention

    def normalize(self, value: Value) -> bytes:
        """Validate and normalise a value to the bytes that get encrypted."""
        if self.type == "binary":
            if not isinstance(value, bytes | bytearray):
                raise FieldValueError("expected_bytes")
            if not value:
                raise FieldValueError("empty")
            if len(value) > self.max_length:
                raise FieldValueError("too_long")
            return bytes(value)
        if not isinstance(value, str):
            raise FieldValueError("expected_string")
        if len(value) > self.max_length * 4 + 64:  # cheap guard before normalising
            raise FieldValueError("too_long")
        text = TEXT_VALIDATORS[self.validation](value)
        if len(text) > self.max_length:
            raise FieldValueError("too_long")
        try:
            return text.encode("utf-8")
        except UnicodeEncodeError:  # lone surrogates cannot be stored or returned
            raise FieldValueError("invalid_unicode") from None

    def decode(self, plaintext: bytes) -> Value:
        return plaintext if self.type == "binary" else plaintext.decode("utf-8")

    def masked(self, plaintext: bytes) -> str:
        if self.type == "binary":
            return "[redacted]"
        return MASKERS[self.mask](plaintext.decode("utf-8"))

    def index_form(self, normalized: bytes) -> bytes:
        """Canonical bytes for the blind index, bound to the field name."""
        text = normalized.decode("utf-8")
        if self.validation == "email":
            text = text.lower()
        return self.name.encode("ascii") + b"\x00" + text.encode("utf-8")


class Schema:
    """All fields, by name, and their categories."""

    def __init__(self, categories: Mapping[str, str], fields: Mapping[str, FieldSpec]) -> None:
        self.categories = dict(categories)
        self.fields = dict(fields)

    def __contains__(self, name: object) -> bool:
        return name in self.fields

    def __getitem__(self, name: str) -> FieldSpec:
        return self.fields[name]

    def by_category(self) -> dict[str, list[str]]:
        out: dict[str, list[str]] = {c: [] for c in self.categories}
        for spec in self.fields.values():
            out[spec.category].append(spec.name)
        return out

    @classmethod
    def load(cls, path: str | Path | None = None) -> Schema:
        """Load and check the schema; any mistake is a ConfigError at start-up."""
        if path is None:
            text = resources.files("vault").joinpath("fields.toml").read_text(encoding="utf-8")
            where = "vault/fields.toml"
        else:
            text = Path(path).read_text(encoding="utf-8")
            where = str(path)
        try:
            data = tomllib.loads(text)
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"{where}: {exc}") from exc
        return cls.from_dict(data, where)

    @classmethod
    def from_dict(cls, data: Mapping[str, object], where: str = "schema") -> Schema:
        if data.get("schema_version") != 1:
            raise ConfigError(f"{where}: schema_version must be 1")
        categories = data.get("categories")
        raw_fields = data.get("fields")
        if not isinstance(categories, dict) or not isinstance(raw_fields, dict) or not raw_fields:
            raise ConfigError(f"{where}: needs [categories] and [fields.*] tables")
        required = {
            "category",
            "type",
            "validation",
            "max_length",
            "mask",
            "token",
            "searchable",
            "retention",
        }
        fields: dict[str, FieldSpec] = {}
        for name, raw in raw_fields.items():
            if not isinstance(raw, dict):
                raise ConfigError(f"{where}: fields.{name} must be a table")
            if not re.fullmatch(r"[a-z][a-z0-9_]{0,63}", name):
                raise ConfigError(f"{where}: bad field name {name!r}")
            missing, extra = required - raw.keys(), raw.keys() - required
            if missing or extra:
                raise ConfigError(
                    f"{where}: fields.{name}: missing {sorted(missing)}, unknown {sorted(extra)}"
                )
            if raw["category"] not in categories:
                raise ConfigError(f"{where}: fields.{name}: unknown category {raw['category']!r}")
            if raw["type"] == "binary":
                ok = raw["validation"] in BINARY_VALIDATORS
            elif raw["type"] == "string":
                ok = raw["validation"] in TEXT_VALIDATORS
            else:
                raise ConfigError(f"{where}: fields.{name}: type must be string or binary")
            if not ok:
                raise ConfigError(
                    f"{where}: fields.{name}: unknown validation {raw['validation']!r}"
                )
            if raw["mask"] not in MASKERS:
                raise ConfigError(f"{where}: fields.{name}: unknown mask {raw['mask']!r}")
            if raw["token"] not in TOKEN_STYLES:
                raise ConfigError(f"{where}: fields.{name}: unknown token style {raw['token']!r}")
            if raw["token"] == "card" and raw["validation"] != "luhn":
                raise ConfigError(f"{where}: fields.{name}: card tokens need luhn validation")
            if not isinstance(raw["max_length"], int) or raw["max_length"] < 1:
                raise ConfigError(f"{where}: fields.{name}: max_length must be a positive integer")
            if not isinstance(raw["searchable"], bool):
                raise ConfigError(f"{where}: fields.{name}: searchable must be true or false")
            if raw["searchable"] and raw["type"] == "binary":
                raise ConfigError(f"{where}: fields.{name}: binary fields cannot be searchable")
            try:
                retention = Retention.parse(str(raw["retention"]))
            except ValueError as exc:
                raise ConfigError(
                    f"{where}: fields.{name}: retention must be 'account' or like 'P3Y'"
                ) from exc
            fields[name] = FieldSpec(
                name=name,
                category=str(raw["category"]),
                type=raw["type"],
                validation=str(raw["validation"]),
                max_length=int(raw["max_length"]),
                mask=str(raw["mask"]),
                token=str(raw["token"]),
                searchable=bool(raw["searchable"]),
                retention=retention,
            )
        return cls({str(k): str(v) for k, v in categories.items()}, fields)
