"""How far a trained trial's floats move when torch, oneDNN and MKL pick other SIMD kernels.

    python -m bench.kernels                  # the golden smoke trial under each forced kernel set
    python -m bench.kernels --dtype float64  # the same trial in float64 (train.dtype=float64)
    python -m bench.kernels --json F         # also write the per-column spread to F
    python -m bench.kernels --compile        # the same trial with train.compile=true (inductor's kernels)

Each kernel set runs the golden smoke trial (tests/lthray/test_golden.py) in a fresh process with the
environment variables that force it, one torch thread, and prints, per column, the largest absolute
difference from the recorded fixture over the trial's levels. The golden test's tolerances come from
this table (measured, never asserted here): a machine with other kernels (AVX-512, AVX2, SSE) must pass.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
FIXTURES = {"float32": ROOT / "tests" / "fixtures" / "golden_smoke.json",
            "float64": ROOT / "tests" / "fixtures" / "golden_smoke_f64.json"}

# The kernel sets a CPU can be forced to (issue 16): torch's ATen dispatch, oneDNN's ISA, MKL's.
KERNEL_SETS: dict[str, dict[str, str]] = {
    "native": {},
    "aten-avx2": {"ATEN_CPU_CAPABILITY": "avx2"},
    "aten-default": {"ATEN_CPU_CAPABILITY": "default"},
    "onednn-avx2": {"ONEDNN_MAX_CPU_ISA": "AVX2"},
    "onednn-sse41": {"ONEDNN_MAX_CPU_ISA": "SSE41"},
    "mkl-avx2": {"MKL_ENABLE_INSTRUCTIONS": "AVX2"},
    "mkl-sse4_2": {"MKL_ENABLE_INSTRUCTIONS": "SSE4_2"},
    "all-avx2": {"ATEN_CPU_CAPABILITY": "avx2", "ONEDNN_MAX_CPU_ISA": "AVX2", "MKL_ENABLE_INSTRUCTIONS": "AVX2"},
    "all-lowest": {"ATEN_CPU_CAPABILITY": "default", "ONEDNN_MAX_CPU_ISA": "SSE41",
                   "MKL_ENABLE_INSTRUCTIONS": "SSE4_2"},
}

_CHILD = """
import json, sys, tempfile, torch
torch.set_num_threads(1)
from lthray.config import from_flat
from lthray.trial import run_trial
from tests.lthray.test_golden import FLAT
with tempfile.TemporaryDirectory() as d:
    rows = run_trial(from_flat({**FLAT, "train.dtype": sys.argv[2], "train.compile": sys.argv[3] == "1"}),
                     d + "/w", d + "/r", device="cpu")
keep = json.load(open(sys.argv[1]))[0].keys()
print(json.dumps([{k: r[k] for k in keep} for r in rows]))
"""


def run_under(env: dict[str, str], dtype: str = "float32", compile: bool = False) -> list[dict]:
    """The golden trial's rows (only the fixture's columns), run in a fresh process under `env`."""
    out = subprocess.run([sys.executable, "-c", _CHILD, str(FIXTURES[dtype]), dtype, str(int(compile))], cwd=ROOT,
                         env={**os.environ, "PYTHONPATH": str(ROOT), **env}, capture_output=True, text=True,
                         check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def spread(rows: list[dict], want: list[dict]) -> dict[str, float]:
    """Largest |got - recorded| per float column over the levels; other columns count mismatches."""
    out: dict[str, float] = {}
    for got, exp in zip(rows, want, strict=True):
        for k, v in exp.items():
            if isinstance(v, float):
                out[k] = max(out.get(k, 0.0), abs(got[k] - v))
            else:
                out[k] = out.get(k, 0.0) + float(got[k] != v)
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--json", type=Path, help="write {kernel set: {column: spread}} here")
    p.add_argument("--sets", default=",".join(KERNEL_SETS), help="comma-separated kernel sets to run")
    p.add_argument("--dtype", choices=sorted(FIXTURES), default="float32", help="train.dtype of the trial")
    p.add_argument("--compile", action="store_true", help="run the trial with train.compile=true")
    a = p.parse_args(argv)
    want = json.loads(FIXTURES[a.dtype].read_text())
    table: dict[str, dict[str, float]] = {}
    for name in a.sets.split(","):
        table[name] = spread(run_under(KERNEL_SETS[name], a.dtype, a.compile), want)
        print(name, json.dumps({k: float(f"{v:.3g}") for k, v in table[name].items()}), flush=True)
    cols = sorted({c for t in table.values() for c in t})
    print("\nlargest over all kernel sets:")
    for c in cols:
        print(f"  {c:28s} {max(t.get(c, 0.0) for t in table.values()):.3g}")
    if a.json:
        a.json.write_text(json.dumps(table, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
