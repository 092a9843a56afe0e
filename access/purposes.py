"""Purposes of processing and the justification some of them demand (policy §2)."""

from __future__ import annotations

import re
import tomllib
from collections.abc import Collection, Mapping
from dataclasses import dataclass
from importlib import resources

from access.errors import AccessConfigError, UnknownPurpose

TICKET = re.compile(r"^[A-Z][A-Z0-9]{1,9}-[0-9]{1,9}$")
MAX_REASON = 500


@dataclass(frozen=True)
class Purpose:
    name: str
    description: str
    requires_consent: bool
    requires_justification: bool


# Consent topics beyond purposes (access/consents.py): the separate consent sensitive
# data needs, and a cross-border transfer's.
SENSITIVE = "sensitive:"
CROSS_BORDER = "cross_border:"
REGION = re.compile(r"^[A-Z0-9-]{2,16}$")


def consent_topic(name: str, purposes: Purposes, categories: Collection[str]) -> Purpose:
    """What a consent can be given for: a purpose, ``sensitive:<category>`` or
    ``cross_border:<REGION>``; anything else is UnknownPurpose. The one parser: consents,
    decisions and the policy's rule check all ask it."""
    if isinstance(name, str) and name.startswith(SENSITIVE):
        if name[len(SENSITIVE) :] in categories:
            return Purpose(name, "Separate consent to sensitive personal information", False, False)
    elif isinstance(name, str) and name.startswith(CROSS_BORDER):
        if REGION.fullmatch(name[len(CROSS_BORDER) :]):
            return Purpose(name, "Separate consent to a cross-border transfer", False, False)
    else:
        return purposes.get(name)
    raise UnknownPurpose(f"unknown consent topic {str(name)[:64]!r}")


@dataclass(frozen=True)
class Justification:
    """A ticket reference (e.g. ``CS-1234``) and a non-empty reason."""

    ticket: str
    reason: str

    @property
    def valid(self) -> bool:
        reason = self.reason.strip() if isinstance(self.reason, str) else ""
        return (
            isinstance(self.ticket, str)
            and bool(TICKET.fullmatch(self.ticket))
            and 0 < len(reason) <= MAX_REASON
        )


class Purposes:
    def __init__(self, purposes: Mapping[str, Purpose]) -> None:
        self._purposes = dict(purposes)

    def __contains__(self, name: object) -> bool:
        return name in self._purposes

    def __iter__(self):  # type: ignore[no-untyped-def]
        return iter(self._purposes)

    def get(self, name: str) -> Purpose:
        try:
            return self._purposes[name]
        except (KeyError, TypeError):
            raise UnknownPurpose(f"unknown purpose {str(name)[:64]!r}") from None

    @property
    def names(self) -> list[str]:
        return sorted(self._purposes)

    @classmethod
    def load(cls, text: str | None = None, where: str = "purposes.toml") -> Purposes:
        if text is None:
            text = resources.files("access").joinpath("purposes.toml").read_text(encoding="utf-8")
        try:
            data = tomllib.loads(text)
        except tomllib.TOMLDecodeError as exc:
            raise AccessConfigError(f"{where}: {exc}") from exc
        raw = data.get("purposes")
        if not isinstance(raw, dict) or not raw:
            raise AccessConfigError(f"{where}: needs [purposes.*] tables")
        out: dict[str, Purpose] = {}
        for name, spec in raw.items():
            if not isinstance(spec, dict) or set(spec) != {
                "description",
                "requires_consent",
                "requires_justification",
            }:
                raise AccessConfigError(
                    f"{where}: {name} needs exactly description, requires_consent, "
                    "requires_justification"
                )
            if not all(
                isinstance(spec[k], bool) for k in ("requires_consent", "requires_justification")
            ):
                raise AccessConfigError(f"{where}: {name}: flags must be true or false")
            out[name] = Purpose(
                name,
                str(spec["description"]),
                spec["requires_consent"],
                spec["requires_justification"],
            )
        return cls(out)
