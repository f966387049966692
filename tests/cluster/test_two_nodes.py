"""A real two-node Ray cluster on this machine with token authentication, as cluster.yaml starts it:
`ray start --head` + `ray start --address` under RAY_AUTH_MODE=token. A client with a wrong token or
none is refused, and so is the sweep driver (exit 2, nothing written); the smoke sweep with the right
token runs against it with --address, trials on both nodes, every row once; and every Ray process it
started is stopped by PID afterwards."""

from __future__ import annotations

import functools
import json
import secrets
import subprocess
import sys
from pathlib import Path

import pytest

from lthray import results

pytestmark = pytest.mark.slow
ROOT = Path(__file__).resolve().parents[2]


CLIENT = "import ray; ray.init(address='{}', _node_ip_address='127.0.0.1'); print('CONNECTED')"


def refused_clients(env: dict[str, str], port: int, tmp_path: Path) -> dict[str, subprocess.Popen]:
    """Clients that must be refused, started at once (each spends ~20 s in Ray's connection retries).
    HOME is an empty folder, so no ~/.ray/auth_token of this machine can stand in for the token."""
    home = tmp_path / "home"
    home.mkdir()
    base = {k: v for k, v in env.items() if not k.startswith("RAY_AUTH")}
    base["HOME"] = str(home)
    wrong = {**base, "RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": secrets.token_hex(32)}
    addr = f"127.0.0.1:{port}"
    run = functools.partial(subprocess.Popen, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    return {
        "wrong token": run([sys.executable, "-c", CLIENT.format(addr)], env=wrong),
        "no token": run([sys.executable, "-c", CLIENT.format(addr)], env=base),
        "driver, wrong token": run(
            [sys.executable, str(ROOT / "sweeps" / "imp_vs_guided.py"), "--preset", "smoke", "--num-samples", "1",
             "--address", addr, "--storage", str(tmp_path / "refused"), "--name", "r"], env=wrong),
    }


def test_sweep_spreads_over_two_nodes_and_cleans_up(tmp_path, two_nodes):
    env, port = two_nodes.env, two_nodes.port
    for what, p in refused_clients(env, port, tmp_path).items():
        out, _ = p.communicate(timeout=180)
        assert p.returncode != 0 and "CONNECTED" not in out, (what, out[-2000:])
        if what.startswith("driver"):  # one line, exit 2, no sweep written
            assert p.returncode == 2, out[-2000:]
            assert out.strip().splitlines()[-1].startswith("error: the Ray cluster at 127.0.0.1:"), out[-2000:]
            assert "refused this driver's authentication token" in out
            assert not (tmp_path / "refused" / "r" / "sweep.json").exists()
        else:
            assert "InvalidAuthToken" in out or "AuthenticationError" in out, (what, out[-2000:])

    out = subprocess.run(
        [sys.executable, str(ROOT / "sweeps" / "imp_vs_guided.py"), "--preset", "smoke", "--num-samples", "2",
         "--max-concurrent", "2", "--address", f"127.0.0.1:{port}", "--storage", str(tmp_path), "--name", "c"],
        env=env, capture_output=True, text=True, timeout=400)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    rows = results.read(tmp_path / "c" / "results").to_pylist()
    keys = [(r["run_id"], r["level"]) for r in rows]
    assert len(keys) == 2 * 3 and len(set(keys)) == len(keys)
    nodes = set()
    for f in (tmp_path / "c").glob("trainable_*/result.json"):
        nodes |= {json.loads(line)["node_id"] for line in f.read_text().splitlines()}
    assert len(nodes) == 2, f"trials ran on {len(nodes)} node(s)"
