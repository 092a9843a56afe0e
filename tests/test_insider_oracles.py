"""Issue 17 (5, 6): no oracle for a service's API key, and a failed-lookup budget that
concurrency cannot overrun. Each case passed on the code before: checkout told a right
date-of-birth guess (its existing token back) from a wrong one (``conflict``); tokenize
by subject id told a stranger live / erased / unknown apart; a detokenize without rights
told real tokens (``forbidden``) from made-up ones (``not_found``), uncharged; and ten
concurrent batches were all looked up though the budget was long spent."""

from __future__ import annotations

import threading
import uuid
from pathlib import Path

from access.runtime import compose
from api.app import AppConfig, create_app
from tests.api_support import Api
from tests.conftest import OpenBaoServer
from vault.config import Settings

DOB = "1990-04-12"


def _tokenize(api: Api, role: str, purpose: str, subject_id: str, fields: dict[str, str]) -> dict:
    r = api.client.post(
        "/v1/tokenize",
        headers=api.h(role),
        json={"purpose": purpose, "records": [{"subject_id": subject_id, "fields": fields}]},
    )
    assert r.status_code == 200, r.json
    return r.json["results"][0]


def test_a_writer_without_read_right_learns_nothing_from_a_guess(api: Api) -> None:
    sid, _ = api.register()
    stored = _tokenize(
        api, "registration-service", "account_registration", sid, {"date_of_birth": DOB}
    )
    assert "tokens" in stored, stored
    right = _tokenize(api, "checkout-service", "order_fulfillment", sid, {"date_of_birth": DOB})
    wrong = _tokenize(
        api, "checkout-service", "order_fulfillment", sid, {"date_of_birth": "1991-01-01"}
    )
    assert right == wrong, (right, wrong)
    assert right["error"]["code"] == "conflict" and "tokens" not in right
    # The service that wrote it cannot read it back either: its retry is a conflict too.
    again = _tokenize(
        api, "registration-service", "account_registration", sid, {"date_of_birth": DOB}
    )
    assert again == right


def test_tokenize_by_subject_id_is_decided_before_the_lookup(api: Api) -> None:
    live, _ = api.register()
    erased, _ = api.register()
    officer = api.h("privacy-officer")
    body = {"purpose": "subject_access_request", "reason": "asked"}
    assert (
        api.client.delete(f"/v1/subjects/{erased}", headers=officer, json=body).status_code == 200
    )
    answers = [
        _tokenize(api, "auditor", "order_fulfillment", s, {"email": "x@example.com"})
        for s in (live, erased, str(uuid.uuid4()))
    ]
    assert answers[0] == answers[1] == answers[2], answers
    assert answers[0]["error"]["code"] == "forbidden"


def test_detokenize_without_right_cannot_tell_real_from_made_up_and_every_miss_is_charged(
    api: Api,
) -> None:
    _, tokens = api.register()
    real, fake = tokens["passport_number"], "tok_" + "q" * 32
    budget = api.runtime.budget
    before = _spent(api, "svc:checkout-service")
    r = api.client.post(
        "/v1/detokenize",
        headers=api.h("checkout-service"),
        json={"purpose": "order_fulfillment", "tokens": [real, fake]},
    )
    assert r.status_code == 200
    a, b = r.json["results"]
    assert {k: v for k, v in a.items() if k != "token"} == {
        k: v for k, v in b.items() if k != "token"
    }
    assert _spent(api, "svc:checkout-service") == before + 2
    assert budget.limit > 2


def _spent(api: Api, principal: str) -> int:
    from sqlalchemy import select

    from access.models import LookupFailures

    with api.database.engine.connect() as conn:
        row = conn.execute(
            select(LookupFailures.failures).where(LookupFailures.principal == principal)
        ).first()
    return int(row[0]) if row else 0


def test_concurrent_batches_cannot_overrun_the_budget(
    api: Api, openbao: OpenBaoServer, tmp_path: Path
) -> None:
    limit, per_request, requests = 10, 5, 12
    apps = []
    for _ in range(2):  # two workers sharing the budget
        rt = compose(api.database.new_engine(), openbao.provider(), lookup_budget=(limit, 3600))
        apps.append((rt, create_app(AppConfig(Settings(home=tmp_path), runtime=rt))))
    answered: list[int] = []
    lock = threading.Lock()
    start = threading.Barrier(requests)

    def guess(n: int) -> None:
        client = apps[n % 2][1].test_client()
        body = {
            "purpose": "order_fulfillment",
            "tokens": ["tok_" + uuid.uuid4().hex for _ in range(per_request)],
        }
        start.wait()
        r = client.post("/v1/detokenize", headers=api.h("checkout-service"), json=body)
        if r.status_code == 200:
            with lock:
                answered.append(len(r.json["results"]))
        else:
            assert r.status_code == 429, r.json

    threads = [threading.Thread(target=guess, args=(n,)) for n in range(requests)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    # Answered misses stay within the budget plus one request's worth.
    assert sum(answered) <= limit - 1 + per_request, answered
    for rt, _ in apps:
        rt.vault.engine.dispose()
