"""Issue 20 (§4 incident response): the alert hook also hears of conditions — subjects
whose key is lost, the audit anchor failing or behind, bulk exports — once as each starts
(or grows), not at every tick. Over HTTP, SQLite and PostgreSQL, real OpenBao, a real
HTTP receiver.

Reported: no alert for anchor backlog, damaged subjects or bulk exports. On the code
before, the receiver below got nothing.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.api_support import Api, Receiver, alerting_api
from tests.conftest import Database, OpenBaoServer
from tests.helpers import ALICE


@pytest.fixture
def api(
    openbao: OpenBaoServer, database: Database, tmp_path: Path, receiver: Receiver
) -> Iterator[Api]:
    yield from alerting_api(database, openbao.provider(), tmp_path, receiver, bulk_export_alert=3)


def _alerts(api: Api, receiver: Receiver, kind: str) -> list[dict[str, object]]:
    assert api.runtime.guard.alerts.flush()
    return [a for a in receiver.alerts() if a["kind"] == kind]


def test_a_damaged_subject_alerts_once(api: Api, receiver: Receiver) -> None:
    sid, _ = api.register()
    api.runtime.backend.destroy_subject_key(sid)  # lost in Vault, never shredded
    api.runtime.vault.datakeys.evict_subject(sid)  # as a worker that had not cached it
    r = api.client.get(
        f"/v1/subjects/{sid}",
        headers=api.h("support-agent"),
        query_string={"purpose": "customer_support"},
    )
    assert r.status_code == 500 and r.json["code"] == "subject_damaged"
    api.runtime.maintenance.run_once()
    api.runtime.maintenance.run_once()  # still damaged: not told again within the hour
    (alert,) = _alerts(api, receiver, "subjects_damaged")
    assert alert["detail"] == {"count": 1}


def test_a_failing_anchor_alerts_with_its_backlog(
    api: Api, receiver: Receiver, monkeypatch: pytest.MonkeyPatch
) -> None:
    api.runtime.maintenance.run_once()
    assert _alerts(api, receiver, "anchor_backlog") == []  # anchored: nothing to say
    anchorer = api.runtime.audit.anchorer
    assert anchorer is not None

    def vault_down() -> int:
        raise RuntimeError("anchor store unreachable")  # as when OpenBao does not answer

    monkeypatch.setattr(anchorer, "anchor", vault_down)
    api.register()  # events the anchor does not reach
    api.runtime.maintenance.run_once()
    (alert,) = _alerts(api, receiver, "anchor_backlog")
    detail = alert["detail"]
    assert isinstance(detail, dict) and detail["failing"] is True and detail["unanchored"] > 0


def test_bulk_exports_alert_as_the_threshold_is_crossed(api: Api, receiver: Receiver) -> None:
    sids = [api.register()[0] for _ in range(4)]
    for sid in sids:
        r = api.client.get(
            f"/v1/subjects/{sid}/export",
            headers=api.h("privacy-officer"),
            query_string={"purpose": "subject_access_request"},
        )
        assert r.status_code == 200
    (alert,) = _alerts(api, receiver, "bulk_export")  # at the third, not again at the fourth
    assert alert["detail"] == {
        "count": 3,
        "principal": "svc:privacy-officer",
        "action": "export",
        "window_seconds": 3600,
    }
    body = str(receiver.alerts())
    assert ALICE["email"] not in body and ALICE["full_name"] not in body  # never a value
