"""Issue 17 (1): someone with write access to the database, but not the service's Vault
token, tries to grant themselves access with SQL. Each attack as the issue reported it,
over HTTP against real OpenBao, on SQLite and PostgreSQL: every one failed on the code
before grant tags (the forged key exported plaintext, the edited role exported, the
inserted rule took effect, the deleted deny rule widened access)."""

from __future__ import annotations

import hashlib
import secrets

import pytest
from sqlalchemy import text

from access.errors import GrantsTampered
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


def test_enable_is_audited_and_refuses_a_row_edited_with_sql(api: Api) -> None:
    name = f"svc:comeback-{secrets.token_hex(4)}"
    _, key = api.runtime.principals.create(name, ["auditor"], actor="operator:test")
    auth = {"Authorization": f"Bearer {key}"}
    api.runtime.principals.disable(name, actor="operator:test")
    assert api.client.get("/v1/audit", headers=auth).status_code == 401
    api.runtime.principals.enable(name, actor="operator:test")
    assert api.client.get("/v1/audit", headers=auth).status_code == 200
    with api.database.engine.begin() as conn:
        actions = [
            r[0]
            for r in conn.execute(
                text("SELECT action FROM audit_events WHERE principal = 'operator:test'")
            )
        ]
    assert actions[-3:] == ["principal_create", "principal_disable", "principal_enable"]
    # A row changed with SQL is not blessed by an enable: it stays out, and says why.
    api.runtime.principals.disable(name, actor="operator:test")
    _sql(api, "UPDATE principals SET roles = 'privacy-officer' WHERE name = :n", n=name)
    with pytest.raises(GrantsTampered):
        api.runtime.principals.enable(name, actor="operator:test")
    assert api.client.get("/v1/audit", headers=auth).status_code == 401


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


# -- rollback: rows restored from an older backup carry valid tags (issue 17, gap closed) --


def _snapshot(api: Api, *tables: str) -> dict[str, list[dict[str, object]]]:
    with api.database.engine.connect() as conn:
        return {
            t: [dict(r._mapping) for r in conn.execute(text(f"SELECT * FROM {t}"))] for t in tables
        }


def _restore(api: Api, snapshot: dict[str, list[dict[str, object]]]) -> None:
    """What a restored backup does: the tables as they were, rows and all."""
    with api.database.engine.begin() as conn:
        for table, rows in snapshot.items():
            if table == "access_state":  # one row: keep the live revision (no rebuild forced)
                for row in rows:
                    conn.execute(
                        text("UPDATE access_state SET grant_state = :g WHERE id = 1"),
                        {"g": row["grant_state"]},
                    )
                continue
            conn.execute(text(f"DELETE FROM {table}"))
            for row in rows:
                cols = ", ".join(row)
                marks = ", ".join(f":{c}" for c in row)
                conn.execute(text(f"INSERT INTO {table} ({cols}) VALUES ({marks})"), row)


def test_a_disabled_principal_restored_from_a_backup_stays_out(api: Api) -> None:
    """The row as it was before `principal disable` has a valid tag; it is not the row the
    sealed grant state names, so it authenticates no one."""
    name = f"svc:leaver-{secrets.token_hex(4)}"
    _, key = api.runtime.principals.create(name, ["privacy-officer"], actor="operator:test")
    auth = {"Authorization": f"Bearer {key}"}
    sid, _ = api.register()
    assert api.client.get(EXPORT.format(sid), headers=auth).status_code == 200
    before = _snapshot(api, "principals")
    api.runtime.principals.disable(name, actor="operator:test")
    _restore(api, before)
    r = api.client.get(EXPORT.format(sid), headers=auth)
    assert r.status_code == 401 and "@" not in r.get_data(as_text=True)
    assert api.runtime.policy.seal.forged["stale_principal"] >= 1
    assert any(name in f and "older row" in f for f in api.runtime.policy.findings())
    # Nor can it be blessed by an enable.
    with pytest.raises(GrantsTampered):
        api.runtime.principals.enable(name, actor="operator:test")
    # The others are unaffected: one restored row does not take the service down.
    assert api.client.get(EXPORT.format(sid), headers=api.h("privacy-officer")).status_code == 200


def test_a_whole_grant_state_restored_from_a_backup_fails_closed(api: Api) -> None:
    """Principals, rules and the sealed state all from an older backup: internally
    consistent, every tag valid, but older than the newest epoch published in OpenBao."""
    sid, tokens = api.register()
    name = f"svc:leaver-{secrets.token_hex(4)}"
    _, key = api.runtime.principals.create(name, ["privacy-officer"], actor="operator:test")
    backup = _snapshot(api, "principals", "policy_rules", "access_state")
    api.runtime.principals.disable(name, actor="operator:test")
    newest = _snapshot(api, "principals", "policy_rules", "access_state")
    _restore(api, backup)
    with api.database.engine.begin() as conn:  # a restore brings its revision too: rebuild
        conn.execute(text("UPDATE access_state SET revision = revision + 1 WHERE id = 1"))
    r = api.client.get(EXPORT.format(sid), headers={"Authorization": f"Bearer {key}"})
    assert r.status_code in (401, 503) and "@" not in r.get_data(as_text=True)
    r = api.client.post(
        "/v1/detokenize",
        headers=api.h("everything"),
        json={"purpose": "customer_support", "tokens": [tokens["email"]]},
    )
    assert r.status_code == 503 and r.json["code"] == "grants_tampered"
    assert "values" not in r.json
    findings = api.runtime.policy.findings()
    assert any("older than the newest published" in f for f in findings), findings
    # Restoring the newest state heals it: nothing was sealed over the old one.
    _restore(api, newest)
    with api.database.engine.begin() as conn:
        conn.execute(text("UPDATE access_state SET revision = revision + 1 WHERE id = 1"))
    r = api.client.post(
        "/v1/detokenize",
        headers=api.h("everything"),
        json={"purpose": "customer_support", "tokens": [tokens["email"]]},
    )
    assert r.status_code == 200


def test_a_cleared_grant_state_fails_closed_and_cannot_be_resealed(api: Api) -> None:
    """Clearing the state would make the deployment look like one that predates grant tags;
    whether it does is the anchor store's to say, so `init` seals nothing."""
    sid, _ = api.register()
    _sql(api, "UPDATE access_state SET grant_state = NULL, revision = revision + 1 WHERE id = 1")
    r = api.client.get(EXPORT.format(sid), headers=api.h("privacy-officer"))
    assert r.status_code == 503 and r.json["code"] == "grants_tampered"
    _sql(api, "UPDATE principals SET tag = NULL WHERE name = 'svc:checkout-service'")
    assert api.runtime.policy.seal_existing("operator:test") == []
    r = api.client.get(EXPORT.format(sid), headers=api.h("privacy-officer"))
    assert r.status_code == 503


def test_an_operator_accepts_a_backup_restored_on_purpose(api: Api) -> None:
    """Disaster recovery: the restored grants fail closed until an operator accepts them
    (audited); rows written with SQL stay refused even then."""
    sid, _ = api.register()
    backup = _snapshot(api, "principals", "policy_rules", "access_state")
    api.runtime.principals.create("svc:after-backup", ["auditor"], actor="operator:test")
    _restore(api, backup)
    _sql(api, "UPDATE access_state SET revision = revision + 1 WHERE id = 1")
    _sql(api, "UPDATE principals SET roles = 'privacy-officer' WHERE name = 'svc:auditor'")
    r = api.client.get(EXPORT.format(sid), headers=api.h("privacy-officer"))
    assert r.status_code == 503 and r.json["code"] == "grants_tampered"
    accepted = api.runtime.policy.accept_restored("operator:test")
    assert "svc:privacy-officer" in accepted and "svc:auditor" not in accepted
    assert api.runtime.policy.findings() == [
        "forged principal: svc:auditor (roles privacy-officer)"
    ]
    r = api.client.get(EXPORT.format(sid), headers=api.h("privacy-officer"))
    assert r.status_code == 200
    assert api.client.get("/v1/audit", headers=api.h("auditor")).status_code == 401
    with api.database.engine.connect() as conn:
        actions = [r[0] for r in conn.execute(text("SELECT action FROM audit_events"))]
    assert "grants_accept_restore" in actions
