"""A real Ray cluster on this machine: nodes from `ray start`, an `mlflow server`, jobs via `ray job
submit`.

Every node gets its own temp dir and its own ports, so it shares nothing with another Ray on the
machine (one temp dir for two nodes breaks `--working-dir` jobs: the second node to unpack the
package deletes and re-extracts the folder the first node's processes run in). Each process is
started in a new session, so a node is exactly the processes of that session, and stopping one
kills those PIDs only: never `ray stop`, never by name. Token authentication as docs/cluster.md
sets it up, with a token of our own in the environment (not ~/.ray/auth_token).
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

BIN = Path(sys.executable).parent
NODE_PORT_KEYS = (
    "node-manager-port",
    "object-manager-port",
    "dashboard-agent-listen-port",
    "dashboard-agent-grpc-port",
    "runtime-env-agent-port",
    "metrics-export-port",
)
HEAD_PORT_KEYS = ("port", "dashboard-port", "ray-client-server-port")
WORKER_PORTS = 40  # worker processes per node: a range of their own


def free_ports(n: int) -> list[int]:
    """`n` distinct ports free on 127.0.0.1 now."""
    sockets = [socket.socket() for _ in range(n)]
    try:
        for s in sockets:
            s.bind(("127.0.0.1", 0))
        return [s.getsockname()[1] for s in sockets]
    finally:
        for s in sockets:
            s.close()


def free_port_range(n: int) -> int:
    """The first port of `n` consecutive ports that are free now (searched from a random start)."""
    start = 20000 + secrets.randbelow(30000)
    for base in range(start, 60000 - n, n):
        try:
            holders = []
            for port in range(base, base + n):
                s = socket.socket()
                holders.append(s)
                s.bind(("127.0.0.1", port))
            return base
        except OSError:
            continue
        finally:
            for s in holders:
                s.close()
    raise RuntimeError(f"no {n} consecutive free ports")


def session_pids(sid: int) -> list[int]:
    """Live processes of session `sid` (what one `ray start --block` started)."""
    pids = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            fields = stat[stat.rindex(")") + 2 :].split()
            if int(fields[3]) == sid and fields[0] != "Z":  # fields: state, ppid, pgrp, session
                pids.append(int(entry.name))
    return pids


def kill_session(sid: int) -> None:
    """SIGKILL every process of session `sid` (started by us), until none is left."""
    for _ in range(50):
        pids = session_pids(sid)
        if not pids:
            return
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        time.sleep(0.1)


@dataclass
class Process:
    """A process we started in its own session, with its log."""

    name: str
    popen: subprocess.Popen
    log: Path

    @property
    def sid(self) -> int:
        return self.popen.pid

    def kill(self) -> None:
        kill_session(self.sid)
        self.popen.wait()


@dataclass
class LocalCluster:
    """Head + workers from `ray start`, each with its own temp dir and ports; token auth on."""

    root: Path = field(
        default_factory=lambda: Path(tempfile.mkdtemp(prefix="rc", dir="/tmp"))
    )  # short: socket paths
    env: dict[str, str] = field(default_factory=dict)
    processes: list[Process] = field(default_factory=list)
    gcs_port: int = 0
    dashboard_port: int = 0

    def __post_init__(self) -> None:
        self.env = {
            **os.environ,
            "RAY_AUTH_MODE": "token",
            "RAY_AUTH_TOKEN": secrets.token_hex(16),
            "OMP_NUM_THREADS": "1",
            "PATH": f"{BIN}:{os.environ.get('PATH', '')}",
        }
        self.env.pop("RAY_ADDRESS", None)

    @property
    def dashboard(self) -> str:
        return f"http://127.0.0.1:{self.dashboard_port}"

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.gcs_port}"

    def _start(self, name: str, args: list[str]) -> Process:
        log = self.root / f"{name}.log"
        popen = subprocess.Popen(
            args,
            env=self.env,
            stdout=log.open("w"),
            stderr=subprocess.STDOUT,
            start_new_session=True,
            cwd=self.root,
        )
        process = Process(name, popen, log)
        self.processes.append(process)
        return process

    def _node_args(self, name: str, cpus: int) -> list[str]:
        ports = free_ports(len(NODE_PORT_KEYS))
        first = free_port_range(WORKER_PORTS)
        args = [
            str(BIN / "ray"),
            "start",
            "--block",
            "--node-ip-address=127.0.0.1",
            f"--num-cpus={cpus}",
            "--num-gpus=0",
            f"--temp-dir={self.root / name}",
            "--disable-usage-stats",
            f"--min-worker-port={first}",
            f"--max-worker-port={first + WORKER_PORTS - 1}",
        ]
        return args + [f"--{key}={port}" for key, port in zip(NODE_PORT_KEYS, ports)]

    def start_head(self, cpus: int) -> Process:
        self.gcs_port, self.dashboard_port, client_port = free_ports(len(HEAD_PORT_KEYS))
        args = self._node_args("head", cpus) + [
            "--head",
            f"--port={self.gcs_port}",
            "--dashboard-host=127.0.0.1",
            f"--dashboard-port={self.dashboard_port}",
            f"--ray-client-server-port={client_port}",
        ]
        head = self._start("head", args)
        token = {"Authorization": f"Bearer {self.env['RAY_AUTH_TOKEN']}"}
        wait_for(
            lambda: _http_ok(f"{self.dashboard}/api/version", token),
            180,
            f"the head's dashboard ({head.log})",
        )
        return head

    def add_worker(self, name: str, cpus: int) -> Process:
        return self._start(name, self._node_args(name, cpus) + [f"--address={self.address}"])

    def nodes(self) -> list[dict]:
        """`ray.nodes()` of the cluster, read by a client process (the test process stays off the
        cluster)."""
        code = (
            f"import json, ray; ray.init(address='{self.address}', logging_level=40); "
            "print(json.dumps([{'id': n['NodeID'], 'alive': n['Alive'], "
            "'head': 'node:__internal_head__' in n['Resources']} for n in ray.nodes()]))"
        )
        out = subprocess.run(
            [str(BIN / "python"), "-c", code],
            env=self.env,
            capture_output=True,
            text=True,
            timeout=120,
            cwd=self.root,
        )
        return json.loads(out.stdout.strip().splitlines()[-1]) if out.returncode == 0 else []

    def start_mlflow(self) -> tuple[Process, str]:
        (port,) = free_ports(1)
        store = self.root / "mlflow"
        store.mkdir()
        server = self._start(
            "mlflow",
            [
                str(BIN / "mlflow"),
                "server",
                "--host",
                "127.0.0.1",
                "--port",
                str(port),
                "--workers",
                "1",
                "--backend-store-uri",
                f"sqlite:///{store}/mlflow.db",
                "--artifacts-destination",
                str(store / "artifacts"),
            ],
        )
        uri = f"http://127.0.0.1:{port}"
        wait_for(lambda: _http_ok(f"{uri}/health"), 180, f"the MLflow server ({server.log})")
        return server, uri

    def submit(self, working_dir: Path, command: list[str], log: Path) -> subprocess.Popen:
        """`ray job submit --working-dir` and follow the job's output into `log` (ends with the
        job)."""
        args = [
            str(BIN / "ray"),
            "job",
            "submit",
            "--address",
            self.dashboard,
            "--working-dir",
            str(working_dir),
            "--",
            *command,
        ]
        return subprocess.Popen(
            args,
            env=self.env,
            stdout=log.open("w"),
            stderr=subprocess.STDOUT,
            cwd=working_dir,
            start_new_session=True,
        )

    def stop(self) -> None:
        """Kill every process we started (by session), then remove the temp dirs."""
        for process in reversed(self.processes):
            process.kill()
        shutil.rmtree(self.root, ignore_errors=True)


def wait_for(condition, timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(1)
    raise TimeoutError(f"{what} not up after {timeout_s:.0f} s")


def _http_ok(url: str, headers: dict[str, str] | None = None) -> bool:
    try:
        with urllib.request.urlopen(
            urllib.request.Request(url, headers=headers or {}), timeout=5
        ) as response:
            return response.status == 200
    except OSError:
        return False
