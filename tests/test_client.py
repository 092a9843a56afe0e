"""Issue 22 (3): the typed Python client (clients/python, ``pii_vault_client``) against a
served instance (gunicorn, real OpenBao, SQLite): typed results, per-item batch results,
problem+json as exceptions by code, chunking to the server's PII_VAULT_MAX_BATCH; and
its retry rules against a scripted HTTP server (503/429 retried with Retry-After only for
idempotent calls)."""

from __future__ import annotations

import json
import os
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from pii_vault_client import (
    Client,
    DuplicateExternalId,
    Forbidden,
    InvalidRequest,
    Shredded,
    Unauthenticated,
    Unavailable,
)

from access.runtime import open_runtime
from api.demo.openbao import free_port
from api.demo.serve import ServedVault, transit_env
from tests.conftest import OpenBaoServer
from vault.config import Settings

ROLES = {
    "registration": "registration-service",
    "checkout": "checkout-service",
    "office": "privacy-officer",
    "auditor": "auditor",
}


@pytest.fixture(scope="module")
def served(openbao: OpenBaoServer, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    tmp = tmp_path_factory.mktemp("client")
    mount = f"t{os.urandom(5).hex()}"
    token = openbao.server.bootstrap(mount)
    env = transit_env(
        tmp, openbao.addr, token, PII_VAULT_TRANSIT_MOUNT=mount, PII_VAULT_MAX_BATCH="5"
    )
    runtime = open_runtime(Settings.from_env(env), migrate=True)
    runtime.policy.seed_default()
    keys = {who: runtime.principals.create(f"svc:{who}", [role])[1] for who, role in ROLES.items()}
    runtime.close()
    vault = ServedVault(env, free_port(), workers=1).start()
    try:
        yield vault.url, keys
    finally:
        vault.stop()


def _client(served: Any, who: str, **kw: Any) -> Client:
    url, keys = served
    return Client(url, api_key=keys[who], max_batch=kw.pop("max_batch", 5), **kw)


def test_create_tokenize_detokenize_typed_and_chunked(served: Any) -> None:
    with _client(served, "registration") as reg, _client(served, "checkout") as shop:
        created = reg.create_subject(
            "account_registration",
            {"full_name": "Ada Lovelace", "email": "ada@example.com"},
            external_id="client-ada",
        )
        assert created.subject_id and set(created.tokens) == {"full_name", "email"}
        with pytest.raises(DuplicateExternalId):  # by the problem's code
            reg.create_subject(
                "account_registration", {"email": "x@example.com"}, external_id="client-ada"
            )
        # 12 records against a server that takes 5 per request: three requests, in order.
        records = [
            {"external_id": f"c-{i}", "fields": {"phone": f"+4420700000{i:02d}"}} for i in range(12)
        ]
        records[7] = {"external_id": "c-bad", "fields": {"phone": "not a phone"}}
        results = shop.tokenize("order_fulfillment", records)
        assert len(results) == 12
        assert [r.ok for r in results] == [i != 7 for i in range(12)]
        assert results[7].error is not None and results[7].error.code
        tokens = [r.tokens["phone"] for r in results if r.ok] + ["tok_notatoken"]
        read = shop.detokenize("order_fulfillment", tokens)
        assert [r.value for r in read[:11]] == [f"+4420700000{i:02d}" for i in range(12) if i != 7]
        assert read[-1].error is not None and not read[-1].ok
        with pytest.raises(InvalidRequest):  # unchunked: the server's own bound refuses
            _client(served, "checkout", max_batch=500).tokenize("order_fulfillment", records)


def test_errors_by_code_and_status(served: Any) -> None:
    url, _keys = served
    with pytest.raises(Unauthenticated) as info:
        Client(url, api_key="pvk_0123456789abcdef." + "A" * 43).audit_events()
    assert info.value.status == 401 and info.value.code == "unauthenticated"
    with _client(served, "registration") as reg, _client(served, "office") as office:
        created = reg.create_subject("account_registration", {"email": "gone@example.com"})
        with pytest.raises(Forbidden) as refused:  # only the privacy office exports
            reg.export(created.subject_id, "subject_access_request")
        assert refused.value.code and "gone@example.com" not in str(refused.value)
        receipt = office.shred(created.subject_id, "subject_access_request", "the customer asked")
        assert receipt.subject_id == created.subject_id and receipt.subject_key_destroyed
        assert office.shred(created.subject_id, "subject_access_request", "again").signature
        with pytest.raises(Shredded):
            office.export(created.subject_id, "subject_access_request")
    with _client(served, "auditor") as auditor:
        assert auditor.verify_audit().ok
        assert auditor.audit_events(limit=3)


class _Scripted(BaseHTTPRequestHandler):
    """Answers from a script: each request pops the next (status, headers, body)."""

    script: list[tuple[int, dict[str, str], dict[str, Any]]] = []
    seen: list[str] = []

    def _answer(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        self.rfile.read(length)
        type(self).seen.append(f"{self.command} {self.path}")
        status, headers, body = type(self).script.pop(0)
        data = json.dumps(body).encode()
        self.send_response(status)
        for k, v in {"Content-Type": "application/json", **headers}.items():
            self.send_header(k, v)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    do_GET = do_POST = _answer

    def log_message(self, *_args: Any) -> None:
        pass


@pytest.fixture
def scripted() -> Iterator[tuple[str, type[_Scripted]]]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Scripted)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    _Scripted.script, _Scripted.seen = [], []
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", _Scripted
    finally:
        server.shutdown()


def test_idempotent_calls_retry_503_and_429_honouring_retry_after(
    scripted: tuple[str, type[_Scripted]],
) -> None:
    url, handler = scripted
    busy = {"code": "key_provider_unavailable", "detail": "Vault", "status": 503}
    spent = {"code": "read_budget_spent", "detail": "later", "status": 429}
    handler.script = [
        (503, {"Retry-After": "0"}, busy),
        (429, {"Retry-After": "0"}, spent),
        (
            200,
            {},
            {"results": [{"token": "t", "field": "phone", "value": "+1", "redaction": "plain"}]},
        ),
    ]
    client = Client(url, api_key="k", backoff=0.01)
    assert client.detokenize("order_fulfillment", ["t"])[0].value == "+1"
    assert len(handler.seen) == 3
    # A create is not idempotent: its 503 is reported, never repeated.
    handler.script, handler.seen = [(503, {"Retry-After": "0"}, busy)], []
    with pytest.raises(Unavailable) as info:
        client.create_subject("account_registration", {"email": "a@example.com"})
    assert info.value.code == "key_provider_unavailable" and len(handler.seen) == 1
    # Retries run out: the last answer is raised.
    handler.script, handler.seen = [(503, {"Retry-After": "0"}, busy)] * 3, []
    with pytest.raises(Unavailable):
        Client(url, api_key="k", retries=2, backoff=0.01).healthz()
    assert len(handler.seen) == 3


def test_a_client_generated_from_the_openapi_document_makes_a_call(
    served: Any, tmp_path: Path
) -> None:
    """The document is the contract: a standard generator (openapi-python-client) turns it
    into a client that imports and makes an authenticated call."""
    import importlib
    import subprocess
    import sys

    import requests

    url, keys = served
    spec = tmp_path / "openapi.json"
    spec.write_text(requests.get(url + "/v1/openapi.json", timeout=10).text)
    generator = Path(sys.executable).with_name("openapi-python-client")
    done = subprocess.run(
        [str(generator), "generate", "--path", str(spec), "--meta", "none",
         "--output-path", str(tmp_path / "generated_pii_vault")],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    sys.path.insert(0, str(tmp_path))
    try:
        client_module = importlib.import_module("generated_pii_vault.client")
        # The module is named after the hand-chosen operationId (issue 23).
        events = importlib.import_module("generated_pii_vault.api.audit.list_audit_events")
        client = client_module.AuthenticatedClient(base_url=url, token=keys["auditor"])
        answer = events.sync_detailed(client=client, limit=2)
        assert answer.status_code == 200
        assert answer.parsed is not None and len(answer.parsed.events) <= 2
    finally:
        sys.path.remove(str(tmp_path))
