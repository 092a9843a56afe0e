"""Bulk import against OpenBao's own key rate, in one run (issue 21).

Generates N subjects (external id, name, email, phone), runs ``pii-vault import`` on them
as a real process (transit provider, a real OpenBao dev server, SQLite or PostgreSQL),
then measures OpenBao creating a transit key plus a data key at the import's own
concurrency (``vault/intents.PARALLEL`` key creations per batch) for the same time, and
prints both rates and their ratio. A re-run of the same file is timed too (everything
``already present``: what a resume after a crash costs).

    python scripts/bench_import.py --subjects 100000 --database sqlite
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path
from typing import Any

import hvac

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from api.demo.openbao import ManagedOpenBao
from api.demo.serve import transit_env
from vault.intents import PARALLEL

POSTGRES = os.environ.get(
    "PII_VAULT_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test"
)


def people(path: Path, n: int) -> None:
    with path.open("w", encoding="utf-8") as out:
        for i in range(n):
            record = {
                "external_id": f"bench-{i}",
                "fields": {
                    "full_name": f"Person {i}",
                    "email": f"p{i}@bench.example",
                    "phone": f"+1415555{i % 10000:04d}",
                },
            }
            out.write(json.dumps(record) + "\n")


def proc_cpu(pid: int) -> float:
    """CPU seconds (user + system) a process has used so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def cli(env: dict[str, str], *args: str, profile: str = "") -> tuple[float, str]:
    command = [sys.executable, "-m", "api.cli", *args]
    if profile:  # py-spy's collapsed stacks of every thread, idle time included
        command = [
            "py-spy",
            "record",
            "--format",
            "raw",
            "--idle",
            "--threads",
            "-r",
            "200",
            "-o",
            profile,
            "--",
            *command,
        ]
    started = time.monotonic()
    done = subprocess.run(command, env=env, capture_output=True, text=True)
    elapsed = time.monotonic() - started
    if done.returncode != 0:
        raise SystemExit(f"pii-vault {' '.join(args)}: {done.returncode}\n{done.stderr[-2000:]}")
    return elapsed, done.stdout.strip()


def openbao_create_rate(bao: ManagedOpenBao, clients: int, seconds: float) -> tuple[float, int]:
    count = [0] * clients
    stop = time.monotonic() + seconds

    def loop(i: int) -> None:
        c = hvac.Client(url=bao.addr, token=bao.root_token)
        while time.monotonic() < stop:
            name = f"bench-{uuid.uuid4().hex}"
            c.secrets.transit.create_key(name, mount_point="transit")
            c.secrets.transit.generate_data_key(name, key_type="wrapped", mount_point="transit")
            count[i] += 1

    threads = [threading.Thread(target=loop, args=(i,)) for i in range(clients)]
    started = time.monotonic()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return sum(count) / (time.monotonic() - started), sum(count)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--subjects", type=int, default=2000)
    parser.add_argument("--database", choices=["sqlite", "postgresql"], default="sqlite")
    parser.add_argument("--batch", type=int, default=500, help="PII_VAULT_MAX_BATCH")
    parser.add_argument("--profile", default="", help="py-spy raw output of the import")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="pii-bench-import-"))
    data = work / "people.jsonl"
    people(data, args.subjects)
    schema = f"bench_import_{uuid.uuid4().hex[:8]}"
    url = ""
    if args.database == "postgresql":
        import sqlalchemy

        engine = sqlalchemy.create_engine(
            POSTGRES.replace("postgresql://", "postgresql+psycopg://")
        )
        with engine.begin() as conn:
            conn.execute(sqlalchemy.text(f'CREATE SCHEMA "{schema}"'))
        url = f"{POSTGRES}?options=-csearch_path%3D{schema}"
    with ManagedOpenBao(work / "bao") as bao:
        token = bao.bootstrap()
        env = transit_env(
            work, bao.addr, token, database_url=url, PII_VAULT_MAX_BATCH=str(args.batch)
        )
        cli({**env, "VAULT_TOKEN": bao.root_token}, "init")  # init sets transit up: privileged
        cli(env, "principal", "create", "svc:registration", "--role", "registration-service")
        bao_before, import_before = proc_cpu(bao.pid), children_cpu()
        seconds, summary = cli(env, "import", str(data), profile=args.profile)
        import_cpu, bao_cpu = children_cpu() - import_before, proc_cpu(bao.pid) - bao_before
        again, resumed = cli(env, "import", str(data))
        rate = args.subjects / seconds
        bao_before, client_before = proc_cpu(bao.pid), time.process_time()
        baseline, made = openbao_create_rate(bao, PARALLEL, min(max(seconds, 5.0), 30.0))
        base_bao = proc_cpu(bao.pid) - bao_before
        base_client = time.process_time() - client_before
    if args.database == "postgresql":
        with engine.begin() as conn:
            conn.execute(sqlalchemy.text(f'DROP SCHEMA "{schema}" CASCADE'))
    result: dict[str, Any] = {
        "machine": f"{platform.node()}, {os.cpu_count()} cores",
        "database": args.database,
        "subjects": args.subjects,
        "batch": args.batch,
        "import_seconds": round(seconds, 1),
        "import_rate": round(rate, 1),
        "openbao_key_plus_data_key_rate": round(baseline, 1),
        "ratio": round(rate / baseline, 2),
        "cpu_ms_per_subject": {
            "import_process": round(import_cpu / args.subjects * 1000, 2),
            "openbao": round(bao_cpu / args.subjects * 1000, 2),
        },
        "cpu_ms_per_key_plus_data_key_directly": {
            "client": round(base_client / made * 1000, 2),
            "openbao": round(base_bao / made * 1000, 2),
        },
        "rerun_seconds": round(again, 1),
        "summary": summary,
        "rerun_summary": resumed,
    }
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
