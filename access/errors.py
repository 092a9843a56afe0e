"""The access-control error hierarchy. Only ``api/`` maps these to HTTP statuses."""

from __future__ import annotations


class AccessError(Exception):
    code = "access_error"


class AccessConfigError(AccessError):
    """Policy, purposes or model files are invalid; raised at start-up."""

    code = "config"


class UnknownPurpose(AccessError):
    """A purpose not in purposes.toml: an error, never a silent deny-all."""

    code = "unknown_purpose"


class InvalidRequest(AccessError):
    code = "invalid"


class AuthenticationFailed(AccessError):
    """Missing, malformed, unknown or disabled API key. Says nothing about which."""

    code = "unauthenticated"

    def __init__(self) -> None:
        super().__init__("authentication failed")


class Forbidden(AccessError):
    """The whole request is denied by policy (nothing stored or revealed)."""

    code = "forbidden"

    def __init__(self, message: str, reason: str = "forbidden") -> None:
        super().__init__(message)
        self.reason = reason


class PrincipalExists(AccessError):
    code = "principal_exists"


class PrincipalNotFound(AccessError):
    code = "principal_not_found"


class AuditUnavailable(AccessError):
    """The audit log could not record an event: fail closed, return no plaintext."""

    code = "audit_unavailable"


class JustificationRequired(AccessError):
    """The purpose needs a ticket reference and a reason (a 400: the request is incomplete)."""

    code = "justification_required"


class ConsentRequired(Forbidden):
    """The purpose needs the subject's (or a guardian's) current consent."""

    code = "consent_required"

    def __init__(self, message: str) -> None:
        super().__init__(message, reason="consent_required")
