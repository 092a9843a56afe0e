"""Soak: `pii-vault serve --workers 2` on PostgreSQL + a Raft OpenBao under N clients.

Starts everything itself (a private OpenBao with Raft storage, a fresh PostgreSQL
schema), runs a mixed load (register, tokenize batches of 10, detokenize 1 and 20
tokens) for ``--minutes``, samples every worker's RSS every 10 s, then runs
`reconcile --dry-run` and `audit verify`. Prints a JSON report; exit 1 on any error.

    python scripts/soak.py --minutes 5 --clients 4
"""

from __future__ import annotations

import argparse
import json
import os
import random
import sys
import tempfile
import threading
import time
import uuid
from collections import Counter
from pathlib import Path

import requests
from sqlalchemy import create_engine, text

from access.runtime import open_runtime
from api.demo.openbao import ManagedOpenBao, free_port
from api.demo.serve import ServedVault, transit_env
from vault.config import Settings
from vault.db import normalize_url

POSTGRES = os.environ.get(
    "PII_VAULT_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test"
)


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def phone() -> str:
    return "+44207" + str(uuid.uuid4().int)[:7]


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--minutes", type=float, default=5)
    parser.add_argument("--clients", type=int, default=4)
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="pii-soak-"))
    bao = ManagedOpenBao(work / "bao", persistent=True).start()
    token = bao.bootstrap()
    schema = f"piivault_soak_{uuid.uuid4().hex[:8]}"
    admin = create_engine(normalize_url(POSTGRES))
    with admin.begin() as conn:
        conn.execute(text(f'CREATE SCHEMA "{schema}"'))
    env = transit_env(
        work, bao.addr, token, database_url=f"{POSTGRES}?options=-csearch_path%3D{schema}"
    )
    runtime = open_runtime(Settings.from_env(env), migrate=True)
    runtime.policy.seed_default()
    keys = {
        r: runtime.principals.create(f"svc:{r}", [r])[1]
        for r in ("registration-service", "checkout-service")
    }
    port = free_port()
    server = ServedVault(env, port, workers=args.workers).start()
    url = server.url
    workers = server.worker_pids()

    reg = {"Authorization": f"Bearer {keys['registration-service']}"}
    chk = {"Authorization": f"Bearer {keys['checkout-service']}"}
    statuses: Counter[str] = Counter()
    errors: list[str] = []
    tokens: list[str] = []
    lock = threading.Lock()
    stop = time.monotonic() + args.minutes * 60

    def client(seed: int) -> None:
        rnd = random.Random(seed)
        session = requests.Session()
        while time.monotonic() < stop:
            op = rnd.choice(["register", "tokenize10", "detokenize1", "detokenize20"])
            try:
                if op == "register" or not tokens:
                    op = "register"
                    r = session.post(
                        url + "/v1/subjects",
                        headers=reg,
                        timeout=30,
                        json={
                            "purpose": "account_registration",
                            "external_id": uuid.uuid4().hex,
                            "fields": {"phone": phone(), "full_name": "Soak Tester"},
                        },
                    )
                    if r.status_code == 201:
                        with lock:
                            tokens.append(r.json()["tokens"]["phone"])
                elif op == "tokenize10":
                    records = [
                        {"external_id": uuid.uuid4().hex, "fields": {"phone": phone()}}
                        for _ in range(10)
                    ]
                    r = session.post(
                        url + "/v1/tokenize",
                        headers=reg,
                        timeout=30,
                        json={"purpose": "account_registration", "records": records},
                    )
                else:
                    n = 1 if op == "detokenize1" else 20
                    with lock:
                        sample = rnd.sample(tokens, min(n, len(tokens)))
                    r = session.post(
                        url + "/v1/detokenize",
                        headers=chk,
                        timeout=30,
                        json={"purpose": "order_fulfillment", "tokens": sample},
                    )
                    if r.status_code == 200 and any("value" not in x for x in r.json()["results"]):
                        raise AssertionError("a stored token did not resolve")
                with lock:
                    statuses[f"{op} {r.status_code}"] += 1
                    if r.status_code >= 300:
                        errors.append(f"{op} {r.status_code} {r.text[:200]}")
            except Exception as exc:
                with lock:
                    statuses[f"{op} exception"] += 1
                    errors.append(f"{op} {type(exc).__name__}: {exc}"[:200])

    threads = [threading.Thread(target=client, args=(i,)) for i in range(args.clients)]
    started = time.monotonic()
    for t in threads:
        t.start()
    memory: list[dict[str, object]] = []
    while any(t.is_alive() for t in threads):
        memory.append(
            {"t": round(time.monotonic() - started), "rss_kib": {w: rss_kib(w) for w in workers}}
        )
        time.sleep(10)
    elapsed = time.monotonic() - started

    server.stop()
    report = runtime.reconciler().run(dry_run=True)
    verified = runtime.audit.verify()
    total = sum(statuses.values())
    out = {
        "minutes": args.minutes,
        "clients": args.clients,
        "workers": args.workers,
        "requests": total,
        "requests_per_s": round(total / elapsed, 1),
        "errors": len(errors),
        "first_errors": errors[:5],
        "statuses": dict(sorted(statuses.items())),
        "worker_rss_kib": memory,
        "reconcile_broken": report.broken,
        "audit_verify": verified.summary(),
    }
    print(json.dumps(out, indent=1))
    runtime.close()
    bao.stop()
    with admin.begin() as conn:
        conn.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
    return 1 if errors or report.broken or not verified.ok else 0


if __name__ == "__main__":
    sys.exit(main())
