"""Issue 21: both production servers of ``pii-vault serve`` keep the serving contract.

gunicorn (the default) and Granian (``--server granian``) each: answer the API, stop on
SIGTERM with no worker left behind, and close each worker's runtime on the way out, so
the audit events a worker wrote are anchored outside the database before it exits.
Slow clients are covered for both by tests/test_slow_clients.py.
"""

from __future__ import annotations

import os
import subprocess
import time
from pathlib import Path

import pytest
import requests

from access.runtime import open_runtime
from api.demo.openbao import free_port
from api.demo.serve import ServedVault, transit_env
from tests.conftest import OpenBaoServer
from vault.config import Settings


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return (
        Path(f"/proc/{pid}").exists()
        and "Z" not in Path(f"/proc/{pid}/stat").read_text().split()[2]
    )


@pytest.mark.parametrize("server", ["granian", "gunicorn"])
def test_a_stopped_server_leaves_no_worker_and_its_audit_tail_anchored(
    server: str, openbao: OpenBaoServer, tmp_path: Path
) -> None:
    mount = f"t{os.urandom(5).hex()}"
    token = openbao.server.bootstrap(mount)
    env = transit_env(
        tmp_path,
        openbao.addr,
        token,
        PII_VAULT_TRANSIT_MOUNT=mount,
        PII_VAULT_AUDIT_ANCHOR_EVERY="100000",  # only a worker's close anchors in this test
        PII_VAULT_AUDIT_ANCHOR_SECONDS="3600",
    )
    runtime = open_runtime(Settings.from_env(env), migrate=True)
    runtime.policy.seed_default()
    key = runtime.principals.create("svc:auditor", ["auditor"])[1]
    anchorer = runtime.audit.anchorer
    assert anchorer is not None
    before = anchorer.head_seq()
    served = ServedVault(env, free_port(), workers=2, server=server).start()
    workers = served.worker_pids()
    assert len(workers) == 2
    for _ in range(6):
        r = requests.get(
            served.url + "/v1/audit?limit=1", headers={"Authorization": f"Bearer {key}"}, timeout=10
        )
        assert r.status_code == 200
    assert anchorer.head_seq() > before
    group = served.process.pid if served.process else 0
    served.stop()
    deadline = time.monotonic() + 10
    while any(_alive(p) for p in workers) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not any(_alive(p) for p in workers)
    left = subprocess.run(["pgrep", "-g", str(group)], capture_output=True, text=True).stdout
    assert not left.strip()
    tip = anchorer._discover_tip()
    assert tip >= anchorer.head_seq(), "a worker stopped with audit events unanchored"
    runtime.close()


def _healthz_count(text: str) -> float:
    from prometheus_client.parser import text_string_to_metric_families

    return sum(
        s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
        if s.name == "pii_vault_http_requests_total"
        and s.labels.get("endpoint") == "/healthz"
        and s.labels.get("status") == "200"
    )


def _counter(text: str, name: str) -> float:
    from prometheus_client.parser import text_string_to_metric_families

    return sum(
        s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
        if s.name == name
    )


@pytest.mark.parametrize("server", ["gunicorn", "granian"])
def test_metrics_add_up_over_every_worker(
    server: str, openbao: OpenBaoServer, tmp_path: Path
) -> None:
    """Issue 22 (5): behind one port a scrape lands on any worker; each scrape reports the
    sum over all of them (it reported the answering worker's own counters)."""
    mount = f"t{os.urandom(5).hex()}"
    token = openbao.server.bootstrap(mount)
    env = transit_env(tmp_path, openbao.addr, token, PII_VAULT_TRANSIT_MOUNT=mount)
    runtime = open_runtime(Settings.from_env(env), migrate=True)
    runtime.policy.seed_default()
    key = runtime.principals.create("svc:registration", ["registration-service"])[1]
    runtime.close()
    served = ServedVault(env, free_port(), workers=2, server=server).start()
    try:
        assert len(served.worker_pids()) == 2
        for _ in range(40):  # a new connection each: spread over the workers
            assert requests.get(served.url + "/healthz", timeout=10).status_code == 200
        for i in range(6):  # Vault calls (the vault's own counter, mirrored)
            r = requests.post(
                served.url + "/v1/subjects",
                headers={"Authorization": f"Bearer {key}"},
                json={
                    "purpose": "account_registration",
                    "external_id": f"m-{i}",
                    "fields": {"email": f"m{i}@example.com"},
                },
                timeout=30,
            )
            assert r.status_code == 201, r.text
        calls = []
        for _ in range(8):
            text = requests.get(served.url + "/metrics", timeout=10).text
            assert _healthz_count(text) == 40, text[:2000]
            calls.append(_counter(text, "pii_vault_key_provider_calls_total"))
        assert calls == sorted(calls) and calls[-1] > 0  # mirrored: summed, never backwards
    finally:
        served.stop()
