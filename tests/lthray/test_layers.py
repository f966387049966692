"""The package's import layers: lthray never imports Ray, and no module imports one above it."""

import ast
import subprocess
import sys
from pathlib import Path

import lthray

ROOT = Path(lthray.__file__).resolve().parent

# Lower layers never import higher ones at module level (config validates against registries of
# higher layers lazily, inside __post_init__, exactly as before the reshape).
LAYERS = [
    {"registry", "storage", "modes", "config"},
    {"data", "masks", "models", "results", "rewind"},
    {"criteria", "explain", "train", "instability", "mask_files"},
    {"lottery", "presets"},
    {"__main__"},
]


def _layer(mod: str) -> int:
    head = mod.split(".")[1] if mod.startswith("lthray.") else mod
    return next(i for i, names in enumerate(LAYERS) if head in names)


def _top_level_imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text())
    out = set()
    for node in tree.body:  # module level only: lazy imports inside functions are the allowed way up
        if isinstance(node, ast.ImportFrom) and node.module:
            out.add(node.module)
            if node.module == "lthray":
                out |= {f"lthray.{a.name}" for a in node.names}
        elif isinstance(node, ast.Import):
            out |= {a.name for a in node.names}
    return out


def test_no_module_imports_one_above_it_and_none_imports_ray():
    for path in ROOT.rglob("*.py"):
        rel = path.relative_to(ROOT.parent).with_suffix("")
        mod = ".".join(p for p in rel.parts if p != "__init__")
        if mod == "lthray":
            continue
        for imp in _top_level_imports(path):
            assert not imp.startswith("ray"), f"{mod} imports {imp}: the library never imports Ray"
            if imp.startswith("lthray."):
                assert _layer(imp) <= _layer(mod), f"{mod} (layer {_layer(mod)}) imports {imp} ({_layer(imp)})"


def test_importing_config_loads_no_torch_and_no_higher_module():
    code = ("import sys, lthray.config; "
            "print(sorted(m for m in sys.modules if m.startswith(('lthray.', 'torch', 'ray'))))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "['lthray.config']"
