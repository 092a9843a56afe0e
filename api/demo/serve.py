"""`pii-vault serve` as a child process, ready when /readyz says so (demo, tests, benchmarks)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from types import TracebackType

import requests


def transit_env(
    work: Path,
    vault_addr: str | None,
    token: str,
    *,
    database_url: str = "",
    home: Path | None = None,
    **settings: str,
) -> dict[str, str]:
    """The environment of a served vault on transit: nothing inherited but PATH (and
    PYTHONPATH, to serve another checkout); ``settings`` are further PII_VAULT_* values."""
    env = {
        "PATH": os.environ.get("PATH", ""),
        "PYTHONPATH": os.environ.get("PYTHONPATH", ""),
        "HOME": str(work),
        "PII_VAULT_HOME": str(home or work / "home"),
        "PII_VAULT_KEY_PROVIDER": "transit",
        "VAULT_TOKEN": token,
        "PII_VAULT_DATABASE_URL": database_url,
        **settings,
    }
    if vault_addr is not None:
        env["VAULT_ADDR"] = vault_addr
    return env


class ServedVault:
    """The real server (``pii-vault serve``: gunicorn by default, or ``server="granian"``)
    on a loopback port, in its own process group."""

    def __init__(
        self,
        env: dict[str, str],
        port: int,
        *,
        workers: int = 2,
        log: Path | None = None,
        ready_timeout: float = 60.0,
        server: str | None = None,
    ) -> None:
        self.env, self.port, self.workers = env, port, workers
        self.server = server
        self.url = f"http://127.0.0.1:{port}"
        self.log, self.ready_timeout = log, ready_timeout
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> ServedVault:
        out = open(self.log, "ab") if self.log is not None else subprocess.DEVNULL  # noqa: SIM115
        self.process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "api.cli",
                "serve",
                "--workers",
                str(self.workers),
                "--port",
                str(self.port),
                *(["--server", self.server] if self.server else []),
            ],
            env=self.env,
            stdout=out,
            stderr=subprocess.STDOUT if self.log is not None else subprocess.DEVNULL,
            start_new_session=True,
        )
        deadline = time.monotonic() + self.ready_timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"pii-vault serve exited with {self.process.returncode}")
            try:
                if requests.get(self.url + "/readyz", timeout=2).status_code == 200:
                    return self
            except requests.RequestException:
                pass
            time.sleep(0.2)
        self.stop()
        raise RuntimeError("pii-vault serve did not become ready")

    def worker_pids(self) -> list[int]:
        if self.process is None:
            return []
        found = subprocess.run(
            ["pgrep", "-P", str(self.process.pid)], capture_output=True, text=True, check=False
        )
        return [int(p) for p in found.stdout.split()]

    def stop(self) -> None:
        process, self.process = self.process, None
        if process is None or process.poll() is not None:
            return
        try:
            os.killpg(process.pid, signal.SIGTERM)
            process.wait(timeout=30)
        except (ProcessLookupError, subprocess.TimeoutExpired):
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=10)

    def __enter__(self) -> ServedVault:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
