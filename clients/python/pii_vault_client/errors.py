"""problem+json answers as exceptions, by the vault's error ``code`` (one per refusal, the
same in every answer), falling back to the HTTP status for a code this client does not
know yet. Never a value: the vault puts none in an error, and neither does this."""

from __future__ import annotations

from typing import Any


class PiiVaultError(Exception):
    """Any error answer of the vault (``status``, ``code``, ``detail``, ``request_id``)."""

    def __init__(self, status: int, code: str, detail: str, body: dict[str, Any]) -> None:
        super().__init__(f"{status} {code}: {detail}")
        self.status = status
        self.code = code
        self.detail = detail
        self.request_id: str | None = body.get("request_id")
        self.errors: dict[str, str] = dict(body.get("errors") or {})
        self.body = body


class TransportError(PiiVaultError):
    """No answer: connection refused or reset, or the timeout passed."""


class InvalidRequest(PiiVaultError):
    """400: the request is malformed or a value is invalid (``errors`` names the fields)."""


class JustificationRequired(InvalidRequest):
    """400: this purpose needs a ticket and a reason."""


class Unauthenticated(PiiVaultError):
    """401: the API key or token is missing, malformed, unknown or disabled."""


class Forbidden(PiiVaultError):
    """403: the policy refuses (a role, a purpose, a missing consent, a restriction...)."""


class ConsentRequired(Forbidden):
    """403: the subject's consent for this purpose is not on record."""


class ApprovalRequired(Forbidden):
    """403: four-eyes: a request was filed (``approval_id``); a second person approves it."""

    @property
    def approval_id(self) -> int | None:
        value = self.body.get("approval_id")
        return int(value) if value is not None else None


class NotFound(PiiVaultError):
    """404."""


class Conflict(PiiVaultError):
    """409: e.g. the external id exists already, a legal hold."""


class DuplicateExternalId(Conflict):
    """409: a subject with this external id exists."""


class Shredded(PiiVaultError):
    """410: the subject was crypto-shredded; its data is gone for good."""


class TooManyRequests(PiiVaultError):
    """429: a budget is spent; ``retry_after`` seconds until it refills."""

    @property
    def retry_after(self) -> float | None:
        value = self.body.get("_retry_after")
        return float(value) if value is not None else None


class ServerError(PiiVaultError):
    """500: e.g. ``subject_damaged`` (its key is missing in Vault)."""


class Unavailable(PiiVaultError):
    """503: a dependency (Vault, the database, the audit log) cannot do its part; nothing
    was stored or answered. Idempotent calls are retried by the client."""


_BY_CODE: dict[str, type[PiiVaultError]] = {
    "justification_required": JustificationRequired,
    "consent_required": ConsentRequired,
    "approval_required": ApprovalRequired,
    "duplicate_external_id": DuplicateExternalId,
    "shredded": Shredded,
}
_BY_STATUS: dict[int, type[PiiVaultError]] = {
    400: InvalidRequest,
    401: Unauthenticated,
    403: Forbidden,
    404: NotFound,
    409: Conflict,
    410: Shredded,
    413: InvalidRequest,
    415: InvalidRequest,
    429: TooManyRequests,
    500: ServerError,
    503: Unavailable,
}


def error_for(status: int, body: dict[str, Any]) -> PiiVaultError:
    code = str(body.get("code") or "error")
    kind = _BY_CODE.get(code) or _BY_STATUS.get(status) or PiiVaultError
    return kind(status, code, str(body.get("detail") or ""), body)
