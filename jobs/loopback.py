"""A real multi-node Ray cluster on 127.0.0.1, for the scale benchmark and the CI integration test.

``ray start --head`` (with the dashboard's job server) plus ``worker_nodes`` times
``ray start --address``, each node with its own CPUs, object store, ``--temp-dir`` and
process group. Jobs go through ``ray job submit`` exactly as on a remote cluster. The
cluster is stopped by signalling those process groups, never by ``ray stop`` (which would
stop every Ray cluster on the machine). Token auth is off (``RAY_AUTH_MODE=disabled``):
nothing but this machine can reach 127.0.0.1.

    with LoopbackCluster(work, worker_nodes=1) as cluster:
        res = cluster.submit(["python", "-m", "jobs.curate", "--config", "c.yaml"])
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Callable

REPO = Path(__file__).resolve().parents[1]
_UNITS = {"B": 1, "KiB": 2**10, "MiB": 2**20, "GiB": 2**30, "TiB": 2**40, "KB": 1e3, "MB": 1e6, "GB": 1e9}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def job_server_available() -> bool:
    """Whether ``ray start --include-dashboard=true`` can serve jobs here (the ``ray[default]`` extra)."""
    try:
        import ray.dashboard.optional_deps  # noqa: F401  (what `ray start` itself checks)
    except ImportError:
        return False
    return True


def _ray() -> str:
    return str(Path(sys.executable).parent / "ray")


class LoopbackCluster:
    """A head node and ``worker_nodes`` worker nodes on 127.0.0.1, ``num_cpus`` CPUs each.

    Args:
        work: folder for the nodes' logs (``head.log``, ``worker-<i>.log``).
        worker_nodes: how many ``ray start --address`` nodes join the head.
        num_cpus: CPUs each node offers.
        object_store: bytes of object store per node.
        timeout: seconds a node may take to come up.
    """

    def __init__(self, work: Path, worker_nodes: int = 1, num_cpus: int = 1, object_store: int = 400_000_000,
                 timeout: float = 180):
        self.work = Path(work)
        self.num_cpus, self.nodes, self.timeout = num_cpus, 1 + worker_nodes, timeout
        self.env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
        self.env.update(RAY_AUTH_MODE="disabled", PYTHONPATH=str(REPO),
                        PATH=f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",
                        # a busy machine starts a raylet slowly; Ray's default wait is 10 s
                        RAY_raylet_start_wait_time_s="300")
        self.port, self.dash = free_port(), free_port()
        self.dash_url = f"http://127.0.0.1:{self.dash}"
        self.gcs = f"127.0.0.1:{self.port}"
        self.procs: list[subprocess.Popen] = []
        self.logs: list = []
        # Ray's socket paths must stay under 108 bytes: short folders under /tmp, not under `work`.
        self.temp_dirs = [tempfile.mkdtemp(prefix="tlc-h-")] + [tempfile.mkdtemp(prefix=f"tlc-w{i}-")
                                                                 for i in range(worker_nodes)]
        self._object_store = object_store

    def __enter__(self) -> "LoopbackCluster":
        self.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop()

    def start(self) -> None:
        """Start the head, wait for its job server, then start the worker nodes and wait for their CPUs."""
        self.work.mkdir(parents=True, exist_ok=True)
        common = ["--block", "--node-ip-address=127.0.0.1", f"--num-cpus={self.num_cpus}",
                  f"--object-store-memory={self._object_store}", "--disable-usage-stats"]
        ray = _ray()
        self._start([ray, "start", "--head", f"--port={self.port}", "--include-dashboard=true",
                     "--dashboard-host=127.0.0.1", f"--dashboard-port={self.dash}",
                     f"--ray-client-server-port={free_port()}", f"--temp-dir={self.temp_dirs[0]}", *common,
                     *self._ports()], "head.log")
        self._wait(lambda: subprocess.run([ray, "job", "list", "--address", self.dash_url], env=self.env,
                                          capture_output=True, timeout=60).returncode == 0, "head")
        for i, temp in enumerate(self.temp_dirs[1:]):
            self._start([ray, "start", f"--address={self.gcs}", f"--temp-dir={temp}", *common, *self._ports()],
                        f"worker-{i}.log")
        self._wait(lambda: self.status().get("cpu_total", 0) >= self.nodes * self.num_cpus, "worker nodes")

    @staticmethod
    def _ports() -> list[str]:
        # Fixed default ports (52365 for the agent...) would clash with other clusters on the host.
        return [f"--dashboard-agent-listen-port={free_port()}", f"--dashboard-agent-grpc-port={free_port()}",
                f"--runtime-env-agent-port={free_port()}", f"--metrics-export-port={free_port()}",
                f"--node-manager-port={free_port()}", f"--object-manager-port={free_port()}"]

    def _start(self, cmd: list[str], log_name: str) -> None:
        log = open(self.work / log_name, "w")
        self.logs.append(log)
        self.procs.append(subprocess.Popen(cmd, env=self.env, stdout=log, stderr=subprocess.STDOUT,
                                           start_new_session=True))

    def _wait(self, ok: Callable[[], bool], what: str) -> None:
        deadline = time.monotonic() + self.timeout

        def ready() -> bool:
            try:
                return ok()
            except (subprocess.SubprocessError, OSError, ValueError, KeyError):  # not answering yet
                return False

        while not ready():
            if time.monotonic() > deadline or any(p.poll() is not None for p in self.procs):
                self.stop()
                raise RuntimeError(f"Ray {what} did not come up (see the logs in {self.work})")
            time.sleep(1)

    def status(self) -> dict[str, float]:
        """CPUs and object-store use (``0.0/2.0 CPU``, ``12.3MiB/762.9MiB object_store_memory``) from the
        dashboard's ``/api/cluster_status``, the text ``ray status`` prints: one HTTP request, where
        each ``ray status`` is a new Python process costing about a CPU-second."""
        with urllib.request.urlopen(f"{self.dash_url}/api/cluster_status?format=1", timeout=30) as r:
            text = json.loads(r.read())["data"]["clusterStatus"]
        out: dict[str, float] = {}
        m = re.search(r"([\d.]+)/([\d.]+) CPU", text)
        if m:
            out["cpu_total"] = float(m.group(2))
        m = re.search(r"([\d.]+)([KMGT]?i?B)/([\d.]+)([KMGT]?i?B) object_store_memory", text)
        if m:
            out["object_store_used"] = float(m.group(1)) * _UNITS.get(m.group(2), 1)
        return out

    def submit(self, entrypoint: list[str], submission_id: str | None = None,
               env_vars: dict[str, str] | None = None, timeout: float | None = None) -> subprocess.CompletedProcess:
        """``ray job submit --address <dashboard> -- <entrypoint>``, run from the repository root."""
        cmd = [_ray(), "job", "submit", "--address", self.dash_url]
        if submission_id:
            cmd += ["--submission-id", submission_id]
        cmd += ["--runtime-env-json", json.dumps({"env_vars": {"PYTHONPATH": str(REPO), **(env_vars or {})}}),
                "--", *entrypoint]
        return subprocess.run(cmd, env=self.env, capture_output=True, text=True, cwd=REPO, timeout=timeout)

    def worker_logs(self, node: int) -> list[Path]:
        """The Ray worker processes' log files of node ``node`` (0 = head): proof a node ran work."""
        return sorted(Path(self.temp_dirs[node]).glob("session_*/logs/worker-*.out"))

    def stop(self) -> None:
        """SIGTERM, then SIGKILL, each node's process group; remove the temp dirs."""
        for p in reversed(self.procs):
            for sig in (signal.SIGTERM, signal.SIGKILL):
                try:
                    os.killpg(p.pid, sig)
                except ProcessLookupError:
                    break
                try:
                    p.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    continue
        self.procs.clear()
        for log in self.logs:
            log.close()
        self.logs.clear()
        for t in self.temp_dirs:
            shutil.rmtree(t, ignore_errors=True)
