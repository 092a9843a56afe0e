"""The field schema: loaded from ``fields.toml``, checked strictly at start-up.

Validators normalise a value to the bytes that get encrypted; maskers turn a
plaintext into what a masked view may show; ``index_form`` is the canonical form
fed to the blind index so ``J@Example.com`` and ``j@example.com`` match.
Validation messages carry reason codes, never the rejected value.
"""

from __future__ import annotations

import calendar
import datetime as dt
import re
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Literal

from vault.errors import ConfigError
from vault.formats import BINARY_VALIDATORS, MASKERS, TEXT_VALIDATORS, FieldValueError

Value = str | bytes
_PERIOD = re.compile(r"P(?:(\d+)Y)?(?:(\d+)M)?(?:(\d+)D)?")

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
        match = _PERIOD.fullmatch(text)
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
    label: str = ""  # what people read (the console); the name is the API's
    # Sensitive personal information (PIPL art. 28, GDPR art. 9): a separate consent
    # ``sensitive:<category>`` is needed to write or read it (access/conditions/sensitive.py).
    sensitive: bool = False
    # A legal minimum (e.g. e-commerce law: transaction records 3 years): a correction keeps
    # the prior version, and a shred keeps the value, until this much after it was written.
    floor: Retention | None = None

    @property
    def title(self) -> str:
        return self.label or self.name.replace("_", " ").capitalize()

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
        """The masked form; a value the masker cannot handle (e.g. written by an older,
        laxer validator) is shown as ``[redacted]``, never an error."""
        if self.type == "binary":
            return "[redacted]"
        try:
            return MASKERS[self.mask](plaintext.decode("utf-8"))
        except (ValueError, IndexError, UnicodeDecodeError):
            return "[redacted]"

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
            missing = required - raw.keys()
            extra = raw.keys() - required - {"label", "sensitive", "retention_floor"}  # optional
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
            if not isinstance(raw.get("sensitive", False), bool):
                raise ConfigError(f"{where}: fields.{name}: sensitive must be true or false")
            if raw["searchable"] and raw["type"] == "binary":
                raise ConfigError(f"{where}: fields.{name}: binary fields cannot be searchable")
            try:
                retention = Retention.parse(str(raw["retention"]))
            except ValueError as exc:
                raise ConfigError(
                    f"{where}: fields.{name}: retention must be 'account' or like 'P3Y'"
                ) from exc
            floor = None
            if "retention_floor" in raw:
                try:
                    floor = Retention.parse(str(raw["retention_floor"]))
                except ValueError as exc:
                    raise ConfigError(
                        f"{where}: fields.{name}: retention_floor must be like 'P3Y'"
                    ) from exc
                if floor.until_account_deletion:
                    raise ConfigError(f"{where}: fields.{name}: retention_floor must be a period")
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
                label=str(raw.get("label") or "")[:64],
                sensitive=bool(raw.get("sensitive", False)),
                floor=floor,
            )
        return cls({str(k): str(v) for k, v in categories.items()}, fields)
