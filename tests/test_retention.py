"""Issue 20 (§4 retention, first part): a value past its retention period is returned by
no read (detokenize answers ``expired``; masked view, reveal and export leave it out), the
maintenance tick purges it and audits each subject and field it removed with a count, and
``/metrics`` shows the values overdue. Over HTTP, SQLite and PostgreSQL, real OpenBao.

Reported: reads did not check ``retain_until`` — an expired value came back in plaintext
until ``purge-expired`` ran from cron, and its audit event named no subject, field or
count. On the code before, the detokenize below answered the device model.
"""

from __future__ import annotations

import datetime as dt

from sqlalchemy import text

from tests.api_support import JUST, Api
from vault.receipts import verify_receipt

DEVICE = "Pixel 9 Pro Fold"  # device_model: kept 3 years (fields.toml)


def _subject_with_device(api: Api) -> tuple[str, str]:
    sid, _ = api.register()
    r = api.client.patch(
        f"/v1/subjects/{sid}/fields",
        headers=api.h("registration-service"),
        json={"purpose": "account_registration", "fields": {"device_model": DEVICE}},
    )
    assert r.status_code == 200, r.json
    return sid, str(r.json["tokens"]["device_model"])


def _age(api: Api, sid: str) -> None:
    """Time passing: the value's period ended a minute ago."""
    past = dt.datetime.now(dt.UTC) - dt.timedelta(minutes=1)
    with api.database.engine.begin() as conn:
        conn.execute(
            text("UPDATE field_values SET retain_until = :t WHERE subject_id = :s AND field = :f"),
            {"t": past, "s": sid, "f": "device_model"},
        )


def _detokenize(api: Api, token: str) -> dict[str, object]:
    r = api.client.post(
        "/v1/detokenize",
        headers=api.h("fraud-service"),
        json={"purpose": "fraud_prevention", "tokens": [token]},
    )
    assert r.status_code == 200, r.json
    return dict(r.json["results"][0])


def _overdue(api: Api) -> float:
    body = api.client.get("/metrics").get_data(as_text=True)
    line = next(x for x in body.splitlines() if x.startswith("pii_vault_values_overdue "))
    return float(line.split()[1])


def test_an_expired_value_is_returned_by_no_read_and_purged_with_an_audit(api: Api) -> None:
    sid, token = _subject_with_device(api)
    assert _detokenize(api, token)["value"] == DEVICE
    assert _overdue(api) == 0
    _age(api, sid)

    item = _detokenize(api, token)
    assert item.get("value") is None and item["error"]["code"] == "expired", item  # type: ignore[index]
    view = api.client.get(
        f"/v1/subjects/{sid}",
        headers=api.h("privacy-officer"),
        query_string={"purpose": "subject_access_request"},
    )
    assert view.status_code == 200 and "device_model" not in view.json["fields"]
    export = api.client.get(
        f"/v1/subjects/{sid}/export",
        headers=api.h("privacy-officer"),
        query_string={"purpose": "subject_access_request"},
    )
    assert export.status_code == 200 and DEVICE not in export.get_data(as_text=True)
    assert _overdue(api) == 1

    api.runtime.maintenance.run_once()  # the tick purges: no cron needed
    assert _overdue(api) == 0
    with api.database.engine.connect() as conn:
        left = conn.execute(
            text("SELECT count(*) FROM field_values WHERE subject_id = :s AND field = :f"),
            {"s": sid, "f": "device_model"},
        ).scalar_one()
    assert left == 0
    purges = api.runtime.audit.events(action="retention_purge", limit=10)
    assert len(purges) == 1
    event = purges[0]
    assert event["subject_ids"] == [sid] and event["fields"] == ["device_model"]
    assert event["outcome"]["*"]["removed"] == 1
    assert DEVICE not in str(event)
    item = _detokenize(api, token)
    assert item["error"]["code"] == "not_found"  # type: ignore[index]
    api.runtime.maintenance.run_once()
    assert len(api.runtime.audit.events(action="retention_purge", limit=10)) == 1  # nothing new


ORDER = "order 8812: 2 umbrellas, 39.80 EUR, paid 2026-11-30"
FIXED = "order 8812: 2 umbrellas, 35.80 EUR (discount), paid 2026-11-30"


def _order(api: Api, sid: str, record: str) -> None:
    r = api.client.patch(
        f"/v1/subjects/{sid}/fields",
        headers=api.h("checkout-service"),
        json={"purpose": "order_fulfillment", "fields": {"transaction_record": record}},
    )
    assert r.status_code == 200, r.json


def _export(api: Api, sid: str, purpose: str) -> dict[str, object]:
    query = {"purpose": purpose, **(JUST if purpose == "legal_compliance" else {})}
    r = api.client.get(
        f"/v1/subjects/{sid}/export", headers=api.h("privacy-officer"), query_string=query
    )
    assert r.status_code == 200, r.json
    return dict(r.json)


def test_a_correction_keeps_the_prior_record_to_its_floor_and_does_not_restart_the_clock(
    api: Api,
) -> None:
    """Reported: retain_until was reset by every write, and a correction destroyed the
    previous order record that e-commerce law requires to be kept 3 years."""
    sid, _ = api.register()
    _order(api, sid, ORDER)
    before = _export(api, sid, "subject_access_request")["fields"]["transaction_record"]  # type: ignore[index]
    _order(api, sid, FIXED)
    after = _export(api, sid, "subject_access_request")
    record = after["fields"]["transaction_record"]  # type: ignore[index]
    assert record["value"] == FIXED
    assert record["retain_until"] == before["retain_until"]  # the clock runs from the order
    assert "prior_versions" not in after and ORDER not in str(after)  # the office's only

    legal = _export(api, sid, "legal_compliance")
    (prior,) = legal["prior_versions"]  # type: ignore[misc]
    assert prior["field"] == "transaction_record" and prior["value"] == ORDER
    assert prior["kept_until"][:4] == str(int(prior["written_at"][:4]) + 3)
    with api.database.engine.connect() as conn:
        raw = repr(conn.execute(text("SELECT * FROM field_versions")).all())
    assert "umbrellas" not in raw  # encrypted under the subject's data key

    with api.database.engine.begin() as conn:  # three years on
        conn.execute(
            text("UPDATE field_versions SET keep_until = :t WHERE subject_id = :s"),
            {"t": dt.datetime.now(dt.UTC) - dt.timedelta(minutes=1), "s": sid},
        )
    assert "prior_versions" in _export(api, sid, "legal_compliance")
    assert _export(api, sid, "legal_compliance")["prior_versions"] == []  # past: not read
    api.runtime.maintenance.run_once()
    (event,) = api.runtime.audit.events(action="retention_purge", limit=5)
    assert event["outcome"]["*"]["prior_versions_removed"] == 1
    assert event["fields"] == ["transaction_record"] and event["subject_ids"] == [sid]
    with api.database.engine.connect() as conn:
        left = conn.execute(text("SELECT count(*) FROM field_versions")).scalar_one()
    assert left == 0


def test_a_shred_keeps_records_under_a_floor_under_a_hold_key_until_it_passes(api: Api) -> None:
    """Reported: a shred destroyed transaction records e-commerce law requires to be kept
    3 years. Now everything else goes at once; the order records stay under a key of their
    own (named in the receipt) and go, with a second receipt, when the floor passes."""
    sid, tokens = api.register()
    _order(api, sid, ORDER)
    _order(api, sid, FIXED)
    r = api.client.delete(
        f"/v1/subjects/{sid}",
        headers=api.h("privacy-officer"),
        json={"purpose": "legal_compliance", **JUST},
    )
    assert r.status_code == 200, r.json
    receipt = r.json["receipt"]
    held = receipt["held"]
    assert held["fields"] == ["transaction_record"] and held["until"][:4] == str(
        dt.datetime.now(dt.UTC).year + 3
    )
    public = api.runtime.backend.signing_public_key()
    assert verify_receipt(receipt, public) and api.runtime.shredder.confirm(receipt)
    forged = {**receipt, "held": {**held, "until": "2099-01-01T00:00:00Z"}}
    assert not verify_receipt(forged, public)  # what was kept is signed too
    hold_id = held["hold_id"]

    # Everything of the subject is gone; its email token resolves no more.
    r = api.client.post(
        "/v1/detokenize",
        headers=api.h("registration-service"),
        json={"purpose": "account_registration", "tokens": [tokens["email"]]},
    )
    assert r.json["results"][0]["error"]["code"] in ("not_found", "shredded")
    assert not api.runtime.backend.subject_key_exists(sid)
    with api.database.engine.connect() as conn:
        raw = repr(conn.execute(text("SELECT * FROM field_values")).all())
        raw += repr(conn.execute(text("SELECT * FROM field_versions")).all())
    assert "umbrellas" not in raw

    # The held records: for legal_compliance only, never for anyone else, never shredded early.
    legal = _export(api, hold_id, "legal_compliance")
    assert legal["status"] == "held"
    assert legal["fields"]["transaction_record"]["value"] == FIXED  # type: ignore[index]
    assert [v["value"] for v in legal["prior_versions"]] == [ORDER]  # type: ignore[union-attr]
    sar = api.client.get(
        f"/v1/subjects/{hold_id}/export",
        headers=api.h("privacy-officer"),
        query_string={"purpose": "subject_access_request"},
    )
    assert sar.status_code in (404, 410)
    early = api.client.delete(
        f"/v1/subjects/{hold_id}",
        headers=api.h("privacy-officer"),
        json={"purpose": "legal_compliance", **JUST},
    )
    assert early.status_code == 409 and early.json["code"] == "legal_hold"
    api.runtime.maintenance.run_once()
    assert api.runtime.backend.subject_key_exists(hold_id)  # not due: kept

    # Three years on: the tick shreds the held subject and audits the second receipt.
    past = dt.datetime.now(dt.UTC) - dt.timedelta(minutes=1)
    with api.database.engine.begin() as conn:
        conn.execute(text("UPDATE retention_holds SET until = :t"), {"t": past})
        conn.execute(
            text("UPDATE field_values SET retain_until = :t WHERE subject_id = :h"),
            {"t": past, "h": hold_id},
        )
        conn.execute(
            text("UPDATE field_versions SET keep_until = :t WHERE subject_id = :h"),
            {"t": past, "h": hold_id},
        )
    api.runtime.maintenance.run_once()
    assert not api.runtime.backend.subject_key_exists(hold_id)
    (event,) = api.runtime.audit.events(action="retention_release", limit=5)
    assert event["subject_ids"] == [sid, hold_id]
    second = event["outcome"]["*"]["receipt"]
    assert second["subject_id"] == hold_id and verify_receipt(second, public)
    api.runtime.maintenance.run_once()
    assert len(api.runtime.audit.events(action="retention_release", limit=5)) == 1  # once
