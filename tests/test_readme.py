"""The README's curl walk-through, run exactly as written."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

README = Path(__file__).resolve().parent.parent / "README.md"


def walkthrough() -> str:
    text = README.read_text(encoding="utf-8")
    section = text.split("## Walk-through with curl", 1)[1]
    match = re.search(r"```sh\n(.*?)```", section, re.S)
    assert match, "no code block in the walk-through"
    return match.group(1)


def test_readme_opens_with_the_two_commands() -> None:
    lines = README.read_text(encoding="utf-8").splitlines()
    assert lines[2:6] == [
        "```sh",
        "pip install -e '.[dev]' && pii-vault demo",
        "pip install -e '.[dev]' && pytest",
        "```",
    ]


@pytest.mark.slow
def test_curl_walkthrough(tmp_path: Path) -> None:
    script = (
        walkthrough()
        .replace("--port 8089", "--port $PORT")
        .replace("http://127.0.0.1:8089", "http://127.0.0.1:$PORT")
    )
    from api.demo.openbao import free_port

    env = {k: v for k, v in os.environ.items() if not k.startswith(("PII_VAULT_", "VAULT_"))}
    env["PORT"] = str(free_port())
    env["PATH"] = f"{Path(sys.executable).parent}:{env.get('PATH', '')}"
    proc = subprocess.run(
        ["bash", "-euo", "pipefail", "-c", script],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    out = [line for line in proc.stdout.splitlines() if line.strip()]
    wanted = [
        "*****4567",
        "GB1234567",
        "400",
        "approved",
        "{'passport_number': 'GB1234567'}",
        "shredded",
        "not_found",
    ]
    assert [line for line in out if line in wanted] == wanted, proc.stdout
    assert out[-1].startswith("audit log intact:"), proc.stdout


def python_walkthrough() -> str:
    section = README.read_text(encoding="utf-8").split("## The same in Python", 1)[1]
    match = re.search(r"```python\n(.*?)```", section, re.S)
    assert match, "no Python block"
    return match.group(1)


@pytest.mark.slow
def test_python_walkthrough(tmp_path: Path) -> None:
    """The Python block, with the curl walk-through's set-up (server and keys) before it."""
    setup = walkthrough().split("json() {", 1)[0]
    script = (
        setup.replace("--port 8089", "--port $PORT").replace(
            "http://127.0.0.1:8089", "http://127.0.0.1:$PORT"
        )
        + "export API REG SUPPORT PRIVACY LEAD\n"
        + "python3 - <<'PY'\n"
        + python_walkthrough()
        + "PY\nkill $SERVER\n"
    )
    from api.demo.openbao import free_port

    env = {k: v for k, v in os.environ.items() if not k.startswith(("PII_VAULT_", "VAULT_"))}
    env["PORT"] = str(free_port())
    env["PATH"] = f"{Path(sys.executable).parent}:{env.get('PATH', '')}"
    env["PYTHONPATH"] = str(README.parent / "clients" / "python")
    proc = subprocess.run(
        ["bash", "-euo", "pipefail", "-c", script],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    out = [line for line in proc.stdout.splitlines() if line.strip()]
    assert out[-5:] == [
        "*****4567",
        "GB1234567",
        "{'passport_number': 'GB1234567'}",
        "True",
        "not_found",
    ], proc.stdout
