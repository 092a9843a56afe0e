"""OpenBao memory per subject key, with transit's key cache unbounded (default) or bounded.

Starts a Raft OpenBao per setting, creates ``--keys`` subject-style transit keys
(aes256-gcm96, one data key each, as a create does), and reads the server's RSS
before and after, then again after a restart (cold cache) and after touching
every key once more. Prints a Markdown table.

    python scripts/bench_openbao_memory.py --keys 5000 --cache 0 1000
"""

from __future__ import annotations

import argparse
import tempfile
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import hvac

from api.demo.openbao import ManagedOpenBao


def rss_mib(bao: ManagedOpenBao, kind: str = "RssAnon") -> float:
    """Anonymous RSS (Go heap: caches, structures) or file RSS (Raft's mmapped BoltDB)."""
    pid = bao._proc.pid  # the benchmark's own server
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(f"{kind}:"):
            return int(line.split()[1]) / 1024
    return 0.0


def touch(bao: ManagedOpenBao, names: list[str], create: bool) -> None:
    def one(name: str) -> None:
        client = hvac.Client(url=bao.addr, token=bao.root_token)
        if create:
            client.secrets.transit.create_key(name, key_type="aes256-gcm96")
        client.secrets.transit.generate_data_key(name, key_type="wrapped")

    with ThreadPoolExecutor(8) as pool:
        list(pool.map(one, names))


def measure(keys: int, cache: int) -> dict[str, float]:
    work = Path(tempfile.mkdtemp(prefix="pii-bao-mem-"))
    bao = ManagedOpenBao(work, persistent=True).start()
    try:
        root = bao.client()
        root.sys.enable_secrets_engine("transit", path="transit")
        if cache:
            root.adapter.post("/v1/transit/cache-config", json={"size": cache})
            bao.restart()  # the cache size applies when the plugin starts
        time.sleep(1)
        base = rss_mib(bao)
        names = [f"pii-subject-{uuid.uuid4()}" for _ in range(keys)]
        started = time.monotonic()
        touch(bao, names, create=True)
        rate = keys / (time.monotonic() - started)
        time.sleep(1)
        after = rss_mib(bao)
        bao.restart()
        time.sleep(1)
        cold = rss_mib(bao)
        touch(bao, names, create=False)
        time.sleep(1)
        warm = rss_mib(bao)
        return {
            "base": base,
            "after": after,
            "cold": cold,
            "warm": warm,
            "rate": rate,
            "file": rss_mib(bao, "RssFile"),
        }
    finally:
        bao.stop()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--keys", type=int, default=5000)
    parser.add_argument("--cache", type=int, nargs="+", default=[0, 1000])
    args = parser.parse_args()
    print("Anonymous RSS (Go heap) unless marked; file RSS is Raft's mmapped database.\n")
    print(
        "| transit cache size | keys | before | after creating | per key | after restart "
        "| after using every key again | per key (warm) | file RSS | create+datakey /s |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|")
    for cache in args.cache:
        r = measure(args.keys, cache)
        label = "unbounded (0)" if cache == 0 else str(cache)
        print(
            f"| {label} | {args.keys:,} | {r['base']:.0f} MiB | {r['after']:.0f} MiB | "
            f"{(r['after'] - r['base']) * 1024 / args.keys:.1f} KiB | {r['cold']:.0f} MiB | "
            f"{r['warm']:.0f} MiB | {(r['warm'] - r['cold']) * 1024 / args.keys:.1f} KiB | "
            f"{r['file']:.0f} MiB | {r['rate']:,.0f} |",
            flush=True,
        )


if __name__ == "__main__":
    main()
