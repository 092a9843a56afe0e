"""Issue 17 (1): someone with write access to the database, but not the service's Vault
token, tries to grant themselves access with SQL. Each attack as the issue reported it,
over HTTP against real OpenBao, on SQLite and PostgreSQL: every one failed on the code
before grant tags (the forged key exported plaintext, the edited role exported, the
inserted rule took effect, the deleted deny rule widened access)."""

from __future__ import annotations

import hashlib
import secrets

from sqlalchemy import text

from access.grants import GrantSeal
from tests.api_support import Api

EXPORT = "/v1/subjects/{}/export?purpose=subject_access_request"


def _sql(api: Api, statement: str, **params: object) -> None:
    with api.database.engine.begin() as conn:
        conn.execute(text(statement), params)


def test_a_principal_inserted_with_sql_authenticates_no_one(api: Api) -> None:
    sid, _ = api.register()
    key_id, secret = secrets.token_hex(8), secrets.token_urlsafe(32)
    _sql(
        api,
        "INSERT INTO principals (name, key_id, key_hash, roles, disabled, created_at)"
        " VALUES ('svc:mallory', :kid, :h, 'privacy-officer', false, CURRENT_TIMESTAMP)",
        kid=key_id,
        h=hashlib.sha256(secret.encode()).hexdigest(),
    )
    before = api.runtime.policy.seal.forged["principal"]
    r = api.client.get(
        EXPORT.format(sid), headers={"Authorization": f"Bearer pvk_{key_id}.{secret}"}
    )
    assert r.status_code == 401 and r.json["code"] == "unauthenticated"
    assert "@" not in r.get_data(as_text=True)
    assert api.runtime.policy.seal.forged["principal"] > before
    metrics = api.client.get("/metrics").get_data(as_text=True)
    assert 'pii_vault_forged_grants_total{kind="principal"}' in metrics
    # `pii-vault audit grants` lists it (the same check, over the rows).
    assert any("svc:mallory" in f for f in api.runtime.policy.findings())
    # Nor does the forged row give anyone its role through the policy engine.
    assert "svc:mallory" not in api.runtime.policy.current().roles
    assert (
        api.runtime.policy.current().enforce("svc:mallory", "email", "export", "*").allowed is False
    )


def test_a_role_added_with_sql_grants_nothing(api: Api) -> None:
    sid, _ = api.register()
    _sql(
        api,
        "UPDATE principals SET roles = 'checkout-service,privacy-officer'"
        " WHERE name = 'svc:checkout-service'",
    )
    r = api.client.get(EXPORT.format(sid), headers=api.h("checkout-service"))
    assert r.status_code == 401
    # Unchanged principals still work: one forged row does not take the service down.
    r = api.client.get(EXPORT.format(sid), headers=api.h("privacy-officer"))
    assert r.status_code == 200


def test_a_disabled_principal_re_enabled_with_sql_stays_out(api: Api) -> None:
    _sql(api, "UPDATE principals SET disabled = false WHERE name = 'svc:gone'")
    r = api.client.get("/v1/audit", headers={"Authorization": f"Bearer {api.keys['disabled']}"})
    assert r.status_code == 401


def test_a_policy_rule_inserted_with_sql_takes_no_effect(api: Api) -> None:
    sid, _ = api.register()
    _sql(
        api,
        "INSERT INTO policy_rules (ptype, v0, v1, v2, v3, v4)"
        " VALUES ('p', 'checkout-service', '*', 'export', '*', 'allow')",
    )
    r = api.client.get(EXPORT.format(sid), headers=api.h("checkout-service"))
    assert r.status_code == 403
    assert api.runtime.policy.seal.forged["rule"] >= 1


def test_a_deny_rule_deleted_with_sql_fails_every_decision_closed(api: Api) -> None:
    _sid, tokens = api.register()
    _sql(api, "DELETE FROM policy_rules WHERE v1 = 'biometric' AND v4 = 'deny'")
    r = api.client.post(
        "/v1/detokenize",
        headers=api.h("everything"),
        json={"purpose": "customer_support", "tokens": [tokens["face_template"]]},
    )
    assert r.status_code == 503 and r.json["code"] == "grants_tampered"
    assert "values" not in r.json


def test_api_key_digests_are_keyed(api: Api) -> None:
    """A dump holds no digest anyone can test a guess against without the grant key."""
    key = api.keys["auditor"]
    secret = key.split(".", 1)[1]
    with api.database.engine.connect() as conn:
        stored = conn.execute(
            text("SELECT key_hash FROM principals WHERE name = 'svc:auditor'")
        ).scalar_one()
    assert stored != hashlib.sha256(secret.encode()).hexdigest()
    assert stored.startswith("k1:")
    other = GrantSeal(lambda: b"\x00" * 32)
    assert other.key_digest(secret) != stored
