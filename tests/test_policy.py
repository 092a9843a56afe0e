"""The shipped policy against DESIGN.md's default-roles table, exhaustively."""

from __future__ import annotations

import itertools

import pytest

from access.errors import AccessConfigError
from access.policy import (
    ACTIONS,
    NO_PURPOSE,
    PURPOSELESS,
    WHOLE_SUBJECT,
    PolicyEngine,
    Rule,
    default_policy,
)
from access.purposes import Purposes
from vault.schema import Schema

SCHEMA = Schema.load()
CATEGORY = {name: spec.category for name, spec in SCHEMA.fields.items()}
FIELDS = sorted(CATEGORY)
PURPOSES = Purposes.load()
ALL_PURPOSES = set(PURPOSES.names)
SAR_LC = {"subject_access_request", "legal_compliance"}
REG = {"account_registration", "identity_verification"}
EVERY_CATEGORY = set(CATEGORY.values())
ANY = {"*"}

# DESIGN.md "Default roles", re-encoded here independently of access/policy.csv:
# role -> [(action, categories or field names or ANY, purposes)].
GRANTS: dict[str, list[tuple[str, set[str], set[str]]]] = {
    "registration-service": [
        ("write", {"basic", "identity", "biometric", "online", "device"}, REG),
        ("detokenize", {"identity"}, REG),
        ("correct", {"basic", "online", "device"}, {"account_registration"}),
        ("match", {"biometric"}, {"identity_verification"}),
        ("consent_write", ANY, {"service_use", "account_registration", "identity_verification"}),
    ],
    "checkout-service": [
        ("write", {"financial", "basic", "third_party"}, {"order_fulfillment"}),
        ("correct", {"financial", "third_party"}, {"order_fulfillment"}),
        (
            "detokenize",
            {"financial", "third_party", "full_name", "address", "phone"},
            {"order_fulfillment"},
        ),
    ],
    "recommendation-service": [
        ("write", {"browsing"}, {"personalization"}),
        ("correct", {"browsing"}, {"personalization"}),
        ("detokenize", {"browsing"}, {"personalization"}),
    ],
    "fraud-service": [
        ("detokenize", {"device", "online"}, {"fraud_prevention"}),
        ("read_masked", {"financial"}, {"fraud_prevention"}),
    ],
    "support-agent": [
        ("read_masked", EVERY_CATEGORY - {"biometric"}, {"customer_support"}),
        ("reveal", {"basic", "identity"}, {"customer_support"}),
        ("correct", {"basic", "identity"}, {"customer_support"}),
        ("break_glass", ANY, {"emergency"}),
        ("read_masked", {"basic"}, {"emergency"}),
        ("reveal", {"basic"}, {"emergency"}),
    ],
    "privacy-officer": [
        ("read_masked", ANY, SAR_LC),
        ("export", ANY, SAR_LC),
        ("disclose", ANY, {"legal_compliance"}),
        ("shred", ANY, SAR_LC),
        ("attributes", ANY, SAR_LC),
        ("restrict", ANY, SAR_LC),
        ("hold", ANY, {"legal_compliance"}),
        ("consent_write", ANY, ALL_PURPOSES),
        ("transfers", ANY, {NO_PURPOSE}),
    ],
    "approver": [("approve", {"identity", "financial"}, {"customer_support"})],
    "auditor": [("audit_read", ANY, {NO_PURPOSE})],
    "admin": [("admin", ANY, {NO_PURPOSE})],
}
SUBJECT_WIDE = {
    "export",
    "disclose",
    "shred",
    "consent_write",
    "attributes",
    "restrict",
    "hold",
    "break_glass",
    "transfers",
    "audit_read",
    "admin",
}


def globally_denied(obj: str, action: str, purpose: str) -> bool:
    """DESIGN.md: nobody reveals or detokenizes biometric data; analytics never gets plaintext."""
    if action in ("detokenize", "reveal") and obj != WHOLE_SUBJECT and CATEGORY[obj] == "biometric":
        return True
    return purpose == "analytics" and action in ("detokenize", "reveal", "export")


def expected(role: str, obj: str, action: str, purpose: str) -> bool:
    if globally_denied(obj, action, purpose):
        return False
    for act, objects, purposes in GRANTS[role]:
        if act != action or purpose not in purposes:
            continue
        if objects == ANY:
            return True
        if obj != WHOLE_SUBJECT and (obj in objects or CATEGORY[obj] in objects):
            return True
    return False


@pytest.fixture(scope="module")
def engine() -> PolicyEngine:
    principals = {f"svc:{role}": [role] for role in GRANTS}
    return PolicyEngine(default_policy(), principals, CATEGORY, PURPOSES)


def test_every_role_field_action_purpose(engine: PolicyEngine) -> None:
    mismatches = []
    checked = 0
    for role, action in itertools.product(GRANTS, ACTIONS):
        objects = [WHOLE_SUBJECT] if action in SUBJECT_WIDE else FIELDS
        purposes = [NO_PURPOSE] if action in PURPOSELESS else sorted(ALL_PURPOSES)
        for obj, purpose in itertools.product(objects, purposes):
            got = engine.enforce(f"svc:{role}", obj, action, purpose)
            checked += 1
            if got.allowed != expected(role, obj, action, purpose):
                mismatches.append((role, obj, action, purpose, got))
            if got.allowed:
                assert got.rule and got.rule.endswith("allow")
    assert mismatches == []
    field_level = (len(ACTIONS) - len(SUBJECT_WIDE)) * len(FIELDS) * len(ALL_PURPOSES)
    # export, disclose, shred, consent_write, attributes, restrict, hold, break_glass;
    # transfers, audit_read, admin
    subject_wide = 8 * len(ALL_PURPOSES) + 3
    assert checked == len(GRANTS) * (field_level + subject_wide) == 18837


@pytest.mark.parametrize(
    ("role", "field", "action", "purpose", "allowed"),
    [
        ("support-agent", "face_template", "reveal", "customer_support", False),
        ("support-agent", "voiceprint", "read_masked", "customer_support", False),
        ("support-agent", "passport_number", "reveal", "customer_support", True),
        ("checkout-service", "passport_number", "detokenize", "order_fulfillment", False),
        ("checkout-service", "id_card_number", "read_masked", "order_fulfillment", False),
        ("checkout-service", "card_number", "detokenize", "order_fulfillment", True),
        ("checkout-service", "email", "detokenize", "order_fulfillment", False),
        ("recommendation-service", "browsing_history", "detokenize", "personalization", True),
        ("registration-service", "face_template", "detokenize", "identity_verification", False),
    ],
)
def test_named_denials_and_grants(
    engine: PolicyEngine, role: str, field: str, action: str, purpose: str, allowed: bool
) -> None:
    assert engine.enforce(f"svc:{role}", field, action, purpose).allowed is allowed


def test_explicit_deny_names_its_rule(engine: PolicyEngine) -> None:
    match = engine.enforce("svc:support-agent", "face_template", "reveal", "customer_support")
    assert match.rule == "p, *, biometric, reveal, *, deny"
    match = engine.enforce("svc:checkout-service", "card_number", "detokenize", "analytics")
    assert match.rule == "p, *, *, detokenize, analytics, deny"
    assert engine.enforce("svc:nobody", "email", "reveal", "customer_support").rule is None


def test_deny_wins_whatever_the_order() -> None:
    rules = [
        Rule("support-agent", "biometric", "reveal", "customer_support", "allow"),
        *default_policy(),
    ]
    engine = PolicyEngine(rules, {"user:a": ["support-agent"]}, CATEGORY, PURPOSES)
    assert not engine.enforce("user:a", "face_template", "reveal", "customer_support").allowed


def test_category_grouping_comes_from_the_schema(engine: PolicyEngine) -> None:
    assert engine.field_categories == CATEGORY


@pytest.mark.parametrize(
    "rule",
    [
        Rule("x", "basic", "fly", "customer_support", "allow"),
        Rule("x", "basic", "reveal", "world_domination", "allow"),
        Rule("x", "nonsense", "reveal", "customer_support", "allow"),
        Rule("x", "basic", "reveal", "customer_support", "maybe"),
    ],
)
def test_bad_rules_are_rejected(rule: Rule) -> None:
    with pytest.raises(AccessConfigError):
        PolicyEngine([rule], {}, CATEGORY, PURPOSES)


def test_decision_cache_hits(engine: PolicyEngine) -> None:
    before = engine.hits
    for _ in range(10):
        engine.enforce("svc:support-agent", "email", "reveal", "customer_support")
    assert engine.hits >= before + 9
