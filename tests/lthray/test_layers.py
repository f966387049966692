"""The package's import structure: lthray never imports Ray, no module imports one above it (imports
inside functions included), config is a leaf, and no import cycle exists in lthray, sweeps, analysis
or bench."""

import ast
import subprocess
import sys
from pathlib import Path

import lthray

REPO = Path(lthray.__file__).resolve().parent.parent
PACKAGES = ("lthray", "sweeps", "analysis", "bench")

# Lower layers never import higher ones, not even lazily inside a function.
LAYERS = [
    {"registry", "storage", "modes", "config", "datasets", "metrics", "config_docs"},
    {"data", "masks", "models", "results", "schedule"},
    {"rewind", "methods", "explain", "train", "instability", "mask_files", "validate", "weights", "tickets", "plugins",
     "tracking"},
    {"trial", "presets"},
    {"__main__"},
]


def _modules() -> dict[str, Path]:
    out = {}
    for pkg in PACKAGES:
        for path in (REPO / pkg).rglob("*.py"):
            rel = path.relative_to(REPO).with_suffix("")
            out[".".join(p for p in rel.parts if p != "__init__")] = path
    return out


MODULES = _modules()


def imports_of(mod: str) -> set[str]:
    """Every project module `mod` imports, at module level or inside a function (relative imports and
    `from pkg import submodule` resolved to the module)."""
    path = MODULES[mod]
    package = mod if path.name == "__init__.py" else mod.rpartition(".")[0]
    out = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = package.split(".")
                base = ".".join(parts[: len(parts) - node.level + 1] + ([base] if base else []))
            for a in node.names:
                sub = f"{base}.{a.name}"
                out.add(sub if sub in MODULES else base)
        elif isinstance(node, ast.Import):
            out |= {a.name for a in node.names}
    return {m for m in out if m.split(".")[0] in PACKAGES or m.startswith("ray")}


def _layer(mod: str) -> int:
    head = mod.split(".")[1] if mod.startswith("lthray.") else mod
    return next(i for i, names in enumerate(LAYERS) if head in names)


def test_no_module_imports_one_above_it_and_none_imports_ray():
    for mod in (m for m in MODULES if m.startswith("lthray.")):
        for imp in imports_of(mod):
            assert not imp.startswith("ray"), f"{mod} imports {imp}: the library never imports Ray"
            if imp.startswith("lthray."):
                assert _layer(imp) <= _layer(mod), f"{mod} (layer {_layer(mod)}) imports {imp} ({_layer(imp)})"


def test_config_imports_nothing_from_lthray_even_inside_functions():
    assert imports_of("lthray.config") == set()


def _cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """A cycle of the import graph as a path (first == last), or None."""
    state: dict[str, int] = {}  # 1 on the stack, 2 done
    stack: list[str] = []

    def visit(m: str) -> list[str] | None:
        state[m] = 1
        stack.append(m)
        for n in sorted(graph.get(m, ())):
            if state.get(n) == 1:
                return stack[stack.index(n):] + [n]
            if n not in state and (found := visit(n)):
                return found
        stack.pop()
        state[m] = 2
        return None

    for m in sorted(graph):
        if m not in state and (found := visit(m)):
            return found
    return None


def test_no_import_cycle_anywhere():
    graph = {m: {i for i in imports_of(m) if i in MODULES and i != m} for m in MODULES}
    assert _cycle(graph) is None, " -> ".join(_cycle(graph))


def test_the_cycle_finder_finds_a_cycle():  # so that the test above can fail
    assert _cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert _cycle({"a": {"b"}, "b": set()}) is None


def test_importing_config_loads_no_torch_and_no_other_module():
    code = ("import sys, lthray.config; "
            "print(sorted(m for m in sys.modules if m.startswith(('lthray.', 'torch', 'ray'))))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "['lthray.config']"


MAX_FUNCTION_LINES, MAX_MODULE_LINES = 50, 400


def long_functions(path: Path, limit: int = MAX_FUNCTION_LINES) -> list[str]:
    """'module:function (N lines)' for every function or method of `path` longer than `limit` lines."""
    tree = ast.parse(path.read_text())
    where = path.relative_to(REPO) if path.is_relative_to(REPO) else path.name
    return [f"{where}:{n.name} ({n.end_lineno - n.lineno + 1} lines)" for n in ast.walk(tree)
            if isinstance(n, ast.FunctionDef | ast.AsyncFunctionDef) and n.end_lineno - n.lineno + 1 > limit]


def test_no_function_in_the_library_is_over_50_lines():
    found = [f for p in sorted((REPO / "lthray").rglob("*.py")) for f in long_functions(p)]
    assert not found, f"split these (a function is read top to bottom in one screen): {found}"


def test_no_module_of_the_library_or_the_analysis_is_over_400_lines():
    found = [f"{p.relative_to(REPO)} ({n} lines)" for pkg in ("lthray", "analysis")
             for p in sorted((REPO / pkg).rglob("*.py")) if (n := len(p.read_text().splitlines())) > MAX_MODULE_LINES]
    assert not found, f"split these modules by job: {found}"


def test_the_size_checks_can_fail(tmp_path):  # so that the two tests above can fail
    body = "\n".join(f"    x{i} = {i}" for i in range(60))
    (tmp_path / "long.py").write_text(f"def f():\n{body}\n")
    assert [s.split(":")[1] for s in long_functions(tmp_path / "long.py")] == ["f (61 lines)"]

