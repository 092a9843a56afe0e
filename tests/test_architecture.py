"""The shape the code promises in docs/ARCHITECTURE.md, checked so it cannot drift.

- imports flow one way, api -> access -> vault -> keys, and no module imports itself
  back through others (no cycles);
- every error the project raises carries a code that ``api/`` maps to one status;
- a consumer of one key primitive works with a fake of just that primitive;
- a module past ~400 lines says in its docstring why.
"""

from __future__ import annotations

import ast
import base64
from pathlib import Path
from typing import Any

import pytest

import access.errors
import vault.errors
from access.audit import AuditLog, AuditRecord
from api.errors import INTERNAL, STATUS
from keys.signing import verify_signature
from tests.conftest import Database

ROOT = Path(__file__).resolve().parent.parent
LAYERS = ["api", "access", "vault", "keys"]  # each may import only those after it


def _modules() -> dict[str, Path]:
    out = {}
    for package in LAYERS:
        for path in sorted((ROOT / package).rglob("*.py")):
            if "migrations" in path.parts:
                continue
            name = ".".join(path.relative_to(ROOT).with_suffix("").parts)
            out[name.removesuffix(".__init__")] = path
    return out


def _imports(path: Path, known: set[str]) -> set[str]:
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        names: list[str] = []
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [node.module] + [f"{node.module}.{a.name}" for a in node.names]
        for name in names:
            while name and name not in known:
                name = name.rpartition(".")[0]
            if name:
                found.add(name)
    return found


def test_imports_flow_one_way_without_cycles() -> None:
    modules = _modules()
    graph = {m: _imports(p, set(modules)) - {m} for m, p in modules.items()}
    for module, targets in graph.items():
        layer = LAYERS.index(module.split(".")[0])
        for target in targets:
            assert LAYERS.index(target.split(".")[0]) >= layer, f"{module} imports {target}"
    # Packages' __init__ files re-export; a cycle through them is still a cycle.
    state: dict[str, int] = {}

    def visit(node: str, path: list[str]) -> None:
        state[node] = 1
        for nxt in graph[node]:
            if state.get(nxt) == 1:
                pytest.fail("import cycle: " + " -> ".join([*path, node, nxt]))
            if nxt not in state:
                visit(nxt, [*path, node])
        state[node] = 2

    for module in graph:
        if module not in state:
            visit(module, [])


def test_service_never_imports_test_or_demo_code() -> None:
    modules = _modules()
    for module, path in modules.items():
        if module.startswith("api.demo") or module == "api.cli.serving":
            continue  # the CLI starts the demo, lazily, on `pii-vault demo`
        assert not {m for m in _imports(path, set(modules)) if m.startswith("api.demo")}, module


def _subclasses(base: type) -> list[type]:
    out = []
    for sub in base.__subclasses__():
        out += [sub, *_subclasses(sub)]
    return out


def test_every_error_code_has_one_status() -> None:
    classes = [
        vault.errors.VaultError,
        access.errors.AccessError,
        *_subclasses(vault.errors.VaultError),
        *_subclasses(access.errors.AccessError),
    ]
    assert len(classes) > 15
    for cls in classes:
        code = cls.code  # type: ignore[attr-defined]
        assert (code in STATUS) != (code in INTERNAL), (cls.__name__, code)
    assert STATUS[access.errors.PrincipalExists.code] == 409
    assert STATUS[vault.errors.ShredPending.code] == 503  # not its parent's code
    assert access.errors.ConsentRequired.code != access.errors.Forbidden.code


class TenLineSigner:
    """Everything the audit log needs from the key provider."""

    name = "fake"

    def __init__(self) -> None:
        from nacl.signing import SigningKey

        self._key = SigningKey.generate()

    def sign(self, message: bytes) -> bytes:
        return bytes(self._key.sign(message).signature)

    def signing_public_key(self) -> bytes:
        return bytes(self._key.verify_key)


class DictAnchors:
    """Everything the audit log needs from an anchor store (create-only, readable)."""

    def __init__(self) -> None:
        self.records: dict[tuple[str, int], dict[str, Any]] = {}
        self.pinned: dict[str, Any] | None = None

    def put(self, log: str, key: int, record: dict[str, Any]) -> bool:
        return self.records.setdefault((log, key), record) is record

    def get(self, log: str, key: int) -> dict[str, Any] | None:
        return self.records.get((log, key))

    def keys(self, log: str) -> list[int]:
        return sorted(k for lg, k in self.records if lg == log)

    def logs(self) -> list[str]:
        return sorted({lg for lg, _ in self.records})

    def identity(self) -> dict[str, Any] | None:
        return self.pinned

    def pin_identity(self, record: dict[str, Any]) -> bool:
        if self.pinned is not None:
            return False
        self.pinned = record
        return True


def test_audit_log_needs_only_a_signer_and_an_anchor_store(database: Database) -> None:
    signer, anchors = TenLineSigner(), DictAnchors()
    log = AuditLog(database.engine, signer, anchors=anchors, checkpoint_every=2)
    for _ in range(4):
        log.append(AuditRecord(principal="user:a", action="reveal", purpose=None, verdict="deny"))
    result = log.verify()
    assert result.ok and result.checkpoints == 2, result
    assert not log.verify(public_key=TenLineSigner().signing_public_key()).ok
    ((_, first),) = [(k, r) for k, r in anchors.records.items() if k[1] == 0]
    assert first["seq"] == 2 and len(base64.b64decode(first["signature"])) == 64
    assert not verify_signature(
        signer.signing_public_key(), b"other", base64.b64decode(first["signature"])
    )


def test_long_modules_say_why() -> None:
    for module, path in _modules().items():
        lines = path.read_text().count("\n")
        if lines > 420:
            doc = ast.get_docstring(ast.parse(path.read_text())) or ""
            assert "400 lines" in doc, f"{module} has {lines} lines and no reason in its docstring"
