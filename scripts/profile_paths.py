"""Profile the hot HTTP paths in process (issue 11): create, single and batch detokenize.

Starts a dev-mode OpenBao, builds the app over SQLite (or ``--database URL``) with
the transit provider and drives it through Flask's test client with a warm
data-key cache, under cProfile. Prints per-request time and the top cost centres
(cumulative) of each path, plus SQL statements and commits per request.

    python scripts/profile_paths.py [--requests 300] [--database postgresql://...]
"""

from __future__ import annotations

import argparse
import cProfile
import io
import pstats
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

from sqlalchemy import event

from access.runtime import open_runtime
from api.app import AppConfig, create_app
from api.demo.openbao import ManagedOpenBao
from vault.config import Settings


def phone() -> str:
    return "+44207" + str(uuid.uuid4().int)[:7]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--requests", type=int, default=300)
    parser.add_argument("--database", default=None)
    parser.add_argument("--top", type=int, default=25)
    parser.add_argument("--only", nargs="*", default=["create", "single", "batch"])
    parser.add_argument("--callers", default="", help="who calls functions matching this")
    parser.add_argument("--sort", default="cumulative", help="cumulative or tottime")
    parser.add_argument(
        "--only-matching", default="", help="a regex over file:function, e.g. /(access|vault)/"
    )
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="pii-profile-"))
    with ManagedOpenBao(work / "bao") as bao:
        token = bao.bootstrap()
        env = {
            "PII_VAULT_HOME": str(work / "home"),
            "PII_VAULT_KEY_PROVIDER": "transit",
            "VAULT_ADDR": bao.addr,
            "VAULT_TOKEN": token,
            "PII_VAULT_LOOKUP_FAILURE_BUDGET": "1000000",
            "PII_VAULT_READ_BUDGET": "100000000/1000000000",  # profiled: never spent
        }
        if args.database:
            env["PII_VAULT_DATABASE_URL"] = args.database
        settings = Settings.from_env(env)
        runtime = open_runtime(settings, migrate=True)
        runtime.policy.seed_default()
        reg = runtime.principals.create(f"svc:reg{uuid.uuid4().hex[:6]}", ["registration-service"])[
            1
        ]
        chk = runtime.principals.create(f"svc:chk{uuid.uuid4().hex[:6]}", ["checkout-service"])[1]
        client = create_app(AppConfig(settings, runtime=runtime)).test_client()
        statements = {"n": 0, "commits": 0}

        @event.listens_for(runtime.vault.tx.engine, "before_cursor_execute")
        def _count(*_: Any) -> None:
            statements["n"] += 1

        @event.listens_for(runtime.vault.tx.engine, "commit")
        def _commit(*_: Any) -> None:
            statements["commits"] += 1

        def post(key: str, path: str, body: dict[str, Any]) -> dict[str, Any]:
            r = client.post(path, json=body, headers={"Authorization": f"Bearer {key}"})
            assert r.status_code < 300, (path, r.status_code, r.json)
            return r.json  # type: ignore[no-any-return]

        tokens: list[str] = []
        for _ in range(5):
            records = [
                {"external_id": uuid.uuid4().hex, "fields": {"phone": phone()}} for _ in range(200)
            ]
            out = post(reg, "/v1/tokenize", {"purpose": "account_registration", "records": records})
            tokens += [r["tokens"]["phone"] for r in out["results"]]
        for i in range(0, len(tokens), 400):  # warm the data-key cache
            post(
                chk,
                "/v1/detokenize",
                {"purpose": "order_fulfillment", "tokens": tokens[i : i + 400]},
            )

        def create(i: int) -> None:
            post(
                reg,
                "/v1/subjects",
                {
                    "purpose": "account_registration",
                    "external_id": uuid.uuid4().hex,
                    "fields": {
                        "phone": phone(),
                        "full_name": "Bench Mark",
                        "email": f"{uuid.uuid4().hex[:10]}@example.com",
                    },
                },
            )

        def single(i: int) -> None:
            post(
                chk,
                "/v1/detokenize",
                {"purpose": "order_fulfillment", "tokens": [tokens[i % len(tokens)]]},
            )

        def batch(i: int) -> None:
            start = (i * 400) % (len(tokens) - 400)
            post(
                chk,
                "/v1/detokenize",
                {"purpose": "order_fulfillment", "tokens": tokens[start : start + 400]},
            )

        paths = {"create": create, "single": single, "batch": batch}
        for name in args.only:
            fn = paths[name]
            n = args.requests if name != "batch" else max(10, args.requests // 10)
            for i in range(10):
                fn(i)  # warm
            statements.update(n=0, commits=0)
            t0, c0 = time.perf_counter(), time.process_time()
            for i in range(n):
                fn(i)
            plain = (time.perf_counter() - t0) / n * 1000
            cpu = (time.process_time() - c0) / n * 1000  # steadier than wall time (fsyncs)
            per_stmt, per_commit = statements["n"] / n, statements["commits"] / n
            prof = cProfile.Profile()
            prof.enable()
            for i in range(n):
                fn(i)
            prof.disable()
            out = io.StringIO()
            stats = pstats.Stats(prof, stream=out).sort_stats(args.sort)
            stats.print_stats(*([args.only_matching] if args.only_matching else []), args.top)
            if args.callers:
                stats.print_callers(args.callers)
            print(
                f"\n## {name}: {plain:.2f} ms/request unprofiled ({cpu:.2f} ms CPU), "
                f"{per_stmt:.1f} SQL statements and {per_commit:.1f} commits per request\n"
            )
            print(out.getvalue())
        runtime.close()


if __name__ == "__main__":
    main()
