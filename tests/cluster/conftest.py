"""A real two-node Ray cluster on this machine (loopback), started as cluster.yaml starts one: `ray start
--head` + `ray start --address` under RAY_AUTH_MODE=token with a token of the test's own. Every Ray
process it started is stopped by PID afterwards, and the fixture fails if one is left running."""

from __future__ import annotations

import os
import secrets
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import psutil
import pytest

RAY = str(Path(sys.executable).parent / "ray")
WORKER = "lthray_worker_node"  # a custom resource that marks the second node's raylet


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def started_by(temp: Path) -> list[psutil.Process]:
    """Every process of the cluster rooted at `temp` (its GCS, raylets, agents, workers)."""
    roots = [p for p in psutil.process_iter(["cmdline"]) if any(str(temp) in a for a in p.info["cmdline"] or [])]
    procs = set(roots)
    for p in roots:
        try:
            procs.update(p.children(recursive=True))
        except psutil.NoSuchProcess:
            pass
    return list(procs)


@dataclass
class Cluster:
    temp: Path
    port: int
    env: dict[str, str]

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def worker_node(self) -> list[psutil.Process]:
        """The second node's raylet and every process under it (its workers and agents)."""
        raylets = [p for p in psutil.process_iter(["cmdline"])
                   if any("raylet" in a for a in (p.info["cmdline"] or [])[:1])
                   and WORKER in " ".join(p.info["cmdline"] or [])]
        out = list(raylets)
        for p in raylets:
            out += p.children(recursive=True)
        return out


@pytest.fixture
def two_nodes():
    # Ray's socket paths must stay short: a temp dir under /tmp, not pytest's deep tmp_path.
    temp = Path(tempfile.mkdtemp(prefix="lthray-ray-", dir="/tmp"))
    port = free_port()
    # Token auth, with a token of this test's own: nothing is read from or written to ~/.ray.
    env = {**os.environ, "RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": secrets.token_hex(32),
           "RAY_USAGE_STATS_ENABLED": "0", "HF_HUB_OFFLINE": "1", "PYTHONUNBUFFERED": "1"}
    env.pop("RAY_AUTH_TOKEN_PATH", None)
    env.pop("RAY_ADDRESS", None)
    node = ["--num-cpus=1", "--object-store-memory=100000000", "--node-ip-address=127.0.0.1"]
    try:
        subprocess.run([RAY, "start", "--head", f"--port={port}", "--include-dashboard=false",
                        f"--temp-dir={temp}", "--disable-usage-stats", *node],
                       env=env, check=True, capture_output=True, timeout=120)
        subprocess.run([RAY, "start", f"--address=127.0.0.1:{port}", f'--resources={{"{WORKER}": 1}}', *node],
                       env=env, check=True, capture_output=True, timeout=120)
        deadline = time.time() + 60
        while True:  # wait for the second node to register
            st = subprocess.run([RAY, "status", f"--address=127.0.0.1:{port}"], env=env, capture_output=True,
                                text=True, timeout=60).stdout
            if st.count("node_") >= 2 or time.time() > deadline:
                break
            time.sleep(1)
        assert st.count("node_") >= 2, st
        yield Cluster(temp, port, env)
    finally:
        procs = started_by(temp)
        for p in procs:
            try:
                p.kill()
            except psutil.NoSuchProcess:
                pass
        psutil.wait_procs(procs, timeout=30)
        left = [p for p in started_by(temp) if p.is_running() and p.status() != psutil.STATUS_ZOMBIE]
        shutil.rmtree(temp, ignore_errors=True)
        assert not left, f"Ray processes left running: {[p.pid for p in left]}"
