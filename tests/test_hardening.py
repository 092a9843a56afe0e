"""Input and storage hardening (issue: authorization and input hardening, points 6 and 7).

Each test is an attack or an edge case that used to get through or end in a 500.
"""

from __future__ import annotations

import json
import stat
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import text

from tests.api_support import Api
from tests.conftest import OpenBaoServer
from tests.helpers import SENSITIVE_CONSENTS
from vault.formats import MASKERS
from vault.schema import Schema

SCHEMA = Schema.load()


def _create(api: Api, fields: dict[str, str], **extra: object) -> object:
    return api.client.post(
        "/v1/subjects",
        headers=api.h("everything"),
        json={"purpose": "account_registration", "fields": fields, **extra},
    )


# -- 6. input edge cases ------------------------------------------------------------------


@pytest.mark.parametrize("address", ["fe80::1%x", "fe80::1%\u202e", "fe80::1%\x00", "::1%eth0"])
def test_scoped_ipv6_is_rejected_not_a_500_later(api: Api, address: str) -> None:
    r = _create(api, {"ip_address": address})
    assert (r.status_code, r.json["code"]) == (400, "invalid"), r.json


def test_masking_failure_is_never_a_500() -> None:
    spec = SCHEMA["ip_address"]
    assert spec.masked(b"fe80::1%x") == "[redacted]"  # as if an old row held one


def test_trailing_newline_does_not_pass_a_pattern(api: Api) -> None:
    assert _create(api, {"email": "a@example.com"}, external_id="user-1").status_code == 201
    for external_id in ("user-1\n", "user-2\n"):
        r = _create(api, {"email": "b@example.com"}, external_id=external_id)
        assert (r.status_code, r.json["code"]) == (400, "invalid")
    r = _create(api, {"email": "c@example.com"}, region="DE\n")
    assert (r.status_code, r.json["code"]) == (400, "invalid")


@pytest.mark.parametrize("email", ["a\x00b@example.com", "a\x1bb@example.com", "a\x7f@example.com"])
def test_control_characters_in_email_are_rejected(api: Api, email: str) -> None:
    r = _create(api, {"email": email})
    assert (r.status_code, r.json["code"]) == (400, "invalid")


@pytest.mark.parametrize("depth", [200, 20_000])  # 20,000 levels fit the test body limit
def test_deeply_nested_json_is_a_400(api: Api, depth: int) -> None:
    body = '{"purpose": "account_registration", "fields": ' + "[" * depth + "]" * depth + "}"
    r = api.client.post(
        "/v1/subjects",
        headers={**api.h("everything"), "Content-Type": "application/json"},
        data=body,
    )
    assert (r.status_code, r.json["code"]) == (400, "invalid"), r.status_code


# Mask styles and the share of a value each may show (of the local part, for email).
SHARE = {"last4": 1 / 2, "email": 1 / 2, "first": 1 / 2, "initials": 1 / 2}


@pytest.mark.parametrize("style", sorted(SHARE))
@pytest.mark.parametrize("length", range(1, 41))
def test_masks_never_reveal_more_than_their_share(style: str, length: int) -> None:
    value = "".join("ABCDEFGHJKMNPQRSTUVWXYZ23456789"[i % 31] for i in range(length))
    if style == "email":
        masked = MASKERS[style](f"{value}@example.com")
        shown = masked.split("@", 1)[0].replace("*", "")
    elif style == "initials":
        words = [value[: max(1, length // 2)], value[max(1, length // 2) :]]
        value = " ".join(w for w in words if w)
        shown = MASKERS[style](value).replace("*", "").replace(" ", "")
    else:
        shown = MASKERS[style](value).replace("*", "")
    assert len(shown) <= SHARE[style] * len(value.replace(" ", "")), (value, shown)


def test_short_values_are_masked_in_full() -> None:
    assert MASKERS["last4"]("AB123") == "***23"  # was *B123
    assert MASKERS["last4"]("AB1234") == "***234"  # was **1234
    assert MASKERS["email"]("a@example.com") == "***@example.com"  # was a***@
    assert MASKERS["first"]("Q") == "***"


def test_every_masked_field_applies_its_rule() -> None:
    for name, spec in SCHEMA.fields.items():
        if spec.type == "binary":
            continue
        assert spec.mask in MASKERS, name


# -- 7. files and reasons -------------------------------------------------------------------


def test_state_directory_and_database_files_are_private(tmp_path: Path) -> None:
    from access.runtime import open_runtime
    from vault.config import Settings

    home = tmp_path / "state"
    rt = open_runtime(Settings(home=home), migrate=True)
    try:
        rt.policy.seed_default()
        rt.vault.create_subject({"email": "files@example.com"})
    finally:
        rt.close()
    assert stat.S_IMODE(home.stat().st_mode) == 0o700
    files = [p for p in home.iterdir() if p.name.startswith(("vault.db", "keys.db", "master"))]
    assert any(p.name == "vault.db" for p in files)
    for path in files:
        assert stat.S_IMODE(path.stat().st_mode) == 0o600, path.name


def test_delete_reason_without_ticket_is_audited(api: Api) -> None:
    sid, _ = api.register()
    r = api.client.delete(
        f"/v1/subjects/{sid}",
        headers=api.h("privacy-officer"),
        json={"purpose": "subject_access_request", "reason": "user wrote to dpo@ on 3 May"},
    )
    assert r.status_code == 200
    events = api.runtime.audit.events(limit=3)
    reasons = [e["justification"]["reason"] for e in events if e["justification"]]
    assert "user wrote to dpo@ on 3 May" in reasons


# -- 1. an export holds only its own subject ---------------------------------------------------


def test_export_of_one_subject_names_nobody_else(api: Api) -> None:
    """Attack: subject 2's export carried batch events naming subject 1 and its fields."""
    one, tokens_one = api.register()
    two, tokens_two = api.register()
    just = {"ticket": "CS-99", "reason": "about someone else entirely"}
    r = api.client.post(
        "/v1/detokenize",
        headers=api.h("registration-service"),
        json={
            "purpose": "identity_verification",
            "tokens": [tokens_one["passport_number"], tokens_two["email"]],
            "justification": just,
        },
    )
    assert r.status_code == 200
    event = api.runtime.audit.events(limit=1)[0]
    assert sorted(event["fields"]) == ["email", "passport_number"]  # plain names, one shape
    assert {item["subject_id"] for item in event["outcome"].values()} == {one, two}
    r = api.client.delete(
        f"/v1/subjects/{one}",
        headers=api.h("privacy-officer"),
        json={"purpose": "subject_access_request", "reason": "erasure"},
    )
    assert r.status_code == 200
    r = api.client.get(
        f"/v1/subjects/{two}/export?purpose=subject_access_request",
        headers=api.h("privacy-officer"),
    )
    assert r.status_code == 200
    text = r.get_data(as_text=True)
    assert one not in text and "about someone else" not in text
    batch = [e for e in r.json["access_history"] if e["action"] == "detokenize"]
    assert len(batch) == 1 and batch[0]["subject_ids"] == [two]
    assert batch[0]["fields"] == ["email"] and batch[0]["justification"] is None
    assert [i["subject_id"] for i in batch[0]["outcome"].values()] == [two]


# -- 5. policy changes reach every worker ----------------------------------------------------


def test_rule_deleted_with_sql_is_gone_in_every_worker(
    api: Api, openbao: OpenBaoServer, tmp_path: Path
) -> None:
    """Attack: a rule deleted straight in the database stayed in force in running workers.
    Since issue 17 a deletion with SQL fails the rule set's tag: every worker refuses to
    decide (503) until an operator has looked; a removal through the vault is a 403."""
    from access.runtime import compose
    from api.app import AppConfig, create_app
    from vault.config import Settings

    second = compose(api.database.new_engine(), openbao.provider())
    worker2 = create_app(AppConfig(Settings(home=tmp_path), runtime=second)).test_client()
    sid, _ = api.register()
    reveal = {
        "purpose": "customer_support",
        "fields": ["email"],
        "justification": {"ticket": "CS-1", "reason": "customer asked"},
    }
    for client in (api.client, worker2):  # both workers have built their policy engine
        r = client.post(f"/v1/subjects/{sid}/reveal", headers=api.h("support-agent"), json=reveal)
        assert r.status_code == 200
    rules = api.runtime.policy.rules()
    with api.database.engine.connect() as conn:  # the operator's backup of the table
        backup = [dict(r._mapping) for r in conn.execute(text("SELECT * FROM policy_rules"))]
    with api.database.engine.begin() as conn:
        conn.execute(text("DELETE FROM policy_rules WHERE v0 = 'support-agent' AND v2 = 'reveal'"))
    for client in (api.client, worker2):
        r = client.post(f"/v1/subjects/{sid}/reveal", headers=api.h("support-agent"), json=reveal)
        assert (r.status_code, r.json["code"]) == (503, "grants_tampered")
    with api.database.engine.begin() as conn:  # the operator restores the rows as they
        conn.execute(text("DELETE FROM policy_rules"))  # were (tags too): the set verifies
        for row in backup:
            cols = ", ".join(row)
            conn.execute(
                text(
                    f"INSERT INTO policy_rules ({cols}) VALUES ({', '.join(':' + c for c in row)})"
                ),
                row,
            )
    doomed = next(r for r in rules if r.sub == "support-agent" and r.act == "reveal")
    for client in (api.client, worker2):
        r = client.post(f"/v1/subjects/{sid}/reveal", headers=api.h("support-agent"), json=reveal)
        assert r.status_code == 200
    api.runtime.policy.remove_rule(doomed)
    for client in (api.client, worker2):
        r = client.post(f"/v1/subjects/{sid}/reveal", headers=api.h("support-agent"), json=reveal)
        assert (r.status_code, r.json["code"]) == (403, "forbidden")
    second.vault.engine.dispose()


# -- 4. card tokens cannot be enumerated --------------------------------------------------------


def test_failed_token_lookups_are_budgeted_across_workers(
    api: Api, openbao: OpenBaoServer, tmp_path: Path
) -> None:
    """Attack: ~40,000 card-token guesses/s with one service key, misses answered forever."""
    from access.runtime import compose
    from api.app import AppConfig, create_app
    from vault.config import Settings

    workers = []
    for _ in range(2):
        rt = compose(api.database.new_engine(), openbao.provider(), lookup_budget=(6, 3600))
        workers.append((rt, create_app(AppConfig(Settings(home=tmp_path), runtime=rt))))
    h = api.h("checkout-service")
    guesses = [f"4242{n:08d}4242" for n in range(4)]  # card-token-shaped guesses
    body = {"purpose": "order_fulfillment", "tokens": guesses}
    for _, app in workers:  # 4 misses on each worker: 8 > 6, shared through the database
        r = app.test_client().post("/v1/detokenize", headers=h, json=body)
        assert r.status_code == 200
        assert {x["error"]["code"] for x in r.json["results"]} <= {"not_found", "invalid"}
    for rt, app in workers:
        r = app.test_client().post("/v1/detokenize", headers=h, json=body)
        assert (r.status_code, r.json["code"]) == (429, "rate_limited")
        assert 1 <= int(r.headers["Retry-After"]) <= 3600
        event = rt.audit.events(limit=1)[0]
        assert event["decision"] == "deny" and "budget" in json.dumps(event["outcome"])
    metrics = workers[0][1].test_client().get("/metrics").get_data(as_text=True)
    assert "pii_vault_failed_lookup_budget_trips_total 1.0" in metrics
    other = api.h("registration-service")  # the budget is per principal
    r = (
        workers[0][1]
        .test_client()
        .post(
            "/v1/detokenize",
            headers=other,
            json={"purpose": "identity_verification", "tokens": ["x"]},
        )
    )
    assert r.status_code == 200
    for rt, _ in workers:
        rt.vault.engine.dispose()


# -- every endpoint, arbitrary JSON: never a 500 -----------------------------------------------

JSON_LEAF = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False)
    | st.text(alphabet=st.characters(codec="utf-8"), max_size=40)  # control chars, RTL, NUL
)
ANY_JSON = st.recursive(
    JSON_LEAF,
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=12), inner, max_size=4)
    ),
    max_leaves=20,
)
FIELD_NAMES = st.sampled_from(["email", "phone", "ip_address", "face_template", "nope", "*"])
PLAUSIBLE = st.fixed_dictionaries(
    {"purpose": st.sampled_from(["account_registration", "customer_support", "nope"])},
    optional={
        "fields": st.dictionaries(FIELD_NAMES, ANY_JSON, max_size=3),
        "tokens": st.lists(st.text(max_size=30), max_size=4),
        "records": st.lists(ANY_JSON, max_size=3),
        "external_id": ANY_JSON,
        "justification": ANY_JSON,
        "reason": ANY_JSON,
    },
)


def _deep(depth: int) -> str:
    return "[" * depth + "]" * depth


@settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    body=ANY_JSON | PLAUSIBLE | st.integers(1, 5000).map(_deep),
    endpoint=st.sampled_from(
        [
            ("POST", "/v1/subjects"),
            ("PATCH", "/v1/subjects/{sid}/fields"),
            ("POST", "/v1/subjects/{sid}/reveal"),
            ("DELETE", "/v1/subjects/{other}"),
            ("PUT", "/v1/subjects/{sid}/consents/personalization"),
            ("POST", "/v1/tokenize"),
            ("POST", "/v1/detokenize"),
        ]
    ),
)
def test_arbitrary_json_never_gets_a_500(api: Api, body: object, endpoint: tuple[str, str]) -> None:
    if not hasattr(api, "_subjects"):
        api._subjects = (api.register()[0], api.register()[0])  # type: ignore[attr-defined]
    sid, other = api._subjects  # type: ignore[attr-defined]
    method, path = endpoint
    data = body if isinstance(body, str) else json.dumps(body)
    r = api.client.open(
        path.format(sid=sid, other=other),
        method=method,
        headers={**api.h("everything"), "Content-Type": "application/json"},
        data=data,
    )
    assert r.status_code < 500, (r.status_code, r.get_data(as_text=True)[:300])
    assert r.mimetype in ("application/json", "application/problem+json")


# -- 2. no silent overwrite: corrections are their own action ------------------------------------


def test_tokenize_never_overwrites_and_retries_are_idempotent(api: Api) -> None:
    """Attack: registration tokenized user-2's phone anew; checkout's token stopped resolving."""
    reg, checkout = api.h("registration-service"), api.h("checkout-service")
    r = api.client.post(
        "/v1/subjects",
        headers=reg,
        json={
            "purpose": "account_registration",
            "external_id": "user-2",
            "fields": {"phone": "+14155550100", "passport_number": "ZQ1234567"},
            "consents": SENSITIVE_CONSENTS,
        },
    )
    assert r.status_code == 201
    sid, phone_token = r.json["subject_id"], r.json["tokens"]["phone"]

    def tokenize(phone: str) -> dict[str, object]:
        body = {
            "purpose": "account_registration",
            "records": [{"external_id": "user-2", "fields": {"phone": phone}}],
        }
        r = api.client.post("/v1/tokenize", headers=reg, json=body)
        assert r.status_code == 200
        return dict(r.json["results"][0])

    redirected = tokenize("+14155550199")  # the OTP number, redirected
    assert redirected["error"] == {"code": "conflict", "fields": {"phone": "already_set"}}
    # A retry by a writer that may not read phone is a conflict too (issue 17: a right guess
    # and a wrong one get the same answer); the stored token is untouched either way.
    assert tokenize("+14155550100") == redirected
    r = api.client.post(
        "/v1/detokenize",
        headers=checkout,
        json={"purpose": "order_fulfillment", "tokens": [phone_token]},
    )
    assert r.json["results"][0]["value"] == "+14155550100"

    # A change is a correction: its own action, decided and audited as such.
    r = api.client.patch(
        f"/v1/subjects/{sid}/fields",
        headers=reg,
        json={"purpose": "account_registration", "fields": {"passport_number": "ZQ7654321"}},
    )
    assert (r.status_code, r.json["code"]) == (403, "forbidden")
    assert api.runtime.audit.events(limit=1)[0]["action"] == "correct"
    r = api.client.patch(
        f"/v1/subjects/{sid}/fields",
        headers=api.h("support-agent"),
        json={
            "purpose": "customer_support",
            "fields": {"passport_number": "ZQ7654321"},
            "justification": {"ticket": "CS-77", "reason": "customer sent a new passport"},
        },
    )
    assert r.status_code == 200, r.json
    event = api.runtime.audit.events(limit=1)[0]
    assert event["action"] == "correct" and event["justification"]["ticket"] == "CS-77"


def test_a_query_parameter_given_twice_is_a_400(api: Api) -> None:
    """Found by schemathesis: the second subject_id was silently ignored."""
    r = api.client.get("/v1/audit?subject_id=a&subject_id=b", headers=api.h("auditor"))
    assert (r.status_code, r.json["code"]) == (400, "invalid")


# -- 3. no existence oracle ------------------------------------------------------------------------


def test_callers_without_rights_learn_nothing_about_existence(api: Api) -> None:
    """Attack: 403 for an existing subject, 404 for an unknown one, 410 for an erased one."""
    live, tokens = api.register()
    gone, _ = api.register()
    api.client.delete(
        f"/v1/subjects/{gone}",
        headers=api.h("privacy-officer"),
        json={"purpose": "subject_access_request", "reason": "erasure"},
    )
    unknown = "6f1c1a52-7d39-4c4f-9d55-0e0a3f1f3d6b"

    def view(role: str, sid: str, purpose: str) -> tuple[int, str]:
        before = len(api.runtime.audit.events(limit=1000))
        r = api.client.get(f"/v1/subjects/{sid}?purpose={purpose}", headers=api.h(role))
        assert len(api.runtime.audit.events(limit=1000)) == before + 1  # every probe audited
        return r.status_code, r.get_data(as_text=True)

    # No right on any subject for this purpose: one answer, naming nothing.
    answers = {view("recommendation-service", s, "personalization") for s in (live, gone, unknown)}
    assert {code for code, _ in answers} == {403}
    assert len({body.split('"request_id"')[0] for _, body in answers}) == 1
    assert not any(f in body for _, body in answers for f in ("email", "passport", "phone"))
    # A right, but not the privacy office's: an erased subject looks like an unknown one.
    assert view("support-agent", unknown, "customer_support")[0] == 404
    assert view("support-agent", gone, "customer_support")[0] == 404
    # Only those who may export or shred hear "shredded".
    assert view("privacy-officer", gone, "subject_access_request")[0] == 410
    # The masked view shows identifiers only to the privacy office.
    r = api.client.get(
        f"/v1/subjects/{live}?purpose=customer_support", headers=api.h("support-agent")
    )
    assert r.status_code == 200 and r.json["external_id"] is None and r.json["region"] is None
    r = api.client.get(
        f"/v1/subjects/{live}?purpose=subject_access_request", headers=api.h("privacy-officer")
    )
    assert r.json["external_id"] and r.json["region"]
    # A token the caller has no right to names no field, and looks made up (issue 17).
    r = api.client.post(
        "/v1/detokenize",
        headers=api.h("checkout-service"),
        json={"purpose": "order_fulfillment", "tokens": [tokens["passport_number"]]},
    )
    assert r.json["results"][0] == {
        "token": tokens["passport_number"],
        "field": None,
        "error": {"code": "not_found"},
    }


def test_external_id_resolves_only_for_callers_who_may_see_subjects(api: Api) -> None:
    """A writer with no right to see subjects cannot turn external ids into subject ids."""
    from access.policy import Rule

    api.runtime.policy.add_rules(
        [Rule("intake-service", "basic", "write", "account_registration", "allow")]
    )
    _, key = api.runtime.principals.create("svc:intake", ["intake-service"])
    intake = {"Authorization": f"Bearer {key}"}
    r = api.client.post(
        "/v1/subjects",
        headers=api.h("registration-service"),
        json={"purpose": "account_registration", "external_id": "user-9", "fields": {}},
    )
    existing = r.json["subject_id"]

    def tokenize(external_id: str) -> dict[str, object]:
        body = {
            "purpose": "account_registration",
            "records": [{"external_id": external_id, "fields": {"gender": "f"}}],
        }
        r = api.client.post("/v1/tokenize", headers=intake, json=body)
        assert r.status_code == 200
        return dict(r.json["results"][0])

    known, unknown = tokenize("user-9"), tokenize("user-never-seen")
    assert known == unknown == {"subject_id": None, "error": {"code": "forbidden", "fields": None}}
    assert existing not in json.dumps([known, unknown])
    # The registration service, which may see subjects for this purpose, resolves it.
    r = api.client.post(
        "/v1/tokenize",
        headers=api.h("registration-service"),
        json={
            "purpose": "account_registration",
            "records": [{"external_id": "user-9", "fields": {"gender": "f"}}],
        },
    )
    assert r.json["results"][0]["subject_id"] == existing


def _revealed(value: str, masked: str) -> int:
    """Characters of ``value`` a masked form shows (the masks keep them in place or in order)."""
    shown = masked.replace("*", "").replace(" ", "").replace("[redacted]", "")
    return len(shown)


@pytest.mark.parametrize("name", sorted(n for n, f in SCHEMA.fields.items() if f.type != "binary"))
def test_every_field_mask_at_lengths_1_to_40(name: str) -> None:
    """The rule, field by field: variable-length values show at most half; fixed formats
    (card, date, IP, MAC) show their stated part of a valid value; redacted shows nothing."""
    spec = SCHEMA[name]
    if spec.mask in SHARE:
        for length in range(1, 41):
            core = "".join("QWERTYUPASDFGHJKZXCVBNM2345678"[i % 30] for i in range(length))
            value = f"{core}@example.org" if spec.mask == "email" else core
            masked = spec.masked(value.encode())
            if spec.mask == "email":
                masked, value = masked.split("@")[0], core
            assert _revealed(value, masked) <= len(value) / 2, (name, value, masked)
        return
    fixed = {
        "card": ("4111111111111111", "************1111"),
        "year": ("1990-05-17", "1990-**-**"),
        "ip": ("203.0.113.9", "203.0.*.*"),
        "mac": ("00:1A:2B:3C:4D:5E", "00:1A:2B:**:**:**"),
    }
    if spec.mask == "redacted":
        assert spec.masked(b"anything at all") == "[redacted]"
        return
    value, expected = fixed[spec.mask]
    assert spec.masked(value.encode()) == expected


def test_audit_filter_with_nul_is_a_400_not_a_500(api: Api) -> None:
    """Found by schemathesis on PostgreSQL (text refuses NUL): subject_id=0%00 gave 500."""
    r = api.client.get("/v1/audit?subject_id=0%00&limit=3", headers=api.h("auditor"))
    assert (r.status_code, r.json["code"]) == (400, "invalid")


def test_probes_log_no_free_text_from_the_url(api: Api) -> None:
    """A caller-typed 'subject id' is not a subject id: the audit log holds no free text."""
    typed = "zelda.quartermaine@example.org"
    for role in ("recommendation-service", "support-agent"):  # forbidden, then not found
        purpose = "personalization" if role.startswith("rec") else "customer_support"
        api.client.get(f"/v1/subjects/{typed}?purpose={purpose}", headers=api.h(role))
        event = api.runtime.audit.events(limit=1)[0]
        assert event["subject_ids"] == ["invalid"] and typed not in json.dumps(event)


def _nesting(value: object) -> int:
    if isinstance(value, list):
        return 1 + max((_nesting(v) for v in value), default=0)
    if isinstance(value, dict):
        return 1 + max((_nesting(v) for v in value.values()), default=0)
    return 0


_JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(), inner, max_size=4),
    max_leaves=40,
)


@given(_JSON, st.booleans())
@settings(max_examples=300)
def test_json_depth_is_the_nesting_of_the_parsed_value(value: object, ascii_only: bool) -> None:
    """The pre-parse depth bound sees what the parser would: brackets inside strings
    (escaped quotes and backslashes included) never count."""
    from api.app import json_depth

    body = json.dumps(value, ensure_ascii=ascii_only).encode()
    assert json_depth(body) == _nesting(json.loads(body))
