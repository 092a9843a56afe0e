"""A real three-node OpenBao cluster with integrated Raft storage on loopback.

For the high-availability tests and benchmarks (issue 24): every node runs with
OpenBao's *default* settings (no ``performance_multiplier``, standby reads on),
because that is what an operator gets, and what a client must survive. Node 0
is initialised; the others join it with ``retry_join`` and are unsealed with the
same key. Faults are real: ``kill`` (SIGKILL), ``seal``, ``pause`` (SIGSTOP).
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path
from types import TracebackType

import hvac
import requests

from api.demo.openbao import find_bao_binary, free_port
from keys.errors import KeyUnavailable


class ClusterNode:
    """One OpenBao server of the cluster."""

    def __init__(self, workdir: Path, index: int) -> None:
        self.index = index
        self.workdir = workdir / f"node{index}"
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        self.cluster_port = free_port()
        self.addr = f"http://127.0.0.1:{self.port}"
        self.proc: subprocess.Popen[bytes] | None = None

    def config(self, peers: list[ClusterNode]) -> Path:
        joins = "".join(
            f'  retry_join {{\n    leader_api_addr = "{p.addr}"\n  }}\n'
            for p in peers
            if p is not self
        )
        data = self.workdir / "raft"
        data.mkdir(exist_ok=True)
        path = self.workdir / "bao.hcl"
        path.write_text(
            f"""
storage "raft" {{
  path    = "{data}"
  node_id = "node{self.index}"
{joins}}}
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
        return path

    def start(self, peers: list[ClusterNode]) -> None:
        if self.running:
            return
        env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(self.workdir)}
        with (self.workdir / "bao.log").open("ab") as log:
            self.proc = subprocess.Popen(
                [find_bao_binary(), "server", f"-config={self.config(peers)}"],
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                env=env,
                cwd=self.workdir,
                start_new_session=True,
            )

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def health(self) -> dict[str, object] | None:
        try:
            resp = requests.get(f"{self.addr}/v1/sys/health", timeout=1)
            body = resp.json()
        except (requests.exceptions.RequestException, ValueError):
            return None
        return body if isinstance(body, dict) else None

    def kill(self) -> None:
        proc, self.proc = self.proc, None
        if proc is not None and proc.poll() is None:
            os.kill(proc.pid, signal.SIGCONT)  # a paused node dies too
            proc.kill()
            proc.wait(timeout=10)

    def stop(self) -> None:
        proc, self.proc = self.proc, None
        if proc is None or proc.poll() is not None:
            return
        os.kill(proc.pid, signal.SIGCONT)
        proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=5)

    def pause(self) -> None:
        if self.proc is not None:
            os.kill(self.proc.pid, signal.SIGSTOP)

    def resume(self) -> None:
        if self.proc is not None:
            os.kill(self.proc.pid, signal.SIGCONT)


def _listening(node: ClusterNode) -> bool:
    return node.health() is not None


class ManagedRaftCluster:
    """Three (or ``size``) OpenBao nodes in one Raft cluster, owned by this process."""

    def __init__(self, workdir: str | os.PathLike[str], size: int = 3) -> None:
        self.workdir = Path(workdir)
        self.nodes = [ClusterNode(self.workdir, i) for i in range(size)]
        self.root_token = ""
        self.unseal_key = ""

    @property
    def addrs(self) -> list[str]:
        return [n.addr for n in self.nodes]

    def start(self) -> ManagedRaftCluster:
        first = self.nodes[0]
        first.start(self.nodes)
        self._wait(lambda: first.health() is not None, "node0 to listen")
        client = hvac.Client(url=first.addr, timeout=30)
        init = client.sys.initialize(secret_shares=1, secret_threshold=1)
        self.root_token, self.unseal_key = init["root_token"], init["keys_base64"][0]
        client.sys.submit_unseal_key(self.unseal_key)
        self._wait(lambda: self.leader() is first, "node0 to lead")
        for node in self.nodes[1:]:
            node.start(self.nodes)
            self._wait(partial(_listening, node), f"node{node.index} to listen")
        for node in self.nodes[1:]:
            self.unseal(node)
        self.wait_healthy()
        self.wait_voters()
        return self

    def voters(self) -> set[str]:
        """Voting members per the Raft configuration (a node that joined votes once the
        leader has added it: killing the leader before then proves nothing)."""
        try:
            config = self.client().adapter.get("/v1/sys/storage/raft/configuration")
            servers = config["data"]["config"]["servers"]
        except Exception:
            return set()
        return {str(s["node_id"]) for s in servers if s.get("voter")}

    def wait_voters(self, timeout: float = 90.0) -> None:
        """Until every running node is a healthy voter."""
        running = {f"node{n.index}" for n in self.nodes if n.running}
        self._wait(lambda: running <= self.voters(), "every node to vote", timeout=timeout)

    def unseal(self, node: ClusterNode) -> None:
        """Submit the unseal key until the node is unsealed (a joining node retries the join
        first and answers 'not initialised' for a moment)."""

        def unsealed() -> bool:
            try:
                hvac.Client(url=node.addr, timeout=5).sys.submit_unseal_key(self.unseal_key)
            except Exception:
                return False
            health = node.health()
            return bool(health and not health.get("sealed"))

        self._wait(unsealed, f"node{node.index} to unseal", timeout=90)

    def restart(self, node: ClusterNode) -> None:
        node.start(self.nodes)
        self._wait(lambda: node.health() is not None, f"node{node.index} to listen")
        self.unseal(node)

    def leader(self) -> ClusterNode | None:
        for node in self.nodes:
            if not node.running:
                continue
            health = node.health()
            if health and not health.get("sealed") and not health.get("standby"):
                return node
        return None

    def followers(self) -> list[ClusterNode]:
        lead = self.leader()
        return [n for n in self.nodes if n is not lead and n.running]

    def wait_healthy(self, timeout: float = 90.0) -> ClusterNode:
        """Until one node leads and every running node is unsealed and answers writes."""

        def healthy() -> bool:
            lead = self.leader()
            if lead is None:
                return False
            for node in self.nodes:
                if node.running:
                    health = node.health()
                    if not health or health.get("sealed"):
                        return False
            try:  # a write through the leader: the cluster commits
                self.client(lead).sys.list_mounted_secrets_engines()
            except Exception:
                return False
            return True

        self._wait(healthy, "the cluster to be healthy", timeout=timeout)
        lead = self.leader()
        assert lead is not None
        return lead

    def client(self, node: ClusterNode | None = None, token: str | None = None) -> hvac.Client:
        target = node or self.leader() or self.nodes[0]
        return hvac.Client(url=target.addr, token=token or self.root_token, timeout=10)

    def stop(self) -> None:
        for node in self.nodes:
            node.stop()

    def __enter__(self) -> ManagedRaftCluster:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    @staticmethod
    def _wait(check: Callable[[], object], what: str, timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if check():
                return
            time.sleep(0.1)
        raise KeyUnavailable(f"timed out waiting for {what}")
