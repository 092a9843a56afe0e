"""The client: a method per API operation, typed results, problem+json as exceptions.

Batches larger than the server's ``PII_VAULT_MAX_BATCH`` are sent in chunks (results in
order); 503 and 429 are retried with backoff — honouring ``Retry-After`` — only for calls
that are idempotent (reads, PUT, DELETE, detokenize): a create, tokenize or reveal that
failed is reported, never repeated behind the caller's back. One ``requests.Session``
per client (connection pooling); a timeout on every call.

Past 400 lines (about 420): one method per operation of one API (29), each a few lines;
split by resource they would be one class in several files for no reader's benefit.
"""

from __future__ import annotations

import base64
import random
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

import requests

from pii_vault_client.errors import PiiVaultError, TransportError, error_for
from pii_vault_client.models import (
    AuditVerification,
    CreatedSubject,
    DetokenizeResult,
    FieldView,
    Receipt,
    SubjectView,
    TokenizeResult,
    item_error,
)

Justification = Mapping[str, str]  # {"ticket": "CS-1234", "reason": "..."}
_RETRIED = frozenset({429, 503})


class Client:
    """``api_key`` (``pvk_...``) or ``token`` (an OIDC access token), or ``token_provider``
    (called for each request: a workload identity that refreshes itself)."""

    def __init__(
        self,
        base_url: str,
        *,
        api_key: str | None = None,
        token: str | None = None,
        token_provider: Callable[[], str] | None = None,
        timeout: float = 10.0,
        retries: int = 3,
        backoff: float = 0.25,
        max_batch: int = 500,
        session: requests.Session | None = None,
    ) -> None:
        if sum(x is not None for x in (api_key, token, token_provider)) > 1:
            raise ValueError("give one of api_key, token or token_provider")
        if max_batch < 1 or retries < 0 or timeout <= 0:
            raise ValueError("max_batch >= 1, retries >= 0 and timeout > 0")
        self.base_url = base_url.rstrip("/")
        secret = api_key or token
        self._bearer = token_provider or ((lambda: secret) if secret else None)
        self.timeout, self.retries, self.backoff = timeout, retries, backoff
        self.max_batch = max_batch
        self._http = session or requests.Session()

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()

    # -- transport ------------------------------------------------------------------------

    def _request(
        self,
        method: str,
        path: str,
        *,
        json: Any = None,
        params: Mapping[str, Any] | None = None,
        idempotent: bool = False,
    ) -> Any:
        attempt = 0
        while True:
            headers = {"Accept": "application/json"}
            if self._bearer is not None:
                headers["Authorization"] = f"Bearer {self._bearer()}"
            try:
                resp = self._http.request(
                    method,
                    self.base_url + path,
                    json=json,
                    params={k: v for k, v in (params or {}).items() if v is not None},
                    headers=headers,
                    timeout=self.timeout,
                )
            except requests.RequestException as exc:
                if idempotent and attempt < self.retries:
                    attempt += 1
                    time.sleep(self._delay(attempt, None))
                    continue
                raise TransportError(0, "transport", type(exc).__name__, {}) from None
            if resp.status_code < 400:
                return resp.json() if resp.content else {}
            if idempotent and resp.status_code in _RETRIED and attempt < self.retries:
                attempt += 1
                time.sleep(self._delay(attempt, resp.headers.get("Retry-After")))
                continue
            raise self._error(resp)

    def _delay(self, attempt: int, retry_after: str | None) -> float:
        if retry_after is not None:
            try:
                return max(0.0, float(retry_after))
            except ValueError:
                pass
        return float(self.backoff * 2 ** (attempt - 1) * (0.5 + random.random()))  # noqa: S311

    @staticmethod
    def _error(resp: requests.Response) -> PiiVaultError:
        try:
            body = dict(resp.json())
        except ValueError:
            body = {"code": "http_error", "detail": resp.reason or ""}
        if resp.headers.get("Retry-After"):
            body["_retry_after"] = resp.headers["Retry-After"]
        return error_for(resp.status_code, body)

    def _chunks(self, items: Sequence[Any]) -> Iterable[Sequence[Any]]:
        for start in range(0, len(items), self.max_batch):
            yield items[start : start + self.max_batch]

    # -- subjects ---------------------------------------------------------------------------

    def create_subject(
        self,
        purpose: str,
        fields: Mapping[str, str],
        *,
        external_id: str | None = None,
        region: str | None = None,
        is_minor: bool | None = None,
        consents: Sequence[Mapping[str, Any]] = (),
        justification: Justification | None = None,
    ) -> CreatedSubject:
        body = _body(
            purpose=purpose,
            fields=dict(fields),
            external_id=external_id,
            region=region,
            is_minor=is_minor,
            consents=[dict(c) for c in consents] or None,
            justification=justification,
        )
        out = self._request("POST", "/v1/subjects", json=body)
        return CreatedSubject(out["subject_id"], dict(out["tokens"]))

    def put_fields(
        self,
        subject_id: str,
        purpose: str,
        fields: Mapping[str, str],
        *,
        justification: Justification | None = None,
    ) -> dict[str, str]:
        """New or corrected values; returns the fields' tokens."""
        body = _body(purpose=purpose, fields=dict(fields), justification=justification)
        out = self._request("PATCH", f"/v1/subjects/{subject_id}/fields", json=body)
        return dict(out["tokens"])

    def set_attributes(
        self,
        subject_id: str,
        purpose: str,
        *,
        is_minor: bool | None = None,
        region: str | None = None,
        justification: Justification | None = None,
    ) -> dict[str, Any]:
        body = _body(purpose=purpose, is_minor=is_minor, region=region, justification=justification)
        return dict(self._request("PATCH", f"/v1/subjects/{subject_id}/attributes", json=body))

    def set_restriction(
        self,
        subject_id: str,
        purpose: str,
        scope: str,
        kind: str,
        *,
        justification: Justification | None = None,
    ) -> dict[str, Any]:
        """``kind``: restriction, objection or lifted; ``scope``: a purpose or ``*``."""
        body = _body(purpose=purpose, scope=scope, kind=kind, justification=justification)
        path = f"/v1/subjects/{subject_id}/restrictions"
        return dict(self._request("PUT", path, json=body, idempotent=True))

    def deactivate(
        self, subject_id: str, purpose: str, *, justification: Justification | None = None
    ) -> dict[str, Any]:
        body = _body(purpose=purpose, justification=justification)
        return dict(self._request("POST", f"/v1/subjects/{subject_id}/deactivate", json=body))

    def reactivate(
        self, subject_id: str, purpose: str, *, justification: Justification | None = None
    ) -> dict[str, Any]:
        body = _body(purpose=purpose, justification=justification)
        return dict(self._request("POST", f"/v1/subjects/{subject_id}/reactivate", json=body))

    def subject(self, subject_id: str, purpose: str) -> SubjectView:
        """The masked view."""
        out = self._request(
            "GET", f"/v1/subjects/{subject_id}", params={"purpose": purpose}, idempotent=True
        )
        return SubjectView(
            out["subject_id"],
            out.get("external_id"),
            out.get("region"),
            out["status"],
            {
                name: FieldView(v["category"], v["masked"], v.get("token"))
                for name, v in out["fields"].items()
            },
        )

    def reveal(
        self, subject_id: str, purpose: str, fields: Sequence[str], justification: Justification
    ) -> dict[str, str]:
        """Plaintext of ``fields`` (audited with the justification; counts on budgets)."""
        body = _body(purpose=purpose, fields=list(fields), justification=justification)
        out = self._request("POST", f"/v1/subjects/{subject_id}/reveal", json=body)
        return dict(out["values"])

    def match(
        self,
        subject_id: str,
        purpose: str,
        field: str,
        template: bytes,
        *,
        justification: Justification | None = None,
    ) -> bool:
        body = _body(
            purpose=purpose,
            field=field,
            template=base64.b64encode(template).decode("ascii"),
            justification=justification,
        )
        return bool(self._request("POST", f"/v1/subjects/{subject_id}/match", json=body)["match"])

    def export(
        self, subject_id: str, purpose: str, *, justification: Justification | None = None
    ) -> dict[str, Any]:
        params = {"purpose": purpose, **dict(justification or {})}
        path = f"/v1/subjects/{subject_id}/export"
        return dict(self._request("GET", path, params=params, idempotent=True))

    def disclose(self, subject_id: str, **body: Any) -> dict[str, Any]:
        """A disclosure to an authority (``authority``, ``instrument``, ``reference``,
        ``justification``, ``withhold_days``): its export, recorded."""
        return dict(self._request("POST", f"/v1/subjects/{subject_id}/disclosures", json=body))

    def shred(
        self, subject_id: str, purpose: str, reason: str, *, ticket: str | None = None
    ) -> Receipt:
        """Crypto-shred (idempotent: a repeat returns the same receipt)."""
        body = _body(purpose=purpose, reason=reason, ticket=ticket)
        out = self._request("DELETE", f"/v1/subjects/{subject_id}", json=body, idempotent=True)
        r = out["receipt"]
        return Receipt(
            r["subject_id"],
            r["requested_at"],
            r["shredded_at"],
            bool(r["subject_key_destroyed"]),
            bool(r["data_deleted"]),
            r["signature"],
            r["public_key"],
            dict(r),
        )

    def set_hold(
        self,
        subject_id: str,
        held: bool,
        reference: str,
        *,
        justification: Justification | None = None,
    ) -> dict[str, Any]:
        body = _body(held=held, reference=reference, justification=justification)
        return dict(
            self._request("PUT", f"/v1/subjects/{subject_id}/hold", json=body, idempotent=True)
        )

    def set_consent(
        self, subject_id: str, purpose: str, granted: bool, given_by: str, **more: Any
    ) -> dict[str, Any]:
        """``more``: policy_version, guardian_ref, verification, channel."""
        body = _body(granted=granted, given_by=given_by, **more)
        path = f"/v1/subjects/{subject_id}/consents/{purpose}"
        return dict(self._request("PUT", path, json=body, idempotent=True))

    # -- tokens ---------------------------------------------------------------------------

    def tokenize(
        self,
        purpose: str,
        records: Sequence[Mapping[str, Any]],
        *,
        justification: Justification | None = None,
    ) -> list[TokenizeResult]:
        """One result per record, in order (chunked to ``max_batch``; each chunk is one
        request: a failing chunk raises, the chunks before it are stored)."""
        out: list[TokenizeResult] = []
        for chunk in self._chunks(list(records)):
            body = _body(
                purpose=purpose, records=[dict(r) for r in chunk], justification=justification
            )
            for item in self._request("POST", "/v1/tokenize", json=body)["results"]:
                out.append(
                    TokenizeResult(
                        item.get("subject_id"),
                        dict(item.get("tokens") or {}),
                        item_error(item.get("error")),
                    )
                )
        return out

    def detokenize(
        self, purpose: str, tokens: Sequence[str], *, justification: Justification | None = None
    ) -> list[DetokenizeResult]:
        """One result per token, in order (chunked to ``max_batch``)."""
        out: list[DetokenizeResult] = []
        for chunk in self._chunks(list(tokens)):
            body = _body(purpose=purpose, tokens=list(chunk), justification=justification)
            answer = self._request("POST", "/v1/detokenize", json=body, idempotent=True)
            for item in answer["results"]:
                out.append(
                    DetokenizeResult(
                        item["token"],
                        item.get("field"),
                        item.get("value"),
                        item.get("redaction"),
                        item_error(item.get("error")),
                    )
                )
        return out

    # -- the privacy office, approvals, transfers, emergencies ------------------------------

    def break_glass(self, justification: Justification, *, minutes: int | None = None) -> Any:
        return self._request(
            "POST", "/v1/break-glass", json=_body(justification=justification, minutes=minutes)
        )

    def approvals(self, **query: Any) -> list[dict[str, Any]]:
        answer = self._request("GET", "/v1/approvals", params=query, idempotent=True)
        return list(answer.get("approvals", []))

    def approval(self, approval_id: int) -> dict[str, Any]:
        return dict(self._request("GET", f"/v1/approvals/{approval_id}", idempotent=True))

    def approve(self, approval_id: int, **body: Any) -> dict[str, Any]:
        return dict(self._request("POST", f"/v1/approvals/{approval_id}/approve", json=body))

    def reject(self, approval_id: int, **body: Any) -> dict[str, Any]:
        return dict(self._request("POST", f"/v1/approvals/{approval_id}/reject", json=body))

    def transfer_bases(self) -> list[dict[str, Any]]:
        answer = self._request("GET", "/v1/transfers", idempotent=True)
        return list(answer.get("bases", []))

    def add_transfer_basis(self, **body: Any) -> dict[str, Any]:
        return dict(self._request("POST", "/v1/transfers", json=body))

    def revoke_transfer_basis(self, basis_id: int) -> dict[str, Any]:
        return dict(self._request("POST", f"/v1/transfers/{basis_id}/revoke", json={}))

    def transfer_report(self, **query: Any) -> dict[str, Any]:
        return dict(self._request("GET", "/v1/transfers/report", params=query, idempotent=True))

    # -- audit and health -------------------------------------------------------------------

    def audit_events(
        self, *, subject_id: str | None = None, limit: int = 100
    ) -> list[dict[str, Any]]:
        params = {"subject_id": subject_id, "limit": limit}
        return list(self._request("GET", "/v1/audit", params=params, idempotent=True)["events"])

    def verify_audit(self) -> AuditVerification:
        out = self._request("GET", "/v1/audit/verify", idempotent=True)
        return AuditVerification(
            bool(out["ok"]),
            int(out["events"]),
            str(out["head"]),
            int(out["checkpoints"]),
            out.get("first_bad_seq"),
            out.get("problem"),
        )

    def healthz(self) -> dict[str, Any]:
        return dict(self._request("GET", "/healthz", idempotent=True))

    def readyz(self) -> dict[str, Any]:
        """Readiness; a 503 (not ready) raises ``Unavailable`` after the retries."""
        return dict(self._request("GET", "/readyz", idempotent=True))


def _body(**items: Any) -> dict[str, Any]:
    """The JSON body: what was given (None: left out, the server's default)."""
    return {
        k: (dict(v) if isinstance(v, Mapping) else v) for k, v in items.items() if v is not None
    }


__all__ = ["Client"]
