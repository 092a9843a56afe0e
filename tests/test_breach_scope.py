"""Issue 20 (§4 incident response): "what did principal X see between T1 and T2?"
answered from the audit log — subjects, fields, regions and minors, never a value. Over
HTTP on SQLite and PostgreSQL; the command itself on the CLI.

Before: no way to answer it (no command; the audit API pages 1,000 events at most).
"""

from __future__ import annotations

import datetime as dt
import json
import uuid
from pathlib import Path

from access.breach_scope import scope
from access.events import Caller
from tests.api_support import Api
from tests.helpers import ALICE, GUARDIAN_CONSENTS, SENSITIVE_CONSENTS
from tests.test_cli import local_env, run


def test_breach_scope_names_subjects_fields_regions_and_minors(api: Api) -> None:
    start = dt.datetime.now(dt.UTC).isoformat(timespec="microseconds")
    guard = api.runtime.guard
    reg, checkout = Caller("svc:registration-service"), Caller("svc:checkout-service")
    adult = guard.create_subject(
        reg, "account_registration", {"email": "a@example.com"}, consents=SENSITIVE_CONSENTS
    ).subject_id
    child = guard.create_subject(
        reg,
        "account_registration",
        {"email": "c@example.com"},
        is_minor=True,
        consents=GUARDIAN_CONSENTS,
        external_id=uuid.uuid4().hex,
    ).subject_id
    unseen = guard.create_subject(reg, "account_registration", {"email": "u@example.com"})
    cards = [
        guard.put_fields(checkout, sid, "order_fulfillment", {"card_number": ALICE["card_number"]})[
            "card_number"
        ]
        for sid in (adult, child)
    ]
    r = api.client.post(
        "/v1/detokenize",
        headers=api.h("checkout-service"),
        json={"purpose": "order_fulfillment", "tokens": [*cards, "tok_" + "x" * 32]},
    )
    assert r.status_code == 200
    report = scope(
        api.runtime.audit.scan(since=start, principal="svc:checkout-service"),
        api.database.engine,
    )
    assert report["subjects"] == sorted([adult, child])
    assert unseen.subject_id not in report["subjects"]
    assert report["fields_plain"] == {"card_number": 2}
    assert report["regions"] == {"CN": 2} and report["minors"] == [child]
    assert ALICE["card_number"] not in json.dumps(report)
    nobody = scope(api.runtime.audit.scan(since=start, principal="svc:nobody"), api.database.engine)
    assert nobody["subject_count"] == 0


def test_breach_scope_command(tmp_path: Path) -> None:
    env = local_env(tmp_path / "home")
    assert run(["init"], env)[0] == 0
    code, out, err = run(
        ["breach-scope", "--principal", "svc:checkout", "--since", "2020-01-01"], env
    )
    assert code == 0, err
    assert json.loads(out)["subject_count"] == 0
