"""Issue 22 (2): commands that start child processes stop them on SIGTERM and SIGINT, and no
secret is in any process's argv.

Reported: ``pii-vault demo --keep`` stopped with SIGTERM left its OpenBao servers running
(two orphaned ``bao server -dev`` per run), the root token in their argv. Python's default
for SIGTERM is to die without running ``finally`` blocks.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest


def _children(pid: int) -> list[int]:
    """Every live descendant of ``pid`` (from /proc: ppid chains)."""
    parents: dict[int, int] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        fields = stat[stat.rindex(")") + 2 :].split()
        if fields[0] != "Z":
            parents[int(entry.name)] = int(fields[1])
    found, frontier = [], [pid]
    while frontier:
        parent = frontier.pop()
        kids = [p for p, pp in parents.items() if pp == parent]
        found += kids
        frontier += kids
    return found


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return state[state.rindex(")") + 2] != "Z"


def _argv(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    except OSError:
        return ""


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_demo_keep_stops_its_openbao_on_a_signal(tmp_path: Path, signum: int) -> None:
    cli = Path(sys.executable).with_name("pii-vault")
    env = {**os.environ, "TMPDIR": str(tmp_path)}
    proc = subprocess.Popen(
        [str(cli), "demo", "--keep"],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        env=env,
        start_new_session=True,
    )
    children: list[int] = []
    try:
        assert proc.stdout is not None
        deadline = time.monotonic() + 240
        lines: list[str] = []
        while time.monotonic() < deadline:
            line = proc.stdout.readline().decode()
            if not line:
                break
            lines.append(line)
            if "kept running" in line:
                break
        assert any("kept running" in line for line in lines), "".join(lines[-20:])
        children = _children(proc.pid)
        bao = [p for p in children if "bao" in _argv(p) and "server" in _argv(p)]
        assert bao, [_argv(p) for p in children]  # the demo's OpenBao is a child
        for pid in children:
            assert "root-token" not in _argv(pid), _argv(pid)  # no token in argv
            assert "hvs." not in _argv(pid) and "VAULT_TOKEN" not in _argv(pid)
        os.kill(proc.pid, signum)
        proc.wait(timeout=60)
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and any(_alive(p) for p in children):
            time.sleep(0.2)
        assert not [_argv(p) for p in children if _alive(p)]
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
        for pid in {*children, *_children(proc.pid)}:  # never leave one behind
            if _alive(pid):
                os.kill(pid, signal.SIGKILL)
