"""What a decision may know about a subject and a request: never a value."""

from __future__ import annotations

from dataclasses import dataclass, field

from access.purposes import Purpose


@dataclass(frozen=True)
class SubjectFacts:
    """A subject as decisions see it. ``pending``: consents (topic, given_by) recorded in
    the same request that creates the subject, which count as if already stored."""

    subject_id: str
    is_minor: bool
    region: str | None = None
    pending: frozenset[tuple[str, str]] = field(default_factory=frozenset)


@dataclass(frozen=True)
class Recipient:
    """Who receives what a principal reads (policy §3(1)): an internal service or person,
    or a processor, controller, affiliate or authority, named, with its country and the
    agreement it acts under."""

    kind: str = "internal"
    name: str | None = None
    country: str | None = None
    agreement: str | None = None

    @property
    def internal(self) -> bool:
        return self.kind == "internal"

    def as_dict(self) -> dict[str, str | None]:
        return {
            "kind": self.kind,
            "name": self.name,
            "country": self.country,
            "agreement": self.agreement,
        }


@dataclass(frozen=True)
class Ask:
    """Who asks to do what, for which purpose, from where (the principal's region)."""

    principal: str
    action: str
    purpose: Purpose
    region: str | None = None
    recipient: Recipient | None = None
