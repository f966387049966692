"""cluster.yaml is a valid Ray cluster-launcher config, checked offline with Ray's own schema."""

import copy
import re
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
STORAGE_PLACEHOLDER = "s3://YOUR-BUCKET/lthray"


@pytest.fixture(scope="module")
def config():
    return yaml.safe_load((ROOT / "cluster.yaml").read_text())


def test_ray_schema_accepts_it(config):
    from ray.autoscaler._private.util import prepare_config, validate_config

    prepared = prepare_config(copy.deepcopy(config))
    validate_config(prepared)
    assert prepared["head_node_type"] in prepared["available_node_types"]


def test_a_gpu_worker_type_scales_from_zero(config):
    types = config["available_node_types"]
    gpu = [name for name, t in types.items() if t.get("resources", {}).get("GPU", 0) >= 1]
    assert gpu, "no node type offers GPUs"
    for name in gpu:
        assert name != config["head_node_type"]
        assert types[name]["min_workers"] == 0
        assert types[name]["max_workers"] >= 1
    assert types[config["head_node_type"]]["resources"].get("GPU", 0) == 0


def test_setup_installs_this_project(config):
    cmds = config["setup_commands"]
    assert isinstance(cmds, list) and all(isinstance(c, str) for c in cmds)
    assert any(re.search(r"pip install .*-e ~/lthray\b", c) for c in cmds)
    assert config["file_mounts"]["~/lthray"] == "."
    assert ".venv" in config["rsync_exclude"]


def test_no_secrets_and_no_extra_ports(config):
    text = (ROOT / "cluster.yaml").read_text()
    assert not re.search(r"AKIA[0-9A-Z]{16}|aws_secret_access_key|BEGIN [A-Z ]*PRIVATE KEY", text)
    assert "security_group" not in text.lower() and "IpPermissions" not in text
    head = " ".join(config["head_start_ray_commands"])
    assert "--dashboard-host=127.0.0.1" in head


def _cluster_docs() -> list[str]:
    """The cluster guide (docs/cluster.md, up to its security section) and the README's cluster commands."""
    guide = (ROOT / "docs" / "cluster.md").read_text().split("\n## Who can reach", 1)[0]
    readme = (ROOT / "README.md").read_text()
    return [guide, readme.split("On a GPU cluster", 1)[1].split("\n## ", 1)[0]]


@pytest.mark.parametrize("which", [0, 1], ids=["docs/cluster.md", "README"])
def test_the_cluster_docs_use_the_same_placeholder_and_real_flags(config, which):
    section = _cluster_docs()[which]
    assert STORAGE_PLACEHOLDER in (ROOT / "cluster.yaml").read_text()
    assert STORAGE_PLACEHOLDER in section
    for cmd in ("ray up cluster.yaml", "ray down cluster.yaml", "--resume", "--address auto"):
        assert cmd in section, cmd
    # every flag the section passes to the sweep exists
    from sweeps.imp_vs_guided import parser

    known = {a for action in parser()._actions for a in action.option_strings}
    commands = section.replace("\\\n", " ").splitlines()
    sweep_args = [line.split("imp_vs_guided.py", 1)[1].split(" -- ", 1)[-1] for line in commands
                  if "imp_vs_guided.py" in line]
    assert sweep_args
    used = {f for a in sweep_args for f in re.findall(r"(?<=\s)(--[a-z][a-z-]+)", " " + a)}
    assert used and used <= known, used - known


def test_every_node_and_the_driver_use_token_auth(config):
    starts = config["head_start_ray_commands"] + config["worker_start_ray_commands"]
    for cmd in starts:
        if "ray start" in cmd:
            assert "RAY_AUTH_MODE=token ray start" in cmd, cmd
    assert sum("ray start" in c for c in starts) == 2
    # the token travels as a file from the user's machine, never as a value in the config
    assert config["file_mounts"]["~/.ray/auth_token"] == "~/.ray/auth_token"
    assert any("export RAY_AUTH_MODE=token" in c for c in config["setup_commands"])  # the driver's shells
    assert any(c.startswith("chmod 600 ~/.ray/auth_token") for c in config["setup_commands"])


def test_no_token_value_anywhere_in_the_repository():
    import subprocess

    # every tracked mention of a token variable is a reference (a name, a path, a generated value)
    out = subprocess.run(["git", "grep", "-n", "-E", "RAY_AUTH_TOKEN|auth_token"], cwd=ROOT,
                         capture_output=True, text=True)
    if out.returncode not in (0, 1):
        pytest.skip(f"git grep unavailable: {out.stderr.strip()}")
    assigned = re.compile(r"""RAY_AUTH_TOKEN["']?\s*[=:]\s*["']?([A-Za-z0-9+/_-]{12,})""")
    for line in out.stdout.splitlines():
        m = assigned.search(line)
        assert m is None or m.group(1).startswith("$"), line
    assert not re.search(r"\b[0-9a-f]{32,}\b", (ROOT / "cluster.yaml").read_text())
