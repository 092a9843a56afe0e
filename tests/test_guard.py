"""Access control wired into every data path, over every database x key provider."""

from __future__ import annotations

from dataclasses import dataclass

import pytest
from sqlalchemy import text

from access.audit import AuditLog
from access.errors import (
    AuditUnavailable,
    AuthenticationFailed,
    ConsentRequired,
    Forbidden,
    InvalidRequest,
    JustificationRequired,
    UnknownPurpose,
)
from access.events import Caller
from access.guard import GuardedVault
from access.policy import Rule
from access.purposes import Justification
from access.runtime import Runtime, compose
from keys.provider import KeyBackend
from tests.conftest import Database
from tests.helpers import (
    ALICE,
    ALL_ROLES,
    GUARDIAN,
    GUARDIAN_CONSENTS,
    SENSITIVE_CONSENTS,
    approve_reveal,
    leaked,
)
from vault.errors import KeyProviderUnavailable, SubjectShredded, ValidationError
from vault.receipts import verify_receipt
from vault.results import TokenizeRecord

JUST = Justification("CS-1234", "customer asked to confirm their passport number")


@dataclass
class World:
    guard: GuardedVault
    rt: Runtime
    audit: AuditLog
    keys: dict[str, str]
    backend: KeyBackend

    def caller(self, role: str) -> Caller:
        return Caller(f"svc:{role}", request_id=f"req-{role}")


@pytest.fixture
def world(database: Database, provider: KeyBackend) -> World:
    rt = compose(database.engine, provider, checkpoint_every=5)
    assert rt.policy.seed_default()
    assert not rt.policy.seed_default()  # idempotent
    keys = {role: rt.principals.create(f"svc:{role}", [role])[1] for role in ALL_ROLES}
    return World(rt.guard, rt, rt.audit, keys, provider)


def audit_text(database: Database) -> bytes:
    with database.engine.connect() as conn:
        rows = conn.execute(text("SELECT * FROM audit_events")).all()
    return repr(rows).encode()


def register(world: World, **kw: object) -> str:
    fields = {
        k: v
        for k, v in ALICE.items()
        if k in ("full_name", "email", "phone", "passport_number", "face_template")
    }
    kw.setdefault("consents", GUARDIAN_CONSENTS if kw.get("is_minor") else SENSITIVE_CONSENTS)
    created = world.guard.create_subject(
        world.caller("registration-service"),
        "account_registration",
        fields,
        **kw,  # type: ignore[arg-type]
    )
    return created.subject_id


# -- writes ------------------------------------------------------------------------------


def test_denied_write_stores_nothing_and_is_audited(world: World, database: Database) -> None:
    events = len(world.audit.events(limit=1000))
    with pytest.raises(Forbidden, match="card_number"):
        world.guard.create_subject(
            world.caller("registration-service"),
            "account_registration",
            {"email": "a@example.com", "card_number": ALICE["card_number"]},
        )
    with database.engine.connect() as conn:
        assert conn.execute(text("SELECT count(*) FROM subjects")).scalar_one() == 0
    last = world.audit.events(limit=1)[0]
    assert len(world.audit.events(limit=1000)) == events + 1
    assert last["decision"] == "partial" and last["outcome"]["card_number"]["reason"] == "forbidden"


def test_tokenize_batch_answers_per_item(world: World) -> None:
    sid = register(world, external_id="ext-1")
    results = world.guard.tokenize(
        world.caller("checkout-service"),
        "order_fulfillment",
        [
            TokenizeRecord(fields={"card_number": ALICE["card_number"]}, subject_id=sid),
            TokenizeRecord(fields={"passport_number": "X1234567"}, subject_id=sid),
            TokenizeRecord(
                fields={"card_number": ALICE["card_number"]},
                subject_id="00000000-0000-4000-8000-000000000000",
            ),
        ],
    )
    assert results[0].tokens and results[1].error == "forbidden" and results[2].error == "not_found"


# -- detokenize and redaction ------------------------------------------------------------


def test_detokenize_redaction_per_role(world: World) -> None:
    sid = register(world)
    card = world.guard.put_fields(
        world.caller("checkout-service"),
        sid,
        "order_fulfillment",
        {"card_number": ALICE["card_number"], "recipient_name": "R Q"},
    )["card_number"]
    checkout = world.guard.detokenize(world.caller("checkout-service"), "order_fulfillment", [card])
    assert checkout[0].value == ALICE["card_number"] and checkout[0].redaction == "plain"
    fraud = world.guard.detokenize(world.caller("fraud-service"), "fraud_prevention", [card])
    assert fraud[0].value == "************1111" and fraud[0].redaction == "masked"
    analytics = world.guard.detokenize(world.caller("checkout-service"), "analytics", [card])
    assert (
        analytics[0].value is None and analytics[0].error == "not_found"
    )  # no right: looks made up (issue 17)


def test_detokenize_batch_in_order_with_errors(world: World) -> None:
    sid = register(world)
    tokens = world.guard.put_fields(
        world.caller("checkout-service"),
        sid,
        "order_fulfillment",
        {"card_number": ALICE["card_number"]},
    )
    stored = world.rt.vault.masked_view(sid).fields  # registration stored these already
    tokens.update({name: str(stored[name].token) for name in ("email", "full_name")})
    asked = [tokens["email"], "tok_" + "n" * 32, tokens["card_number"], "junk", tokens["full_name"]]
    results = world.guard.detokenize(world.caller("checkout-service"), "order_fulfillment", asked)
    assert [r.token for r in results] == asked
    assert [r.error for r in results] == ["not_found", "not_found", None, "invalid", None]
    assert results[0].value is None


# -- justification ----------------------------------------------------------------------


@pytest.mark.parametrize(
    "justification",
    [
        None,
        Justification("", "reason"),
        Justification("CS-1234", "  "),
        Justification("not a ticket", "reason"),
        Justification("cs-12", "reason"),
    ],
)
def test_reveal_without_valid_justification(
    world: World, database: Database, justification: Justification | None
) -> None:
    sid = register(world)
    with pytest.raises(JustificationRequired):
        world.guard.reveal(
            world.caller("support-agent"),
            sid,
            "customer_support",
            ["passport_number"],
            justification,
        )
    event = world.audit.events(limit=1)[0]
    assert event["decision"] == "deny"
    assert event["outcome"]["passport_number"]["reason"] == "justification_required"


def test_reveal_with_justification_and_biometric_refusal(world: World, database: Database) -> None:
    sid = register(world)
    approve_reveal(world.rt, world.caller("support-agent"), sid, ["passport_number"], JUST)
    values, seq = world.guard.reveal(
        world.caller("support-agent"), sid, "customer_support", ["passport_number"], JUST
    )
    assert values == {"passport_number": ALICE["passport_number"]}
    event = world.audit.events(limit=1)[0]
    assert event["seq"] == seq and event["justification"] == {
        "ticket": "CS-1234",
        "reason": JUST.reason,
    }
    with pytest.raises(Forbidden, match="face_template"):
        world.guard.reveal(
            world.caller("support-agent"), sid, "customer_support", ["face_template"], JUST
        )
    assert world.audit.events(limit=1)[0]["outcome"]["face_template"]["rule"] == (
        "p, *, biometric, reveal, *, deny"
    )
    for value in ALICE.values():
        assert not leaked(audit_text(database), value)


def test_support_masked_view_leaves_biometrics_out(world: World) -> None:
    sid = register(world)
    view = world.guard.masked_view(world.caller("support-agent"), sid, "customer_support", JUST)
    assert "face_template" not in view.fields
    assert view.fields["email"].masked == "z***@example.org"
    # Masked records need no justification; plaintext does.
    unjustified = world.guard.masked_view(world.caller("support-agent"), sid, "customer_support")
    assert unjustified.fields == view.fields


# -- consent -----------------------------------------------------------------------------


def _browse(world: World, sid: str) -> str:
    # Written with consent in place, then the consent state is varied.
    return world.guard.put_fields(
        world.caller("recommendation-service"),
        sid,
        "personalization",
        {"browsing_history": "/shoes,/umbrellas"},
    )["browsing_history"]


def _consent(world: World, sid: str, **kw: object) -> None:
    args = {"granted": True, "given_by": "subject"} | kw
    if args["given_by"] == "guardian":
        args |= GUARDIAN
    world.guard.set_consent(world.caller("privacy-officer"), sid, "personalization", **args)  # type: ignore[arg-type]


def test_recommendation_needs_consent(world: World) -> None:
    sid = register(world)
    with pytest.raises(ConsentRequired):
        _browse(world, sid)
    _consent(world, sid)
    token = _browse(world, sid)
    read = lambda: world.guard.detokenize(  # noqa: E731
        world.caller("recommendation-service"), "personalization", [token]
    )[0]
    assert read().value == "/shoes,/umbrellas"

    _consent(world, sid, granted=False)  # withdrawn
    assert read().error == "consent_required" and read().value is None

    _consent(world, sid, policy_version="2023-06")  # an older policy edition: re-consent needed
    assert read().error == "consent_required"

    _consent(world, sid)
    assert read().value == "/shoes,/umbrellas"


def test_minor_needs_guardian_consent(world: World) -> None:
    sid = register(world, is_minor=True)
    _consent(world, sid, given_by="subject")
    with pytest.raises(ConsentRequired):
        _browse(world, sid)
    _consent(world, sid, given_by="guardian")
    token = _browse(world, sid)
    result = world.guard.detokenize(
        world.caller("recommendation-service"), "personalization", [token]
    )[0]
    assert result.value == "/shoes,/umbrellas"


def test_batch_decides_consent_per_subject(world: World) -> None:
    """One batch, consents read together: each token still gets its own subject's answer."""
    adult, withdrawn, minor_self, minor_guarded = (
        register(world),
        register(world),
        register(world, is_minor=True),
        register(world, is_minor=True),
    )
    tokens = {}
    for sid, given_by in (
        (adult, "subject"),
        (withdrawn, "subject"),
        (minor_self, "guardian"),
        (minor_guarded, "guardian"),
    ):
        _consent(world, sid, given_by=given_by)
        tokens[sid] = _browse(world, sid)
    _consent(world, withdrawn, granted=False)
    _consent(world, minor_self, given_by="subject")  # a minor's own consent does not count
    order = [adult, withdrawn, minor_self, minor_guarded, adult]
    results = world.guard.detokenize(
        world.caller("recommendation-service"), "personalization", [tokens[s] for s in order]
    )
    assert [r.value or r.error for r in results] == [
        "/shoes,/umbrellas",
        "consent_required",
        "consent_required",
        "/shoes,/umbrellas",
        "/shoes,/umbrellas",
    ]
    event = world.audit.events(limit=1)[0]
    assert [event["outcome"][str(i)]["fields"]["browsing_history"]["reason"] for i in range(5)] == [
        None,
        "consent_required",
        "consent_required",
        None,
        None,
    ]


def test_consent_write_is_checked_against_its_purpose(world: World) -> None:
    sid = register(world)
    with pytest.raises(Forbidden):
        world.guard.set_consent(
            world.caller("support-agent"), sid, "personalization", granted=True, given_by="subject"
        )
    with pytest.raises(UnknownPurpose):
        world.guard.set_consent(
            world.caller("privacy-officer"), sid, "mind_reading", granted=True, given_by="subject"
        )
    with pytest.raises(InvalidRequest):
        world.guard.set_consent(
            world.caller("privacy-officer"),
            sid,
            "personalization",
            granted=True,
            given_by="neighbour",
        )


def test_unknown_purpose_is_an_error(world: World) -> None:
    sid = register(world)
    with pytest.raises(UnknownPurpose):
        world.guard.masked_view(world.caller("support-agent"), sid, "curiosity", JUST)


# -- export, shred, audit ------------------------------------------------------------------


def test_export_and_shred_by_privacy_officer(world: World, database: Database) -> None:
    sid = register(world)
    _consent(world, sid)
    officer = world.caller("privacy-officer")
    with pytest.raises(Forbidden):
        world.guard.export(world.caller("support-agent"), sid, "subject_access_request")
    data = world.guard.export(officer, sid, "subject_access_request")
    assert data["fields"]["email"]["value"] == ALICE["email"]
    assert data["consents"][-1]["purpose"] == "personalization"
    assert {c["purpose"] for c in data["consents"]} >= {"sensitive:identity"}  # at registration
    assert any(e["action"] == "export" for e in data["access_history"])
    with pytest.raises(Forbidden):
        world.guard.shred(world.caller("support-agent"), sid, "customer_support", JUST)
    receipt = world.guard.shred(officer, sid, "subject_access_request")
    assert verify_receipt(receipt.to_dict(), world.backend.signing_public_key())
    assert world.rt.consents.of(sid) == []
    assert world.audit.events(limit=1)[0]["decision"] == "completed"
    with pytest.raises(SubjectShredded):
        world.guard.export(officer, sid, "subject_access_request")


def test_audit_read_needs_the_auditor_role(world: World) -> None:
    register(world)
    with pytest.raises(Forbidden):
        world.guard.audit_events(world.caller("support-agent"))
    events = world.guard.audit_events(world.caller("auditor"), limit=3)
    assert events[0]["action"] == "audit_read"
    assert world.guard.audit_verify(world.caller("auditor")).ok


def test_every_decision_is_audited_and_the_chain_verifies(world: World) -> None:
    sid = register(world)
    before = len(world.audit.events(limit=1000))
    world.guard.masked_view(world.caller("support-agent"), sid, "customer_support", JUST)
    with pytest.raises(Forbidden):
        world.guard.masked_view(world.caller("checkout-service"), sid, "customer_support", JUST)
    after = world.audit.events(limit=1000)
    assert len(after) == before + 2
    assert [e["decision"] for e in after[:2]] == ["deny", "partial"]
    # Every decision names its request (grant changes made while setting up are operator events).
    assert all(e["request_id"].startswith("req-") for e in after if e["decision"] != "operator")
    assert world.audit.checkpoint() == len(after)
    result = world.audit.verify()
    assert result.ok and result.checkpoints >= 1


# -- fail closed ---------------------------------------------------------------------------


def test_audit_failure_returns_no_plaintext(world: World, database: Database) -> None:
    sid = register(world)
    with database.engine.begin() as conn:
        conn.execute(text("DROP TABLE audit_events"))
    with pytest.raises(AuditUnavailable) as info:
        world.guard.reveal(
            world.caller("support-agent"), sid, "customer_support", ["passport_number"], JUST
        )
    assert ALICE["passport_number"] not in str(info.value)
    with pytest.raises(AuditUnavailable):
        world.guard.create_subject(
            world.caller("registration-service"),
            "account_registration",
            {"email": "new@example.com"},
        )
    with database.engine.connect() as conn:
        assert conn.execute(text("SELECT count(*) FROM subjects")).scalar_one() == 1


# -- policy changes and principals -------------------------------------------------------------


def test_policy_change_takes_effect_at_once_in_every_process(
    world: World, database: Database
) -> None:
    sid = register(world)
    world.guard.reveal(world.caller("support-agent"), sid, "customer_support", ["email"], JUST)
    other = compose(database.new_engine(), world.backend).policy  # another worker process
    deny = Rule("support-agent", "email", "reveal", "*", "deny")
    other.add_rules([deny])
    with pytest.raises(Forbidden):
        world.guard.reveal(world.caller("support-agent"), sid, "customer_support", ["email"], JUST)
    assert other.remove_rule(deny) == 1
    world.guard.reveal(world.caller("support-agent"), sid, "customer_support", ["email"], JUST)
    other.tx.engine.dispose()


def test_principals_keys_are_hashed_and_can_be_disabled(world: World, database: Database) -> None:
    key = world.keys["support-agent"]
    assert world.rt.principals.authenticate(key).name == "svc:support-agent"
    with database.engine.connect() as conn:
        stored = repr(conn.execute(text("SELECT * FROM principals")).all())
    assert key.split(".", 1)[1] not in stored
    for bad in (None, "", "pvk_0000000000000000." + "A" * 43, key[:-1] + "x", "Bearer " + key):
        with pytest.raises(AuthenticationFailed):
            world.rt.principals.authenticate(bad)
    world.rt.principals.disable("svc:support-agent")
    with pytest.raises(AuthenticationFailed):
        world.rt.principals.authenticate(key)
    sid = register(world)
    with pytest.raises(Forbidden):  # and its grants are gone at once
        world.guard.masked_view(world.caller("support-agent"), sid, "customer_support", JUST)
    with pytest.raises(InvalidRequest, match="unknown role"):
        world.rt.principals.create("svc:x", ["superuser"])
    with pytest.raises(InvalidRequest):
        world.rt.principals.create("Robert'); DROP TABLE", ["admin"])


def test_a_principal_disabled_in_another_process_is_refused_at_its_next_request(
    world: World, database: Database
) -> None:
    """Issue 21: verified keys are cached per worker; the cache must not outlive a change
    made by another process (it follows the policy revision every request reads)."""
    key = world.keys["support-agent"]
    assert world.rt.principals.authenticate(key).name == "svc:support-agent"
    assert world.rt.principals.authenticate(key).name == "svc:support-agent"  # cached
    with pytest.raises(AuthenticationFailed):  # the cached key id with a wrong secret
        world.rt.principals.authenticate(key[:-1] + ("x" if key[-1] != "x" else "y"))
    other = compose(database.new_engine(), world.backend)  # another worker process
    other.principals.disable("svc:support-agent")
    with pytest.raises(AuthenticationFailed):
        world.rt.principals.authenticate(key)
    other.principals.enable("svc:support-agent")
    assert world.rt.principals.authenticate(key).name == "svc:support-agent"
    other.vault.engine.dispose()


def test_a_refused_key_never_waits_on_a_policy_rebuild(
    world: World, database: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    """CI found a burst of a just-disabled key answered 503, not 401: authentication built
    the new revision's engine (and confirmed its epochs in Vault) before refusing. A
    refusal reads the row only; with the ledger unreachable it is still a refusal."""
    key = world.keys["support-agent"]
    assert world.rt.principals.authenticate(key).name == "svc:support-agent"
    other = compose(database.new_engine(), world.backend)
    other.principals.disable("svc:support-agent")
    ledger = world.rt.policy.ledger
    assert ledger is not None

    def unreachable(*_: object) -> bool:
        raise KeyProviderUnavailable("anchor store unreachable")

    monkeypatch.setattr(ledger, "superseded", unreachable)
    with pytest.raises(AuthenticationFailed):
        world.rt.principals.authenticate(key)
    with pytest.raises(KeyProviderUnavailable):  # the decision itself still fails closed
        world.rt.policy.current()
    other.vault.engine.dispose()


def test_invalid_input_is_rejected_before_any_decision(world: World, database: Database) -> None:
    events = len(world.audit.events(limit=1000))
    with pytest.raises(ValidationError) as info:
        world.guard.create_subject(
            world.caller("registration-service"),
            "account_registration",
            {"email": "not-an-email", "full_name": "Q"},
        )
    assert info.value.errors == {"email": "not_an_email"}
    assert len(world.audit.events(limit=1000)) == events
    with database.engine.connect() as conn:
        assert conn.execute(text("SELECT count(*) FROM subjects")).scalar_one() == 0


def test_consents_go_when_a_pending_shred_completes(world: World, database: Database) -> None:
    """However a shred finishes (now, or later via `shred --pending`), consents go with it."""
    sid = register(world)
    _consent(world, sid)
    assert world.rt.shredder.ledger is not None
    world.rt.shredder.ledger.publish(sid)  # decided (issue 17: only decided shreds complete)
    with database.engine.begin() as conn:  # as if Vault had been down at the shred
        conn.execute(
            text(
                "UPDATE subjects SET status='shredding', shred_requested_at=created_at WHERE id=:id"
            ),
            {"id": sid},
        )
    outcome = world.rt.shredder.complete_pending()
    assert [r.subject_id for r in outcome.completed] == [sid]
    assert world.rt.consents.of(sid) == []


def test_find_by_email_phone_and_external_id_shows_masked_views_and_audits_no_value(
    world: World, database: Database
) -> None:
    fields = {k: ALICE[k] for k in ("full_name", "email", "phone")}
    created = world.guard.create_subject(
        world.caller("registration-service"),
        "account_registration",
        fields,
        external_id="shop-find-1",
    )
    agent = world.caller("support-agent")
    for field, value in (("email", ALICE["email"]), ("phone", ALICE["phone"])):
        (view,) = world.guard.find(agent, "customer_support", field, value)
        assert view.subject_id == created.subject_id
        assert all(ALICE[name] != f.masked for name, f in view.fields.items())
    assert world.guard.find(agent, "customer_support", "email", "nobody@example.com") == []
    privacy = world.caller("privacy-officer")
    (view,) = world.guard.find(privacy, "subject_access_request", "external_id", "shop-find-1")
    assert view.subject_id == created.subject_id
    # A caller with no read right for the purpose is refused before any lookup, audited.
    with pytest.raises(Forbidden):
        world.guard.find(
            world.caller("checkout-service"), "customer_support", "email", ALICE["email"]
        )
    assert world.audit.events(limit=1)[0]["decision"] == "deny"
    audited = audit_text(database)
    assert not any(leaked(audited, v) for v in (ALICE["email"], ALICE["phone"], "shop-find-1"))
