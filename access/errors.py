"""The access-control error hierarchy. Only ``api/`` maps these to HTTP statuses."""

from __future__ import annotations

from typing import ClassVar, Literal

# The stable codes callers see (``api/`` maps each to an HTTP status).
AccessErrorCode = Literal[
    "access_error",
    "config",
    "unknown_purpose",
    "invalid",
    "unauthenticated",
    "forbidden",
    "consent_required",
    "justification_required",
    "principal_exists",
    "principal_not_found",
    "audit_unavailable",
    "rate_limited",
    "grants_tampered",
    "reveal_budget_spent",
    "search_budget_spent",
    "ticket_rejected",
    "ticket_system_unavailable",
    "identity_provider_unavailable",
    "restricted",
    "guardian_consent_required",
    "transfer_basis_required",
    "not_found",
    "break_glass_required",
    "read_budget_spent",
    "no_processing_agreement",
    "approval_required",
    "self_approval",
    "approval_closed",
]


class AccessError(Exception):
    code: ClassVar[AccessErrorCode] = "access_error"


class AccessConfigError(AccessError):
    """Policy, purposes or model files are invalid; raised at start-up."""

    code: ClassVar[AccessErrorCode] = "config"


class UnknownPurpose(AccessError):
    """A purpose not in purposes.toml: an error, never a silent deny-all."""

    code: ClassVar[AccessErrorCode] = "unknown_purpose"


class InvalidRequest(AccessError):
    code: ClassVar[AccessErrorCode] = "invalid"


class AuthenticationFailed(AccessError):
    """Missing, malformed, unknown or disabled API key. Says nothing about which."""

    code: ClassVar[AccessErrorCode] = "unauthenticated"

    def __init__(self) -> None:
        super().__init__("authentication failed")


class Forbidden(AccessError):
    """The whole request is denied by policy (nothing stored or revealed)."""

    code: ClassVar[AccessErrorCode] = "forbidden"


class PrincipalExists(AccessError):
    code: ClassVar[AccessErrorCode] = "principal_exists"


class PrincipalNotFound(AccessError):
    code: ClassVar[AccessErrorCode] = "principal_not_found"


class AuditUnavailable(AccessError):
    """The audit log could not record an event: fail closed, return no plaintext."""

    code: ClassVar[AccessErrorCode] = "audit_unavailable"


class JustificationRequired(AccessError):
    """The purpose needs a ticket reference and a reason (a 400: the request is incomplete)."""

    code: ClassVar[AccessErrorCode] = "justification_required"


class ConsentRequired(Forbidden):
    """The purpose needs the subject's (or a guardian's) current consent."""

    code: ClassVar[AccessErrorCode] = "consent_required"


class Throttled(AccessError):
    """A budget is spent: retry after ``retry_after`` seconds (the API sends Retry-After)."""

    code: ClassVar[AccessErrorCode] = "rate_limited"

    def __init__(self, message: str, retry_after: int) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class Restricted(Forbidden):
    """The subject has restricted (or objected to) processing for this purpose (§5)."""

    code: ClassVar[AccessErrorCode] = "restricted"


class GuardianConsentRequired(Forbidden):
    """The subject is a minor and no guardian's consent for this purpose (or for general
    ``service_use``) is in force (policy §6)."""

    code: ClassVar[AccessErrorCode] = "guardian_consent_required"


class TransferBasisRequired(Forbidden):
    """The caller is in another region than the subject and no transfer basis in force
    covers this subject, purpose and destination (policy §7)."""

    code: ClassVar[AccessErrorCode] = "transfer_basis_required"


class BreakGlassRequired(Forbidden):
    """The emergency purpose without an open break-glass grant of this principal (§2(2))."""

    code: ClassVar[AccessErrorCode] = "break_glass_required"


class NoProcessingAgreement(Forbidden):
    """The caller is a processor with no processing agreement on record (§3(1))."""

    code: ClassVar[AccessErrorCode] = "no_processing_agreement"


class ApprovalRequired(Forbidden):
    """Four-eyes (issue 20): the reveal waits for a second person's approval; a request
    was filed (``approval_id``) and the approvers were told."""

    code: ClassVar[AccessErrorCode] = "approval_required"

    def __init__(self, message: str, approval_id: int | None = None) -> None:
        super().__init__(message)
        self.approval_id = approval_id


class SelfApproval(Forbidden):
    """Four-eyes: nobody approves or rejects their own request."""

    code: ClassVar[AccessErrorCode] = "self_approval"


class ApprovalClosed(AccessError):
    """Four-eyes: the request was already approved, rejected, used or has expired."""

    code: ClassVar[AccessErrorCode] = "approval_closed"


class NotFound(AccessError):
    """A record of the access layer (e.g. a transfer basis) that does not exist."""

    code: ClassVar[AccessErrorCode] = "not_found"


class TooManyFailedLookups(Throttled):
    """The caller's budget of failed token lookups is spent."""

    code: ClassVar[AccessErrorCode] = "rate_limited"


class RevealBudgetSpent(Throttled):
    """The person has revealed as many subjects for this purpose today as the budget allows
    (issue 18): an alert, not a routine answer."""

    code: ClassVar[AccessErrorCode] = "reveal_budget_spent"


class ReadBudgetSpent(Throttled):
    """The principal has read as many plaintext fields in this minute or day as its
    role's budget allows (issue 20, incident response): an alert, not a routine answer."""

    code: ClassVar[AccessErrorCode] = "read_budget_spent"


class SearchBudgetSpent(Throttled):
    """Too many exact-match searches by this person in the current minute (issue 18)."""

    code: ClassVar[AccessErrorCode] = "search_budget_spent"


class TicketRejected(Forbidden):
    """The ticket system says the justification's ticket is not open or not this person's."""

    code: ClassVar[AccessErrorCode] = "ticket_rejected"


class IdentityProviderUnavailable(AccessError):
    """The issuer of service tokens could not give its keys: no sign-in (fail closed)."""

    code: ClassVar[AccessErrorCode] = "identity_provider_unavailable"


class TicketSystemUnavailable(AccessError):
    """The ticket system did not answer: no reveal without its word (fail closed)."""

    code: ClassVar[AccessErrorCode] = "ticket_system_unavailable"


class GrantsTampered(AccessError):
    """The policy's rule set fails its tag (a rule deleted or changed outside the vault):
    no decision is made on it until an operator has looked (``pii-vault audit grants``)."""

    code: ClassVar[AccessErrorCode] = "grants_tampered"
