"""Logs an on-call engineer can use (issue 23, finding 2), over a whole ``serve`` run.

The real server (gunicorn, two workers) with ``PII_VAULT_LOG_FORMAT=json`` on its own
OpenBao: subjects created, detokenized, exported and shredded, refusals, then OpenBao
stopped under a request. Every line is one JSON object with time, level and process;
each request has its line (request id, principal, route, status); the 503 is an ERROR
naming its cause; operator-visible actions are INFO; and no stored value, token, API
key or Vault token appears anywhere in the log.
"""

from __future__ import annotations

import json
import shutil
import tempfile
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import requests

from access.runtime import open_runtime
from api.demo.openbao import free_port
from api.demo.serve import ServedVault, transit_env
from tests.api_support import PERSON
from tests.conftest import OpenBaoServer, start_openbao
from tests.helpers import SENSITIVE_CONSENTS
from vault.config import Settings

pytestmark = pytest.mark.slow


@dataclass
class Run:
    lines: list[dict[str, Any]]
    secrets: list[str]  # everything that must never be in a log
    request_ids: dict[str, str]  # what a response said -> its request id


def _post(url: str, key: str, path: str, body: dict[str, Any]) -> requests.Response:
    return requests.post(
        url + path, headers={"Authorization": f"Bearer {key}"}, json=body, timeout=30
    )


@pytest.fixture(scope="module")
def run() -> Iterator[Run]:
    work = Path(tempfile.mkdtemp(prefix="pii-logs-"))
    bao: OpenBaoServer = start_openbao(work / "bao")
    env = transit_env(
        work,
        bao.addr,
        bao.service_token,
        PII_VAULT_LOG_FORMAT="json",
        PII_VAULT_AUDIT_ANCHOR_SECONDS="1",
        PII_VAULT_MAINTENANCE_INTERVAL="1",
    )
    runtime = open_runtime(Settings.from_env(env), migrate=True)
    runtime.policy.seed_default()
    keys = {
        r: runtime.principals.create(f"svc:{r}", [r])[1]
        for r in ("registration-service", "checkout-service", "privacy-officer")
    }
    runtime.close()
    log = work / "serve.log"
    server = ServedVault(env, free_port(), workers=2, log=log).start()
    external = f"ext-{uuid.uuid4().hex}"
    ids: dict[str, str] = {}
    try:
        url = server.url
        r = _post(
            url,
            keys["registration-service"],
            "/v1/subjects",
            {
                "purpose": "account_registration",
                "external_id": external,
                "fields": PERSON,
                "consents": SENSITIVE_CONSENTS,
            },
        )
        assert r.status_code == 201, r.text
        ids["created"] = r.headers["X-Request-Id"]
        sid, tokens = r.json()["subject_id"], r.json()["tokens"]
        r = _post(
            url,
            keys["checkout-service"],
            "/v1/detokenize",
            {"purpose": "order_fulfillment", "tokens": [tokens["phone"]]},
        )
        assert r.status_code == 200 and PERSON["phone"] in r.text, r.text
        ids["detokenized"] = r.headers["X-Request-Id"]
        r = requests.get(
            f"{url}/v1/subjects/{sid}/export?purpose=subject_access_request",
            headers={"Authorization": f"Bearer {keys['privacy-officer']}"},
            timeout=30,
        )
        assert r.status_code == 200 and PERSON["email"] in r.text, r.text
        refused = _post(url, "pvk_wrong." + "x" * 40, "/v1/detokenize", {"tokens": []})
        assert refused.status_code == 401
        ids["refused"] = refused.headers["X-Request-Id"]
        r = requests.delete(
            f"{url}/v1/subjects/{sid}",
            headers={"Authorization": f"Bearer {keys['privacy-officer']}"},
            json={"purpose": "subject_access_request", "reason": "the customer asked"},
            timeout=30,
        )
        assert r.status_code == 200, r.text
        deadline = time.monotonic() + 20
        while "audit anchored" not in log.read_text(encoding="utf-8"):
            assert time.monotonic() < deadline, "no anchor was written"
            time.sleep(0.2)
        bao.server.stop()  # a dependency fails under a request
        r = _post(
            url,
            keys["registration-service"],
            "/v1/subjects",
            {"purpose": "account_registration", "fields": {"email": "later@example.com"}},
        )
        assert r.status_code == 503, r.text
        ids["unavailable"] = r.headers["X-Request-Id"]
    finally:
        server.stop()
        bao.server.stop()
    text = log.read_text(encoding="utf-8")
    shutil.rmtree(work, ignore_errors=True)
    secrets = [
        *(v for v in PERSON.values()),
        external,
        *tokens.values(),
        *keys.values(),
        bao.service_token,
        bao.server.root_token,
        "later@example.com",
    ]
    lines = []
    for raw in text.splitlines():
        assert raw.startswith("{"), raw  # every line one JSON object: gunicorn's own too
        lines.append(json.loads(raw))
    yield Run(lines, [s for s in secrets if s], ids)


def _for(run: Run, name: str) -> dict[str, Any]:
    found = [
        line
        for line in run.lines
        if line.get("request_id") == run.request_ids[name] and "status" in line
    ]
    assert len(found) == 1, (name, found)
    return found[0]


def test_every_line_has_time_level_and_process(run: Run) -> None:
    assert run.lines
    for line in run.lines:
        assert line["ts"].endswith("Z") and "T" in line["ts"], line
        assert line["level"] in ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"), line
        assert isinstance(line["process"], int), line


def test_each_request_has_one_line_with_its_id_and_principal(run: Run) -> None:
    created = _for(run, "created")
    assert created["level"] == "INFO" and created["status"] == 201
    assert created["principal"] == "svc:registration-service"
    assert created["route"] == "/v1/subjects" and created["method"] == "POST"
    assert _for(run, "detokenized")["principal"] == "svc:checkout-service"
    refused = _for(run, "refused")
    assert refused["status"] == 401 and "principal" not in refused
    assert refused["cause"].startswith("unauthenticated")


def test_a_dependency_failure_is_one_error_line_naming_the_cause(run: Run) -> None:
    line = _for(run, "unavailable")
    assert line["level"] == "ERROR" and line["status"] == 503
    assert line["cause"].startswith("key_provider_unavailable"), line
    assert "127.0.0.1:" in line["cause"], line  # which Vault it could not reach


def test_operator_visible_actions_are_info(run: Run) -> None:
    messages = [line["message"] for line in run.lines if line["level"] == "INFO"]
    assert any(m.startswith("shred completed: subject ") for m in messages), messages
    assert any(m.startswith("audit anchored: seq ") for m in messages), messages


def test_no_value_token_or_key_is_in_the_log(run: Run) -> None:
    text = json.dumps(run.lines)
    for secret in run.secrets:
        assert secret not in text, "a stored value, token or key is in the log"
