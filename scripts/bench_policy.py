"""Cost of one access decision with 10 and with 10,000 policy lines.

Usage: python scripts/bench_policy.py [--decisions N]
Measures (1) Casbin's enforce without the decision cache, (2) the cached engine,
(3) Decider.decide end to end (revision check in SQLite + cache).
"""

from __future__ import annotations

import argparse
import itertools
import platform
import statistics
import tempfile
import time
from collections.abc import Callable

from access.models import PolicyRule
from access.policy import ACTIONS, PolicyEngine, Rule, default_policy
from access.purposes import Purposes
from access.runtime import compose
from keys.local import LocalKeyProvider
from vault.db import make_engine, migrate
from vault.schema import Schema

SCHEMA = Schema.load()
CATEGORY = {n: s.category for n, s in SCHEMA.fields.items()}
PURPOSES = Purposes.load()
QUERIES = [
    ("user:alice", "passport_number", "reveal", "customer_support"),
    ("user:alice", "face_template", "reveal", "customer_support"),
    ("user:alice", "email", "read_masked", "customer_support"),
    ("user:alice", "card_number", "detokenize", "order_fulfillment"),
]


def synthetic(n: int) -> list[Rule]:
    """The rules the queries exercise (denies first), then filler rules of other roles."""
    shipped = default_policy()
    support = [r for r in shipped if r.sub == "support-agent"]
    base = [r for r in shipped if r.eft == "deny"]
    base += [r for r in support if r.act == "reveal"] + [r for r in support if r.act != "reveal"]
    rules = base[:n]
    combos = itertools.cycle(
        itertools.product(sorted(set(CATEGORY.values())), ACTIONS[:4], PURPOSES.names)
    )
    i = 0
    while len(rules) < n:
        cat, act, purpose = next(combos)
        rules.append(Rule(f"filler-role-{i}", cat, act, purpose, "allow"))
        i += 1
    return rules


def per_call_us(fn: Callable[[], object], n: int) -> float:
    samples = []
    for _ in range(5):
        t0 = time.perf_counter()
        for _ in range(n):
            fn()
        samples.append((time.perf_counter() - t0) / n * 1e6)
    return statistics.median(samples)


def measure(lines: int, decisions: int) -> str:
    rules = synthetic(lines)
    engine = PolicyEngine(rules, {"user:alice": ["support-agent"]}, CATEGORY, PURPOSES)
    q = itertools.cycle(QUERIES)
    uncached = per_call_us(lambda: engine.enforce_uncached(*next(q)), max(50, decisions // 20))
    cached = per_call_us(lambda: engine.enforce(*next(q)), decisions)
    outcomes = [engine.enforce_uncached(*x).allowed for x in QUERIES]

    workdir = tempfile.mkdtemp()
    db = make_engine(f"sqlite:///{workdir}/bench.db")
    migrate(db)
    migrate(db, "access:migrations")
    with db.begin() as conn:
        conn.execute(
            PolicyRule.__table__.insert(),
            [
                {"ptype": "p", "v0": r.sub, "v1": r.obj, "v2": r.act, "v3": r.purpose, "v4": r.eft}
                for r in rules
            ],
        )
    runtime = compose(
        db, LocalKeyProvider(f"{workdir}/keys.db", bytes(32)), schema=SCHEMA, purposes=PURPOSES
    )
    runtime.principals.create("user:alice", ["support-agent"])
    decide = per_call_us(
        lambda: runtime.decider.decide(
            "user:alice", ["passport_number"], "reveal", "customer_support", gates=False
        ),
        decisions,
    )
    return (
        f"| {len(rules):,} | {uncached:,.0f} µs | {cached:.1f} µs | {decide:.0f} µs | {outcomes} |"
    )


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--decisions", type=int, default=2000)
    args = parser.parse_args()
    rows = [measure(lines, args.decisions) for lines in (10, 10_000)]
    print(
        f"Machine: {platform.machine()}, Python {platform.python_version()}; median of 5 runs, "
        f"{args.decisions} decisions each (uncached: 1/20 of that)\n"
    )
    print(
        "| policy lines | Casbin enforce, uncached | engine with decision cache | "
        "Decider.decide (revision check + cache) | decisions (same at both sizes) |"
    )
    print("|---|---|---|---|---|")
    print("\n".join(rows))


if __name__ == "__main__":
    main()
