"""Throughput and Vault round trips of the core vault against real OpenBao + SQLite/PostgreSQL.

Usage: python scripts/bench_vault.py [--subjects N] [--reads K] [--database URL]
Writes nothing; prints a Markdown table for docs/BENCHMARKS.md.
"""

from __future__ import annotations

import argparse
import platform
import tempfile
import time
from pathlib import Path

from api.demo.openbao import ManagedOpenBao
from keys.counting import CallCounter
from keys.transit import TransitKeyProvider
from vault.cache import DataKeyCache
from vault.db import make_engine, migrate
from vault.service import VaultService


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--subjects", type=int, default=200)
    parser.add_argument("--reads", type=int, default=5)
    parser.add_argument("--database", default="")
    args = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="pii-bench-"))
    with ManagedOpenBao(work / "bao") as bao:
        token = bao.bootstrap()
        url = args.database or f"sqlite:///{work / 'bench.db'}"
        schema = None
        if url.startswith("postgresql"):
            from sqlalchemy import text

            schema = f"bench_{int(time.time())}"
            with make_engine(url).begin() as conn:
                conn.execute(text(f'CREATE SCHEMA "{schema}"'))
        engine = make_engine(url, schema=schema)
        migrate(engine)
        rows = []
        for label, cache in (
            ("cache on (default: 1024 keys, 300 s)", DataKeyCache()),
            ("cache effectively off (TTL 1 µs)", DataKeyCache(ttl_seconds=1e-6)),
        ):
            provider = TransitKeyProvider(bao.addr, token)
            counter = CallCounter()
            service = VaultService(engine, counter.wrap(provider), cache=cache)
            t0 = time.perf_counter()
            tokens = []
            for i in range(args.subjects):
                created = service.create_subject(
                    {
                        "email": f"user{i}@example.com",
                        "phone": f"+1415555{i:04d}",
                        "card_number": "4242424242424242",
                    }
                )
                tokens.extend(created.tokens.values())
            t1 = time.perf_counter()
            calls_before = counter.count
            for _ in range(args.reads):
                for tok in tokens:
                    service.detokenize([tok])
            t2 = time.perf_counter()
            reads = args.reads * len(tokens)
            rows.append(
                f"| {label} | {args.subjects / (t1 - t0):.0f} | {reads / (t2 - t1):.0f} | "
                f"{(counter.count - calls_before) / reads:.3f} |"
            )
            provider.close()
        if schema:
            from sqlalchemy import text

            with make_engine(url).begin() as conn:
                conn.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
    db = "PostgreSQL 15 (127.0.0.1)" if schema else "SQLite (WAL)"
    print(
        f"Machine: {platform.machine()}, {platform.processor() or 'cpu'}, "
        f"Python {platform.python_version()}; OpenBao dev server on loopback; {db}"
    )
    print(f"{args.subjects} subjects x 3 fields; {args.reads} single-token detokenize per token\n")
    print("| data-key cache | creates/s (3 fields) | detokenize/s | Vault calls per detokenize |")
    print("|---|---|---|---|")
    print("\n".join(rows))


if __name__ == "__main__":
    main()
