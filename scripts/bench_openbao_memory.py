"""OpenBao memory per subject key, with transit's key cache unbounded (default) or bounded.

Starts a Raft OpenBao per setting, creates ``--keys`` subject-style transit keys
(aes256-gcm96, one data key each, as a create does), and reads the server's RSS
before and after, then again after a restart (cold cache) and after touching
every key once more. Prints a Markdown table.

    python scripts/bench_openbao_memory.py --keys 5000 --cache 0 1000
"""

from __future__ import annotations

import argparse
import math
import tempfile
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import hvac
import requests

from api.demo.openbao import ManagedOpenBao


def rss_mib(bao: ManagedOpenBao, kind: str = "RssAnon") -> float:
    """Anonymous RSS (Go heap: caches, structures) or file RSS (Raft's mmapped BoltDB)."""
    pid = bao.pid  # the benchmark's own server
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(f"{kind}:"):
            return int(line.split()[1]) / 1024
    return 0.0


def heap_holders(bao: ManagedOpenBao, top: int = 8) -> list[tuple[str, float]]:
    """What holds the live Go heap, from OpenBao's own profiler (``sys/pprof/heap``, after
    a GC): in-use MiB by the innermost OpenBao (or library) function on each stack that is
    not the runtime or the standard library."""
    resp = requests.get(
        f"{bao.addr}/v1/sys/pprof/heap",
        params={"debug": "1", "gc": "1"},
        headers={"X-Vault-Token": bao.root_token},
        timeout=60,
    )
    resp.raise_for_status()
    held: dict[str, float] = {}
    rate = 512 * 1024  # the header says heap/<2 x rate>; read below
    inuse = 0.0
    frame: str | None = None
    for line in resp.text.splitlines():
        if line.startswith("heap profile:") and "heap/" in line:
            rate = int(line.rsplit("heap/", 1)[1]) // 2
            continue
        if not line.startswith("#") and " @ " in line:
            try:  # "<objects>: <bytes> [<allocs>: <bytes>] @ ...", sampled: scale it up
                objects, size = (int(x) for x in line.split("[")[0].split(":"))
            except ValueError:
                objects, size = 0, 0
            scale = 1 / (1 - math.exp(-(size / objects) / rate)) if objects and size else 0.0
            inuse, frame = size * scale, None
            continue
        if line.startswith("#\t") and inuse and frame is None:
            parts = line.split("\t")
            func = parts[2].split("+")[0].strip() if len(parts) >= 3 else ""
            if "/" not in func or "." not in func.split("/")[0]:
                continue  # the runtime and the standard library: look further up the stack
            frame = func
            held[frame] = held.get(frame, 0.0) + inuse
    ranked = sorted(held.items(), key=lambda kv: -kv[1])[:top]
    total = sum(held.values())
    transit = sum(v for k, v in held.items() if "/keysutil." in k or "/transit." in k)
    return [
        ("(live heap, all holders)", total / 2**20),
        ("(of which transit key policies: keysutil, transit)", transit / 2**20),
    ] + [(name, size / 2**20) for name, size in ranked]


def touch(bao: ManagedOpenBao, names: list[str], create: bool) -> None:
    def one(name: str) -> None:
        client = hvac.Client(url=bao.addr, token=bao.root_token)
        if create:
            client.secrets.transit.create_key(name, key_type="aes256-gcm96")
        client.secrets.transit.generate_data_key(name, key_type="wrapped")

    with ThreadPoolExecutor(8) as pool:
        list(pool.map(one, names))


def measure(keys: int, cache: int) -> dict[str, Any]:
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
        holders = heap_holders(bao)
        return {
            "holders": holders,
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
    holders: dict[str, list[tuple[str, float]]] = {}
    for cache in args.cache:
        r = measure(args.keys, cache)
        holders[str(cache)] = r["holders"]
        label = "unbounded (0)" if cache == 0 else str(cache)
        print(
            f"| {label} | {args.keys:,} | {r['base']:.0f} MiB | {r['after']:.0f} MiB | "
            f"{(r['after'] - r['base']) * 1024 / args.keys:.1f} KiB | {r['cold']:.0f} MiB | "
            f"{r['warm']:.0f} MiB | {(r['warm'] - r['cold']) * 1024 / args.keys:.1f} KiB | "
            f"{r['file']:.0f} MiB | {r['rate']:,.0f} |",
            flush=True,
        )
    for cache, ranked in holders.items():
        label = "unbounded" if cache == "0" else cache
        print(f"\nLive heap after using every key (cache {label}), by holder (sys/pprof/heap):\n")
        print("| function holding the memory | MiB |")
        print("|---|---|")
        for name, mib in ranked:
            print(f"| `{name}` | {mib:.1f} |")


if __name__ == "__main__":
    main()
