"""The package's metadata: ranges a user's environment accepts, the exact pins CI uses inside them, and the
`lthray` command it installs."""

import importlib
import tomllib
from pathlib import Path

from packaging.requirements import Requirement
from packaging.version import Version

ROOT = Path(__file__).resolve().parents[1]
META = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]


def _requirements() -> list[Requirement]:
    extras = [r for group in META["optional-dependencies"].values() for r in group]
    return [Requirement(r) for r in META["dependencies"] + extras]


def _pins() -> dict[str, Version]:
    pins = {}
    for line in (ROOT / "constraints.txt").read_text().splitlines():
        if line and not line.startswith("#"):
            name, _, version = line.partition("==")
            pins[name.lower().replace("_", "-")] = Version(version)
    return pins


def test_every_dependency_has_a_range_with_an_upper_bound():
    for r in _requirements():
        assert any(s.operator == "<" for s in r.specifier), f"{r} has no upper bound"
        assert not any(s.operator == "==" for s in r.specifier), f"{r} pins one version: a user's environment fights it"


def test_the_pinned_versions_ci_uses_lie_inside_the_ranges():
    pins, checked = _pins(), 0
    for r in _requirements():
        v = pins.get(r.name.lower().replace("_", "-"))
        if v is not None:  # wandb, onnx: extras CI does not install
            assert r.specifier.contains(v, prereleases=True), f"constraints.txt has {r.name}=={v}, outside {r}"
            checked += 1
    assert checked >= 20


def test_an_environment_with_another_torch_keeps_it():
    """pip keeps an installed distribution that satisfies the requirement: any torch 2.x from 2.4 does."""
    torch = next(r for r in _requirements() if r.name == "torch")
    for other in ("2.4.0", "2.5.1", "2.9.1", "2.14.1"):
        assert torch.specifier.contains(other), other
    assert not torch.specifier.contains("3.0.0") and not torch.specifier.contains("2.3.1")
    ray = next(r for r in _requirements() if r.name == "ray")
    assert not ray.specifier.contains("2.51.0") and ray.specifier.contains("2.52.0")  # token auth arrived in 2.52


def test_the_lthray_command_is_declared_and_importable():
    module, _, func = META["scripts"]["lthray"].partition(":")
    assert callable(getattr(importlib.import_module(module), func))


def test_installing_into_an_environment_that_has_torch_resolves_to_nothing_but_lthray(tmp_path):
    """pip's own resolver, offline, on this environment (whose torch and every other dependency are
    installed already): `pip install -e .` would install lthray alone and keep the torch it found."""
    import json
    import subprocess
    import sys

    report = tmp_path / "report.json"
    done = subprocess.run([sys.executable, "-m", "pip", "install", "--dry-run", "--no-index", "--no-build-isolation",
                           "--quiet", "--report", str(report), "-e", str(ROOT)],
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    names = {item["metadata"]["name"].lower() for item in json.loads(report.read_text())["install"]}
    assert names == {"lthray"}, names
