"""A typed Python client for the pii-vault HTTP API.

from pii_vault_client import Client
with Client("https://vault.internal", api_key=KEY) as vault:
    created = vault.create_subject("account_registration", {"email": "ada@example.com"})
    [result] = vault.detokenize("order_fulfillment", [created.tokens["email"]])
"""

from pii_vault_client.client import Client
from pii_vault_client.errors import (
    ApprovalRequired,
    Conflict,
    ConsentRequired,
    DuplicateExternalId,
    Forbidden,
    InvalidRequest,
    JustificationRequired,
    NotFound,
    PiiVaultError,
    ServerError,
    Shredded,
    TooManyRequests,
    TransportError,
    Unauthenticated,
    Unavailable,
)
from pii_vault_client.models import (
    AuditVerification,
    CreatedSubject,
    DetokenizeResult,
    FieldView,
    ItemError,
    Receipt,
    SubjectView,
    TokenizeResult,
)

__all__ = [
    "ApprovalRequired",
    "AuditVerification",
    "Client",
    "Conflict",
    "ConsentRequired",
    "CreatedSubject",
    "DetokenizeResult",
    "DuplicateExternalId",
    "FieldView",
    "Forbidden",
    "InvalidRequest",
    "ItemError",
    "JustificationRequired",
    "NotFound",
    "PiiVaultError",
    "Receipt",
    "ServerError",
    "Shredded",
    "SubjectView",
    "TokenizeResult",
    "TooManyRequests",
    "TransportError",
    "Unauthenticated",
    "Unavailable",
]
