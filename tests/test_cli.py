"""The CLI: init, shred, shred --pending, demo; bad configuration is one clear line."""

from __future__ import annotations

import base64
import json
import os
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from access.runtime import open_runtime
from api.cli import EXIT_CONFIG, EXIT_UNAVAILABLE, main
from api.demo.openbao import ManagedOpenBao, free_port
from keys.transit_setup import create_service_token
from tests.conftest import POSTGRES_URL
from vault.config import Settings
from vault.receipts import verify_receipt


def run(args: list[str], env: dict[str, str]) -> tuple[int, str, str]:
    result = CliRunner().invoke(main, args, env=env, catch_exceptions=False)
    return result.exit_code, result.stdout, result.stderr


def local_env(home: Path, database_url: str = "") -> dict[str, str]:
    return {
        "PII_VAULT_HOME": str(home),
        "PII_VAULT_KEY_PROVIDER": "local",
        "PII_VAULT_DATABASE_URL": database_url,
        "VAULT_ADDR": "",
        "VAULT_TOKEN": "",
    }


def test_init_and_shred_with_local_provider(tmp_path: Path) -> None:
    env = local_env(tmp_path / "home")
    code, out, _ = run(["init"], env)
    assert code == 0 and "schema up to date" in out
    assert run(["init"], env)[0] == 0  # idempotent
    rt = open_runtime(Settings.from_env(env))
    service = rt.vault
    created = service.create_subject({"email": "cli@example.com"})
    code, out, _ = run(["shred", created.subject_id, "--reason", "asked"], env)
    assert code == 0
    receipt = json.loads(out)
    assert receipt["subject_id"] == created.subject_id
    assert verify_receipt(receipt, rt.backend.signing_public_key())
    assert service.status(created.subject_id) == "shredded"
    shreds = [e for e in rt.audit.events(limit=5) if e["action"] == "shred"]
    assert '"reason": "asked"' in json.dumps(shreds)  # audited with the erasure
    rt.close()

    # Issue 23: the receipt verified from a file, and the key that verifies it.
    (tmp_path / "receipt.json").write_text(out, encoding="utf-8")
    code, key, _ = run(["receipt", "public-key"], env)
    assert code == 0 and len(base64.b64decode(key.strip())) == 32
    code, said, err = run(["receipt", "verify", str(tmp_path / "receipt.json")], env)
    assert code == 0 and "verified:" in said, err
    pinned = ["receipt", "verify", str(tmp_path / "receipt.json"), "--public-key", key.strip()]
    assert run(pinned, env)[0] == 0
    forged = receipt | {"shredded_at": "2020-01-01T00:00:00Z"}
    (tmp_path / "forged.json").write_text(json.dumps(forged), encoding="utf-8")
    code, _, err = run(["receipt", "verify", str(tmp_path / "forged.json")], env)
    assert code == 1 and "NOT verified" in err
    code, _, err = run(["shred", created.subject_id], env)  # an erasure names its reason
    assert code == 2 and "--reason" in err


@pytest.mark.slow
def test_init_with_privileged_token_then_serve_with_least_privilege(tmp_path: Path) -> None:
    """`init` on a fresh OpenBao creates mounts, keys and policy; the service token suffices."""
    with ManagedOpenBao(tmp_path / "bao") as bao:
        home = tmp_path / "home"
        env = {
            "PII_VAULT_HOME": str(home),
            "PII_VAULT_KEY_PROVIDER": "transit",
            "VAULT_ADDR": bao.addr,
            "VAULT_TOKEN": bao.root_token,
            "PII_VAULT_DATABASE_URL": "",
        }
        code, out, err = run(["init"], env)
        assert code == 0, err
        assert "policy 'pii-vault' ready" in out
        assert run(["init"], env)[0] == 0
        service_token = create_service_token(bao.client())
        env["VAULT_TOKEN"] = service_token
        code, _, err = run(["init"], env)  # not privileged enough: one clear line
        assert code == EXIT_CONFIG and "privileged" in err and "Traceback" not in err
        rt = open_runtime(Settings.from_env(env))
        service = rt.vault
        created = service.create_subject({"email": "x@example.com"})

        bao.stop()
        code, _, err = run(["shred", created.subject_id, "--reason", "asked"], env)
        assert code == EXIT_UNAVAILABLE
        assert "cannot reach Vault" in err and "Traceback" not in err
        # The decision is published outside the database first (issue 17): with Vault down
        # nothing is decided or changed, and the operator retries.
        assert service.status(created.subject_id) == "active"
        code, _, err = run(["shred", "--pending"], env)
        assert code == 0 and "0 still pending" in err
        # dev mode keeps nothing across a restart; what matters here is the CLI contract.
        rt.close()


def test_shred_pending_completes(tmp_path: Path) -> None:
    env = local_env(tmp_path / "home")
    assert run(["init"], env)[0] == 0
    rt = open_runtime(Settings.from_env(env))
    service = rt.vault
    created = service.create_subject({"email": "p@example.com"})
    undecided = service.create_subject({"email": "q@example.com"})
    assert rt.shredder.ledger is not None
    rt.shredder.ledger.publish(created.subject_id)  # decided; its key deletion never ran
    with service.engine.begin() as conn:
        for sid in (created.subject_id, undecided.subject_id):
            conn.exec_driver_sql(
                "UPDATE subjects SET status='shredding', shred_requested_at=created_at WHERE id=?",
                (sid,),
            )
    code, out, err = run(["shred", "--pending"], env)
    # Only the decided one; the one set with SQL alone is reported and its key kept.
    assert code == 1, err
    assert f"NOT completed: {undecided.subject_id}" in err
    assert rt.backend.subject_key_exists(undecided.subject_id)
    assert "completed 1 pending shred(s); 0 still pending" in err
    assert json.loads(out.splitlines()[0])["subject_id"] == created.subject_id
    assert not rt.backend.subject_key_exists(created.subject_id)
    rt.close()


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"PII_VAULT_KEY_PROVIDER": "kms"}, "PII_VAULT_KEY_PROVIDER must be one of"),
        ({"PII_VAULT_KEY_PROVIDER": "transit", "VAULT_ADDR": ""}, "needs VAULT_ADDR"),
        ({"PII_VAULT_DATABASE_URL": "mysql://x/y"}, "must be a sqlite or postgresql URL"),
        ({"PII_VAULT_DATABASE_URL": "::not a url::"}, "not a valid database URL"),
        ({"PII_VAULT_DEK_CACHE_SIZE": "lots"}, "must be an integer"),
    ],
)
def test_bad_configuration_is_one_line(tmp_path: Path, env: dict[str, str], message: str) -> None:
    full = {
        "PII_VAULT_HOME": str(tmp_path),
        "VAULT_ADDR": "",
        "VAULT_TOKEN": "",
        "PII_VAULT_DATABASE_URL": "",
        "PII_VAULT_KEY_PROVIDER": "local",
    } | env
    code, _, err = run(["shred", "--pending"], full)
    assert code == EXIT_CONFIG
    assert message in err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err


def test_unreachable_database_is_one_line(tmp_path: Path) -> None:
    env = local_env(tmp_path, f"postgresql://postgres@127.0.0.1:{free_port()}/none")
    code, _, err = run(["init"], env)
    assert code == EXIT_UNAVAILABLE and "database unavailable" in err
    assert len(err.strip().splitlines()) == 1


def test_usage_errors() -> None:
    assert CliRunner().invoke(main, ["shred"]).exit_code == 2
    assert CliRunner().invoke(main, ["shred", "x", "--pending"]).exit_code == 2


# What the demo must show, each as an "ok" line (a step added later needs no test change).
DEMO_CHECKS = (
    "registration creates subject",
    "checkout detokenizes the card for order_fulfillment: 200, plain",
    "support sees the masked view: 200",
    "support reveals the passport without a justification: 400 justification_required",
    "support reveals it with ticket CS-1042: 403 approval_required (four-eyes: request",
    "support approves its own request: 403 forbidden",
    "a team lead (approver) approves request",
    "support repeats the reveal: 200",
    "support reveals the face template: 403 forbidden",
    "recommendation stores browsing without consent: 403 consent_required",
    "privacy officer exports: 200",
    "at rest: 0 of 6 values found",
    "signed receipt verifies: True",
    "the old tokens no longer resolve: 0 of 6 (not_found)",
    "hard-deleted: True",
    "decrypts nothing: 6 of 6 fields fail",
    "audit verify: ok=True",
)


def assert_demo_story(lines: list[str]) -> None:
    """Every step passed, and each check the README promises is among them."""
    steps = [line for line in lines if line.startswith(("ok ", "FAIL"))]
    assert steps and all(line.startswith("ok ") for line in steps), "\n".join(lines)
    for expected in DEMO_CHECKS:
        assert any(expected in line for line in steps), expected


def test_demo_console_script_end_to_end() -> None:
    """The README's first command: `pii-vault demo`, as a real process."""
    exe = Path(sys.executable).with_name("pii-vault")
    cmd = [str(exe)] if exe.exists() else [sys.executable, "-m", "api.cli"]
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PII_VAULT_", "VAULT_"))}
    proc = subprocess.run([*cmd, "demo"], capture_output=True, text=True, timeout=180, env=env)
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout
    assert_demo_story(out.splitlines())
    assert out.rstrip().endswith("demo complete: every check passed")
    assert proc.stderr.strip() == "", proc.stderr
    assert POSTGRES_URL not in out


def test_principal_audit_and_policy_commands(tmp_path: Path) -> None:
    env = local_env(tmp_path / "home")
    code, out, err = run(["init"], env)
    assert code == 0, err
    assert "default policy loaded" in out
    assert "existing policy kept" in run(["init"], env)[1]

    code, out, _ = run(
        ["principal", "create", "user:alice", "--role", "support-agent", "--json"], env
    )
    assert code == 0
    created = json.loads(out)
    assert created["name"] == "user:alice" and created["api_key"].startswith("pvk_")
    code, out, _ = run(["principal", "create", "svc:checkout", "--role", "checkout-service"], env)
    assert code == 0 and "shown once" in out
    code, _, err = run(["principal", "create", "user:alice", "--role", "support-agent"], env)
    assert code == 1 and "already exists" in err
    code, _, err = run(["principal", "create", "user:bob", "--role", "root"], env)
    assert code == 1 and "unknown role" in err
    listed = json.loads(run(["principal", "list", "--json"], env)[1])
    assert [p["name"] for p in listed] == ["svc:checkout", "user:alice"]
    assert created["api_key"] not in json.dumps(listed)
    assert run(["principal", "disable", "svc:checkout"], env)[0] == 0
    assert "disabled" in run(["principal", "list"], env)[1]

    code, out, _ = run(
        ["policy", "explain", "user:alice", "passport_number", "reveal", "customer_support"], env
    )
    assert code == 0
    assert out.splitlines()[:2] == [
        "decision: plain",
        "rule: p, support-agent, identity, reveal, customer_support, allow",
    ]
    assert "needs a justification" in out
    code, out, _ = run(
        ["policy", "explain", "user:alice", "face_template", "reveal", "customer_support"], env
    )
    assert out.splitlines()[:2] == [
        "decision: denied (forbidden)",
        "rule: p, *, biometric, reveal, *, deny",
    ]
    code, _, err = run(["policy", "explain", "user:alice", "email", "reveal", "snooping"], env)
    assert code == 1 and "unknown purpose" in err
    code, _, err = run(["policy", "explain", "user:alice", "passprt", "reveal", "snooping"], env)
    assert code != 0 and "unknown field" in err
    code, _, err = run(["policy", "explain", "user:alize", "email", "reveal", "snooping"], env)
    assert code == 2 and "unknown principal 'user:alize'" in err  # not "no rule matched"

    # Issue 19: every condition that applies is named, and --subject says which decided.
    rt = open_runtime(Settings.from_env(env))
    child = rt.vault.create_subject({"email": "kid@example.com"}, is_minor=True).subject_id
    rt.close()
    args = ["policy", "explain", "user:alice", "passport_number", "reveal", "customer_support"]
    code, out, _ = run([*args, "--subject", child], env)
    assert code == 0
    named = [line.split(":")[0] for line in out.splitlines() if line.startswith("condition ")]
    assert named == [
        "condition recipient",
        "condition restriction",
        "condition transfer",
        "condition minors",
        "condition sensitive",
        "condition approval",
    ]
    assert f"for subject {child}: denied (guardian_consent_required) by minors" in out

    # audit verify: intact, then tampered
    rt = open_runtime(Settings.from_env(env))
    service = rt.vault
    created_subject = service.create_subject({"email": "v@example.com"})
    rt.close()
    assert run(["shred", created_subject.subject_id, "--reason", "asked"], env)[0] == 0
    code, out, _ = run(["audit", "verify"], env)
    assert code == 0 and out.startswith("audit log intact: 7 events")
    assert len(out.strip().splitlines()) == 1
    with sqlite3.connect(tmp_path / "home" / "vault.db") as conn:
        # Every grant change is in the chain, by the operator who made it (issue 17).
        actions = [r[0] for r in conn.execute("SELECT action FROM audit_events ORDER BY seq")]
        assert actions[:5] == [
            "audit_init",
            "policy_seed",
            "principal_create",
            "principal_create",
            "principal_disable",
        ], actions
        conn.execute("UPDATE audit_events SET principal = 'operator:nobody' WHERE seq = 1")
    code, out, _ = run(["audit", "verify"], env)
    assert code == 1 and "TAMPERED at seq 1" in out


def test_principal_enable_and_accepting_a_restored_backup(tmp_path: Path) -> None:
    env = local_env(tmp_path / "home")
    assert run(["init"], env)[0] == 0
    assert run(["principal", "create", "svc:leaver", "--role", "auditor"], env)[0] == 0
    db = tmp_path / "home" / "vault.db"
    with sqlite3.connect(db) as conn:  # what a backup holds of the grants
        backup = conn.execute("SELECT tag, disabled FROM principals WHERE name = 'svc:leaver'")
        row = backup.fetchone()
        state = conn.execute("SELECT grant_state FROM access_state").fetchone()[0]
    assert run(["principal", "disable", "svc:leaver"], env)[0] == 0
    assert run(["principal", "enable", "svc:leaver"], env) == (0, "enabled svc:leaver\n", "")
    assert run(["principal", "disable", "svc:leaver"], env)[0] == 0
    assert run(["audit", "grants"], env)[0] == 0
    with sqlite3.connect(db) as conn:  # the backup restored
        conn.execute("UPDATE principals SET tag = ?, disabled = ? WHERE name = 'svc:leaver'", row)
        conn.execute("UPDATE access_state SET grant_state = ?", (state,))
    code, out, err = run(["audit", "grants"], env)
    assert code == 1 and "older than the newest published grant state" in out, out + err
    code, _, err = run(["principal", "enable", "svc:leaver"], env)
    assert code == 1 and "grants" in err
    code, out, _ = run(["audit", "grants", "--accept-restore"], env)
    assert code == 0 and "accepted the restored grants" in out and "svc:leaver" in out
    assert run(["audit", "grants"], env)[0] == 0
    listed = {p["name"]: p for p in json.loads(run(["principal", "list", "--json"], env)[1])}
    assert listed["svc:leaver"]["disabled"] is False  # as the backup had it: disable again
    with sqlite3.connect(db) as conn:
        actions = [r[0] for r in conn.execute("SELECT action FROM audit_events ORDER BY seq")]
    assert actions[-4:] == [
        "principal_disable",
        "principal_enable",
        "principal_disable",
        "grants_accept_restore",
    ], actions


def test_age_out_clears_the_flag_of_subjects_come_of_age(tmp_path: Path) -> None:
    env = local_env(tmp_path / "home")
    assert run(["init"], env)[0] == 0
    rt = open_runtime(Settings.from_env(env))
    grown = rt.vault.create_subject({"date_of_birth": "1990-01-01"}).subject_id
    rt.close()
    db = tmp_path / "home" / "vault.db"
    with sqlite3.connect(db) as conn:
        conn.execute("UPDATE subjects SET is_minor = 1 WHERE id = ?", (grown,))
    assert run(["age-out"], env) == (0, "aged out 1 subject(s) at majority\n", "")
    with sqlite3.connect(db) as conn:
        assert conn.execute("SELECT is_minor FROM subjects").fetchone() == (0,)
        actions = [r[0] for r in conn.execute("SELECT action FROM audit_events")]
    assert actions.count("minor_aged_out") == 2  # decided, completed
    assert run(["age-out"], env)[1] == "aged out 0 subject(s) at majority\n"


def test_deactivated_subjects_are_shredded_after_the_grace_period(tmp_path: Path) -> None:
    from access.events import Caller

    env = local_env(tmp_path / "home")
    assert run(["init"], env)[0] == 0
    rt = open_runtime(Settings.from_env(env))
    rt.principals.create("svc:po", ["privacy-officer"])
    gone = rt.vault.create_subject({"email": "gone@example.com"}).subject_id
    back = rt.vault.create_subject({"email": "back@example.com"}).subject_id
    fresh = rt.vault.create_subject({"email": "fresh@example.com"}).subject_id
    office = Caller("svc:po")
    for sid in (gone, back, fresh):
        rt.guard.restrict(office, sid, "subject_access_request", "*", "deactivated")
    rt.guard.restrict(office, back, "subject_access_request", "*", "lifted")
    rt.close()
    db = tmp_path / "home" / "vault.db"
    with sqlite3.connect(db) as conn:  # 31 days ago (fresh stays within the grace period)
        conn.execute(
            "UPDATE restrictions SET recorded_at = datetime('now', '-31 days')"
            " WHERE subject_id IN (?, ?)",
            (gone, back),
        )
    # Backdated with SQL, the rows fail their tags: nothing is shredded on them.
    code, out, err = run(["shred-deactivated"], env)
    assert code == 0 and "shredded 0 deactivated" in err, err
    with sqlite3.connect(db) as conn:  # as rows from before tags, sealed at the upgrade
        conn.execute("UPDATE restrictions SET tag = NULL WHERE subject_id IN (?, ?)", (gone, back))
    code, out, err = run(["seal-records"], env)
    assert code == 0 and "sealed 0 consent(s) and 3 restriction(s)" in out, out
    code, out, err = run(["shred-deactivated"], env)
    assert code == 0 and "shredded 1 deactivated" in err, err
    assert json.loads(out)["subject_id"] == gone
    with sqlite3.connect(db) as conn:
        status = dict(conn.execute("SELECT id, status FROM subjects").fetchall())
    assert status == {gone: "shredded", back: "active", fresh: "active"}


def _wait_ready(url: str, proc: subprocess.Popen[str], timeout: float = 60) -> None:
    import time

    import requests

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert proc.poll() is None, proc.communicate()[1]
        try:
            if requests.get(url, timeout=1).status_code == 200:
                return
        except requests.RequestException:
            pass
        time.sleep(0.2)
    raise AssertionError("server did not become ready")


@pytest.mark.slow
@pytest.mark.parametrize("mode", [["--dev"], [], ["--workers", "3"]])
def test_serve_runs_the_api(tmp_path: Path, mode: list[str]) -> None:
    """`pii-vault serve` as a real process: the production server by default (issue 21),
    with workers given, or the development server with --dev."""
    import requests

    env = {k: v for k, v in os.environ.items() if not k.startswith(("PII_VAULT_", "VAULT_"))}
    env |= local_env(tmp_path / "home")
    assert run(["init"], env)[0] == 0
    key = json.loads(
        run(["principal", "create", "svc:reg", "--role", "registration-service", "--json"], env)[1]
    )["api_key"]
    exe = Path(sys.executable).with_name("pii-vault")
    port = free_port()
    proc = subprocess.Popen(
        [str(exe), "serve", "--port", str(port), *mode, "--max-body", "4096"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        base = f"http://127.0.0.1:{port}"
        _wait_ready(f"{base}/readyz", proc)
        auth = {"Authorization": f"Bearer {key}"}
        for _ in range(4):  # spread over the workers
            r = requests.post(
                f"{base}/v1/subjects",
                headers=auth,
                timeout=10,
                json={"purpose": "account_registration", "fields": {"email": "s@example.com"}},
            )
            assert r.status_code == 201
        r = requests.post(
            f"{base}/v1/subjects",
            headers=auth,
            timeout=10,
            json={"purpose": "account_registration", "fields": {"full_name": "x" * 5000}},
        )
        assert r.status_code == 413
        # Chunked bodies (no Content-Length) are bounded and depth-checked too (issue 17:
        # 5,000 nested brackets sent chunked were a 500, a RecursionError).
        nested = b'{"purpose": "account_registration", "fields": ' + b"[" * 1500 + b"]" * 1500
        r = requests.post(
            f"{base}/v1/subjects",
            headers={**auth, "Content-Type": "application/json"},
            timeout=10,
            data=iter([nested, b"}"]),
        )
        assert r.request.headers.get("Transfer-Encoding") == "chunked"
        assert r.status_code == 400, r.text
        r = requests.post(
            f"{base}/v1/subjects",
            headers={**auth, "Content-Type": "application/json"},
            timeout=10,
            data=iter(
                [
                    b'{"purpose": "account_registration", "fields": {"full_name": "',
                    b"x" * 8000,
                    b'"}}',
                ]
            ),
        )
        assert r.status_code in (400, 413)  # read no further than the limit, never parsed whole
        assert requests.get(f"{base}/v1/audit", timeout=10).status_code == 401
    finally:
        proc.terminate()
        _, err = proc.communicate(timeout=30)
    assert "s@example.com" not in err  # access logs carry no values
    assert "RecursionError" not in err
    booted = err.count("Booting worker")  # gunicorn's own log line, one per worker
    if mode == ["--dev"]:
        assert "(development server)" in err and booted == 0
    else:
        assert booted == (int(mode[1]) if mode else 2), err[-2000:]
    # A graceful stop anchored what the workers wrote: no unanchored tail is left.
    code, out, _ = run(["audit", "verify"], env)
    assert code == 0 and "not yet anchored" not in out, out


def test_serve_refuses_bad_configuration(tmp_path: Path) -> None:
    env = local_env(tmp_path) | {
        "PII_VAULT_KEY_PROVIDER": "transit",
        "VAULT_ADDR": "",
        "VAULT_TOKEN": "",
    }
    code, _, err = run(["serve", "--port", str(free_port())], env)
    assert code == EXIT_CONFIG and "needs VAULT_ADDR" in err
    assert len(err.strip().splitlines()) == 1


def test_purge_expired_command(tmp_path: Path) -> None:
    env = local_env(tmp_path / "home")
    assert run(["init"], env)[0] == 0
    code, out, _ = run(["purge-expired"], env)
    assert code == 0 and out.strip() == "purged 0 expired field value(s)"
    code, out, _ = run(["audit", "verify"], env)
    assert code == 0 and "2 events" in out  # init, the policy seed; a purge of nothing: none


def test_policy_list_add_remove_are_audited_and_take_effect(tmp_path: Path) -> None:
    env = local_env(tmp_path / "home")
    assert run(["init"], env)[0] == 0
    code, out, _ = run(["policy", "list"], env)
    assert code == 0 and "p, support-agent, identity, reveal, customer_support, allow" in out
    args = ["support-agent", "passport_number", "reveal", "customer_support"]
    explain = ["policy", "explain", "user:sam", "passport_number", "reveal", "customer_support"]
    run(["principal", "create", "user:sam", "--role", "support-agent"], env)
    assert run(explain, env)[1].startswith("decision: plain")
    code, out, _ = run(["policy", "add", *args, "--deny"], env)
    assert code == 0 and out.startswith("added: p, support-agent, passport_number, reveal")
    assert run(explain, env)[1].startswith("decision: denied")
    assert run(["policy", "remove", *args, "--deny"], env)[0] == 0
    assert run(explain, env)[1].startswith("decision: plain")
    code, _, err = run(["policy", "remove", *args, "--deny"], env)
    assert code == 1 and "no such rule" in err
    code, _, err = run(
        ["policy", "add", "support-agent", "nope", "reveal", "customer_support"], env
    )
    assert code != 0 and "Traceback" not in err
    code, out, _ = run(["audit", "verify"], env)
    assert code == 0
    with sqlite3.connect(tmp_path / "home" / "vault.db") as conn:
        details = [r[0] for r in conn.execute("SELECT outcome FROM audit_events")]
    assert any("policy_add" in d for d in details) and any("policy_remove" in d for d in details)


def test_rotate_keys_rotates_trims_and_resumes_with_the_local_provider(tmp_path: Path) -> None:
    """Issue 22 (7), the command end to end: tokens resolve after it, the old key version
    is gone from the keystore, the run is audited, and a re-run rotates nothing."""
    env = local_env(tmp_path / "home")
    assert run(["init"], env)[0] == 0
    rt = open_runtime(Settings.from_env(env))
    created = rt.vault.create_subject({"email": "turn@example.com"})
    rt.close()
    code, out, _ = run(["rotate-keys", "--older-than", "0s"], env)
    assert (code, out) == (0, "rotated 1 subject key(s); 0 current; 0 failed\n")
    rt = open_runtime(Settings.from_env(env))
    [result] = rt.vault.detokenize([created.tokens["email"]])
    assert result.value == "turn@example.com"
    rt.close()
    with sqlite3.connect(tmp_path / "home" / "keys.db") as conn:
        versions = [v for (v,) in conn.execute("SELECT version FROM subject_keys")]
    assert versions == [2]
    with sqlite3.connect(tmp_path / "home" / "vault.db") as conn:
        actions = [r[0] for r in conn.execute("SELECT action FROM audit_events")]
    assert actions.count("key_rotation") == 2  # before the batch, and its completion
    assert run(["rotate-keys"], env)[1] == "rotated 0 subject key(s); 1 current; 0 failed\n"
    assert run(["rotate-keys", "--older-than", "soon"], env)[0] != 0
