"""The HTTP API: DESIGN.md's contract, over every database, against real OpenBao."""

from __future__ import annotations

import base64
import json
import uuid
from pathlib import Path
from typing import Any

import pytest
from flask.testing import FlaskClient
from sqlalchemy import text

from access.runtime import compose
from api.app import AppConfig, create_app
from api.demo.openbao import free_port
from keys.transit import TransitKeyProvider
from tests.api_support import JUST, PERSON, Api, build_runtime
from tests.conftest import Database, OpenBaoServer
from tests.helpers import ALICE, leaked, row_counts
from tests.test_cli import assert_demo_story
from vault.config import Settings

# -- the contract's shape ------------------------------------------------------------------

DESIGN_OPERATIONS = {
    ("post", "/v1/subjects"),
    ("patch", "/v1/subjects/{id}/fields"),
    ("patch", "/v1/subjects/{id}/attributes"),
    ("put", "/v1/subjects/{id}/restrictions"),
    ("post", "/v1/subjects/{id}/deactivate"),
    ("post", "/v1/subjects/{id}/reactivate"),
    ("post", "/v1/tokenize"),
    ("post", "/v1/detokenize"),
    ("get", "/v1/subjects/{id}"),
    ("post", "/v1/subjects/{id}/reveal"),
    ("post", "/v1/subjects/{id}/match"),
    ("get", "/v1/subjects/{id}/export"),
    ("post", "/v1/subjects/{id}/disclosures"),
    ("delete", "/v1/subjects/{id}"),
    ("put", "/v1/subjects/{id}/hold"),
    ("put", "/v1/subjects/{id}/consents/{purpose}"),
    ("post", "/v1/break-glass"),
    ("get", "/v1/approvals"),
    ("get", "/v1/approvals/{id}"),
    ("post", "/v1/approvals/{id}/approve"),
    ("post", "/v1/approvals/{id}/reject"),
    ("get", "/v1/transfers"),
    ("post", "/v1/transfers"),
    ("post", "/v1/transfers/{id}/revoke"),
    ("get", "/v1/transfers/report"),
    ("get", "/v1/audit"),
    ("get", "/v1/audit/verify"),
    ("get", "/healthz"),
    ("get", "/readyz"),
}


def operations(client: FlaskClient) -> set[tuple[str, str]]:
    spec = client.get("/v1/openapi.json").json
    return {(m, p) for p, item in spec["paths"].items() for m in item}


def test_openapi_document_lists_every_design_endpoint(api: Api) -> None:
    r = api.client.get("/v1/openapi.json")
    assert r.status_code == 200 and r.json["openapi"].startswith("3.")
    assert operations(api.client) == DESIGN_OPERATIONS
    assert api.client.get("/metrics").status_code == 200


def _fill(path: str) -> str:
    return path.replace("{id}", str(uuid.uuid4())).replace("{purpose}", "personalization")


@pytest.mark.parametrize("credential", ["missing", "malformed", "unknown", "disabled", "basic"])
def test_every_v1_endpoint_rejects_bad_keys_with_401(api: Api, credential: str) -> None:
    header = {
        "missing": {},
        "malformed": {"Authorization": "Bearer not-a-key"},
        "unknown": {"Authorization": "Bearer pvk_0123456789abcdef." + "A" * 43},
        "disabled": api.h("disabled"),
        "basic": {"Authorization": "Basic " + base64.b64encode(b"a:b").decode()},
    }[credential]
    before = row_counts(api.database.engine)
    for method, path in sorted(operations(api.client)):
        if not path.startswith("/v1/"):
            continue
        r = api.client.open(
            _fill(path),
            method=method.upper(),
            headers=header,
            json={"purpose": "account_registration", "fields": {"email": "a@b.co"}},
        )
        assert r.status_code == 401, (method, path, r.status_code)
        assert r.mimetype == "application/problem+json" and r.json["code"] == "unauthenticated"
        assert r.headers["WWW-Authenticate"].startswith("Bearer")
    assert row_counts(api.database.engine) == before


# -- denials: 403, nothing revealed, the denial audited ------------------------------------


def test_roles_cannot_exceed_their_grants(api: Api) -> None:
    sid, _tokens = api.register()
    attempts = [
        (
            "checkout-service",
            "POST",
            f"/v1/subjects/{sid}/reveal",
            {"purpose": "customer_support", "fields": ["passport_number"], "justification": JUST},
        ),
        (
            "support-agent",
            "POST",
            f"/v1/subjects/{sid}/reveal",
            {"purpose": "customer_support", "fields": ["face_template"], "justification": JUST},
        ),
        ("support-agent", "GET", f"/v1/subjects/{sid}/export?purpose=subject_access_request", None),
        (
            "checkout-service",
            "DELETE",
            f"/v1/subjects/{sid}",
            {"purpose": "subject_access_request", "reason": "because"},
        ),
        ("support-agent", "GET", "/v1/audit", None),
        ("checkout-service", "GET", "/v1/audit/verify", None),
        (
            "support-agent",
            "PUT",
            f"/v1/subjects/{sid}/consents/personalization",
            {"granted": True, "given_by": "subject"},
        ),
    ]
    for role, method, path, body in attempts:
        r = api.client.open(path, method=method, headers=api.h(role), json=body)
        assert r.status_code == 403, (role, path, r.status_code, r.json)
        assert r.json["code"] == "forbidden"
        for value in ALICE.values():
            assert not leaked(r.data, value)
        event = api.last_event()
        assert event["principal"] == f"svc:{role}" and event["decision"] == "deny"
    r = api.client.get(
        f"/v1/subjects/{sid}?purpose=customer_support", headers=api.h("support-agent")
    )
    assert r.status_code == 200  # the subject is intact


def test_detokenize_denials_are_per_item_and_in_order(api: Api) -> None:
    sid, tokens = api.register()
    r = api.client.patch(
        f"/v1/subjects/{sid}/fields",
        headers=api.h("checkout-service"),
        json={"purpose": "order_fulfillment", "fields": {"card_number": ALICE["card_number"]}},
    )
    card = r.json["tokens"]["card_number"]
    asked = [tokens["passport_number"], card, "tok_" + "z" * 32, "nope", tokens["full_name"]]
    r = api.client.post(
        "/v1/detokenize",
        headers=api.h("checkout-service"),
        json={"purpose": "order_fulfillment", "tokens": asked},
    )
    assert r.status_code == 200
    results = r.json["results"]
    assert [x["token"] for x in results] == asked
    # No right to passports: the real token is answered like a made-up one (issue 17).
    assert [x.get("error", {}).get("code") for x in results] == [
        "not_found",
        None,
        "not_found",
        "invalid",
        None,
    ]
    assert results[1]["value"] == ALICE["card_number"] and results[1]["redaction"] == "plain"
    assert results[4]["value"] == ALICE["full_name"]
    assert "value" not in results[0] or results[0]["value"] is None


# -- bodies ------------------------------------------------------------------------------


def test_oversized_and_malformed_bodies_store_nothing(api: Api) -> None:
    before = row_counts(api.database.engine)
    events = len(api.runtime.audit.events(limit=1000))
    h = api.h("registration-service")
    huge = {"purpose": "account_registration", "fields": {"full_name": "x" * (70 * 1024)}}
    r = api.client.post("/v1/subjects", headers=h, json=huge)
    assert r.status_code == 413 and r.json["code"] == "payload_too_large"
    reg = "account_registration"
    bad_bodies: list[tuple[dict[str, Any], str]] = [
        ({"data": "{not json", "content_type": "application/json"}, "invalid"),
        ({"json": ["a", "list"]}, "invalid"),
        ({"json": {"purpose": reg, "fields": {"email": 42}}}, "invalid"),
        ({"json": {"purpose": reg, "fields": {}, "surprise": 1}}, "invalid"),
        ({"json": {"fields": {"email": "a@example.com"}}}, "invalid"),
        ({"json": {"purpose": reg, "fields": {"face_template": "%%%"}}}, "invalid"),
        ({"json": {"purpose": reg, "fields": {"card_number": "4111"}}}, "invalid"),
        ({"json": {"purpose": reg, "fields": {"shoe_size": "44"}}}, "invalid"),
        (
            {"json": {"purpose": "no_such_purpose", "fields": {"email": "a@x.org"}}},
            "unknown_purpose",
        ),
    ]
    for kwargs, code in bad_bodies:
        r = api.client.post("/v1/subjects", headers=h, **kwargs)
        assert (r.status_code, r.json["code"]) == (400, code), (kwargs, r.status_code)
        assert r.mimetype == "application/problem+json"
        echoed = {k: v for k, v in r.json.items() if k != "request_id"}  # random hex may hold 4111
        assert "4111" not in json.dumps(echoed)
    # Issue 23: malformed JSON says so; a body that is not JSON at all is 415, as documented.
    r = api.client.post(
        "/v1/subjects", headers=h, data="{not json", content_type="application/json"
    )
    assert r.json["errors"] == {"body": "json_invalid"}, r.json
    for content_type in (None, "text/plain", "application/x-www-form-urlencoded"):
        r = api.client.post(
            "/v1/subjects", headers=h, data='{"purpose": "x"}', content_type=content_type
        )
        assert r.status_code == 415 and r.json["code"] == "unsupported_media_type", r.json
    assert row_counts(api.database.engine) == before
    assert len(api.runtime.audit.events(limit=1000)) == events  # rejected before any decision


def test_request_ids_reach_responses_and_audit(api: Api) -> None:
    sid, _ = api.register()
    r = api.client.get(
        f"/v1/subjects/{sid}?purpose=customer_support",
        headers=api.h("support-agent") | {"X-Request-Id": "trace-123"},
    )
    assert r.headers["X-Request-Id"] == "trace-123"
    assert r.headers["Cache-Control"] == "no-store"
    assert api.last_event()["request_id"] == "trace-123"
    r = api.client.get("/healthz", headers={"X-Request-Id": "bad id with spaces"})
    assert r.headers["X-Request-Id"] != "bad id with spaces"


def test_status_codes(api: Api) -> None:
    sid, _tokens = api.register()
    officer = api.h("privacy-officer")
    missing = str(uuid.uuid4())
    assert (
        api.client.get(
            f"/v1/subjects/{missing}?purpose=subject_access_request", headers=officer
        ).status_code
        == 404
    )
    r = api.client.post(
        "/v1/subjects",
        headers=api.h("registration-service"),
        json={"purpose": "account_registration", "external_id": "dup-1", "fields": {}},
    )
    assert r.status_code == 201
    r = api.client.post(
        "/v1/subjects",
        headers=api.h("registration-service"),
        json={"purpose": "account_registration", "external_id": "dup-1", "fields": {}},
    )
    assert r.status_code == 409 and r.json["code"] == "duplicate_external_id"
    r = api.client.delete(
        f"/v1/subjects/{sid}",
        headers=officer,
        json={"purpose": "subject_access_request", "reason": "asked"},
    )
    assert r.status_code == 200 and r.json["status"] == "shredded"
    r = api.client.get(f"/v1/subjects/{sid}?purpose=subject_access_request", headers=officer)
    assert r.status_code == 410 and r.json["code"] == "shredded"
    r = api.client.delete(
        f"/v1/subjects/{sid}",
        headers=officer,
        json={"purpose": "subject_access_request", "reason": "again"},
    )
    assert r.status_code == 200  # idempotent: the same receipt
    r = api.client.get("/v1/audit/verify", headers=api.h("auditor"))
    assert r.status_code == 200 and r.json["ok"] is True


def test_readyz_reports_a_missing_key_provider(
    api: Api, database: Database, openbao: OpenBaoServer, tmp_path: Path
) -> None:
    body = api.client.get("/readyz").json
    assert body == {
        "status": "ready",
        "database": "ok",
        "key_provider": "ok",
        "database_schema": "ok",
        "audit_anchors": "unchecked",  # this runtime never started serving
        "identity_provider": "none",
        "vault_auth": "ok",
        "vault": [{"reason": None, "breaker": "closed", "nodes": {openbao.addr: "active"}}],
    }
    broken_addr = f"http://127.0.0.1:{free_port()}"
    broken = TransitKeyProvider(broken_addr, "t", timeout=1)
    runtime = build_runtime(database, broken)
    client = create_app(AppConfig(Settings(home=tmp_path), runtime=runtime)).test_client()
    r = client.get("/readyz")
    assert r.status_code == 503 and r.json["key_provider"] == "unavailable"
    assert r.json["reasons"] == ["key provider unavailable: Vault unreachable"], r.json
    assert r.json["vault"][0]["reason"] == "unreachable"
    assert r.json["vault"][0]["nodes"] == {broken_addr: "unreachable"}
    key = api.keys["registration-service"]
    r = client.post(
        "/v1/subjects",
        headers={"Authorization": f"Bearer {key}"},
        json={"purpose": "account_registration", "fields": {"email": "a@example.com"}},
    )
    assert r.status_code == 503 and r.json["code"] == "key_provider_unavailable"


def test_readyz_reports_a_missing_database(
    api: Api, openbao: OpenBaoServer, tmp_path: Path
) -> None:
    from vault.db import make_engine

    dead = make_engine(f"postgresql://postgres@127.0.0.1:{free_port()}/none")
    runtime = compose(dead, openbao.provider())
    client = create_app(AppConfig(Settings(home=tmp_path), runtime=runtime)).test_client()
    r = client.get("/readyz")
    assert r.status_code == 503 and r.json["database"] == "unavailable"
    r = client.get("/v1/audit", headers=api.h("auditor"))  # authentication needs the database
    assert (r.status_code, r.json["code"]) == (503, "database_unavailable")


def test_audit_log_down_returns_503_and_no_plaintext(api: Api) -> None:
    """Authentication and the data still work; only the audit log cannot record: fail closed."""
    sid, _ = api.register()
    with api.database.engine.begin() as conn:
        conn.execute(text("DROP TABLE audit_events"))
    r = api.client.post(
        f"/v1/subjects/{sid}/reveal",
        headers=api.h("support-agent"),
        json={"purpose": "customer_support", "fields": ["passport_number"], "justification": JUST},
    )
    assert (r.status_code, r.json["code"]) == (503, "audit_unavailable")
    assert PERSON["passport_number"] not in r.get_data(as_text=True)


def test_metrics(api: Api) -> None:
    _sid, tokens = api.register()
    api.client.post(
        "/v1/detokenize",
        headers=api.h("registration-service"),
        json={"purpose": "account_registration", "tokens": list(tokens.values())},
    )
    scraped = api.client.get("/metrics")
    assert scraped.headers["Content-Type"].count("charset") == 1, scraped.headers
    text_out = scraped.get_data(as_text=True)
    for name in (
        "pii_vault_http_requests_total",
        "pii_vault_http_request_duration_seconds",
        'pii_vault_decisions_total{action="detokenize",outcome="plain"}',
        "denied_forbidden",
        "pii_vault_key_provider_calls_total",
        "pii_vault_dek_cache_hits_total",
        "pii_vault_dek_cache_misses_total",
    ):
        assert name in text_out, name
    for value in ALICE.values():
        assert not leaked(text_out.encode(), value)


# -- the story, end to end, on both databases -----------------------------------------------


def test_demo_story_end_to_end(database: Database) -> None:
    from api.demo.story import run_demo

    url = database.url
    if database.kind == "postgresql":
        url = f"{database.url}?options=-csearch_path%3D{database.schema}"
        with database.engine.begin() as conn:  # the demo migrates itself: start empty
            conn.execute(text(f'DROP SCHEMA "{database.schema}" CASCADE'))
            conn.execute(text(f'CREATE SCHEMA "{database.schema}"'))
    lines: list[str] = []
    report = run_demo(lines.append, database_url=url)
    assert report.ok, report.failures
    assert_demo_story(report.lines)


def test_unknown_purpose_is_400_even_when_nothing_resolves(api: Api) -> None:
    for body in (
        {"purpose": "bad\u0000purpose", "tokens": ["tok_" + "q" * 32]},
        {"purpose": "nope", "tokens": ["junk"]},
    ):
        r = api.client.post("/v1/detokenize", headers=api.h("checkout-service"), json=body)
        assert r.status_code == 400 and r.json["code"] == "unknown_purpose"
    r = api.client.post(
        "/v1/tokenize",
        headers=api.h("checkout-service"),
        json={"purpose": "nope", "records": [{"external_id": "x", "fields": {"email": "a@b.co"}}]},
    )
    assert r.status_code == 400


def test_tokenize_batch_of_undecodable_records_is_decided_and_audited(api: Api) -> None:
    """Every item reaches the one batch pipeline, even when none could be decoded."""
    h = api.h("registration-service")
    bad = {"external_id": "x-1", "fields": {"face_template": "%%% not base64"}}
    r = api.client.post("/v1/tokenize", headers=h, json={"purpose": "nope", "records": [bad]})
    assert (r.status_code, r.json["code"]) == (400, "unknown_purpose")
    events = len(api.runtime.audit.events(limit=1000))
    body = {"purpose": "account_registration", "records": [bad, bad]}
    r = api.client.post("/v1/tokenize", headers=h, json=body)
    assert r.status_code == 200
    assert [x["error"] for x in r.json["results"]] == [
        {"code": "invalid", "fields": {"face_template": "not_base64"}}
    ] * 2
    after = api.runtime.audit.events(limit=1000)
    assert len(after) == events + 1
    assert after[0]["action"] == "write" and after[0]["decision"] == "deny"
    assert after[0]["outcome"] == {"0": {"error": "invalid"}, "1": {"error": "invalid"}}


def test_audit_api_filters_and_pages(api: Api) -> None:
    """Issue 23: filters beyond the subject, validated times, and a cursor."""
    for _ in range(3):
        api.register()
    h = api.h("auditor")
    r = api.client.get(
        "/v1/audit",
        headers=h,
        query_string={"principal": "svc:registration-service", "action": "write", "limit": 2},
    )
    assert r.status_code == 200, r.json
    first = r.json["events"]
    assert len(first) == 2 and r.json["next_before"] == first[-1]["seq"]
    assert all(e["principal"] == "svc:registration-service" for e in first)
    assert all(e["action"] == "write" for e in first)
    r = api.client.get(
        "/v1/audit",
        headers=h,
        query_string={
            "principal": "svc:registration-service",
            "action": "write",
            "limit": 2,
            "before": first[-1]["seq"],
        },
    )
    rest = r.json["events"]
    assert rest and all(e["seq"] < first[-1]["seq"] for e in rest)
    assert {e["seq"] for e in first}.isdisjoint(e["seq"] for e in rest)
    r = api.client.get(
        "/v1/audit", headers=h, query_string={"decision": "deny", "since": "2000-01-01T00:00:00Z"}
    )
    assert r.status_code == 200 and all(e["decision"] == "deny" for e in r.json["events"])
    r = api.client.get("/v1/audit", headers=h, query_string={"until": "2000-01-01T00:00:00Z"})
    assert r.json == {"events": [], "next_before": None}
    for bad in ({"since": "2026-13-45"}, {"decision": "maybe"}, {"before": "0"}):
        r = api.client.get("/v1/audit", headers=h, query_string=bad)
        assert r.status_code == 400 and r.json["code"] == "invalid", (bad, r.json)


def test_openapi_names_every_operation_by_hand_with_its_own_errors_and_enums(api: Api) -> None:
    """Issue 23: generated ids (subjects_shred__id__delete), no summaries, one error list
    for all, plain strings where the API takes a closed set."""
    from api.openapi import OPERATIONS

    spec = api.client.get("/v1/openapi.json").json
    ids = []
    for path, item in spec["paths"].items():
        for method, operation in item.items():
            assert (method, path) in OPERATIONS, (method, path)
            assert (operation["operationId"], operation["summary"]) == OPERATIONS[(method, path)]
            ids.append(operation["operationId"])
    assert len(ids) == len(set(ids)) == len(OPERATIONS)
    ops = spec["paths"]
    assert "409" in ops["/v1/subjects"]["post"]["responses"]
    assert "409" not in ops["/v1/subjects/{id}"]["get"]["responses"]
    assert {"404", "410", "500"} <= set(ops["/v1/subjects/{id}"]["get"]["responses"])
    assert "415" not in ops["/v1/audit"]["get"]["responses"]  # no body
    assert "415" in ops["/v1/detokenize"]["post"]["responses"]
    assert "429" in ops["/v1/detokenize"]["post"]["responses"]
    schemas = spec["components"]["schemas"]
    purposes = schemas["DetokenizeBody"]["properties"]["purpose"]["enum"]
    assert "order_fulfillment" in purposes and "*" not in purposes
    assert "enum" not in schemas["GivenConsent"]["properties"]["purpose"]  # sensitive:* too
    assert "passport_number" in schemas["RevealBody"]["properties"]["fields"]["items"]["enum"]
    names = schemas["CreateSubjectBody"]["properties"]["fields"]["propertyNames"]["enum"]
    assert "email" in names
    assert "subject_damaged" in schemas["ItemError"]["properties"]["code"]["enum"]
    query = {p["name"]: p for p in ops["/v1/subjects/{id}"]["get"]["parameters"]}
    assert "customer_support" in query["purpose"]["schema"]["enum"]
