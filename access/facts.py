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
class Ask:
    """Who asks to do what, for which purpose, from where (the principal's region)."""

    principal: str
    action: str
    purpose: Purpose
    region: str | None = None
