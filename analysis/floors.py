"""Noise floors: the yardsticks every drift is read against.

- Seed to seed: two dense models of one design that differ only in their seed are equally good networks.
  How far their Grad-CAM and LRP maps disagree (Spearman, top-k IoU, on the same probe images) and how
  far their PCBMs' top concepts do is the change that replacing the network by another equally trained
  one brings. A pruned model's drift from its own dense model within this floor is no more than that.
- Refit: one dense backbone's PCBM fitted twice (another fit seed, a bootstrap of the bank's images;
  `trial.measure.refit_pcbm`). A concept shift within this floor is indistinguishable from refitting.

Both come from level-0 rows (`reference_cams`, `reference_lrp`, `top_concepts`, `concept_refit_*`); rows
written before schema 6 have none, and their floors are absent (the report says so).
"""

from __future__ import annotations

import itertools
import json
import math

import numpy as np
import pandas as pd

from analysis import inference, stats
from lthray import metrics

# metric -> the row column its floor is computed from (lthray.metrics: each metric's `floors`)
SEED_FLOORS = metrics.SEED_FLOORS
REFIT_FLOORS = metrics.REFIT_FLOORS


def dense_models(rows: pd.DataFrame) -> pd.DataFrame:
    """One level-0 row per (design, seed): every method of a seed and design trains the same dense model."""
    d = stats.with_design(rows[(rows["level"] == 0) & (rows["status"] == "ok")])
    return d.sort_values(["design", "seed", "run_id"]).drop_duplicates(["design", "seed"])


def _concept_sets(entries: list[str]) -> list[set[str]]:
    return [set(e.partition(": ")[2].split(" | ")) for e in entries]


def _agreement(metric: str, a: pd.Series, b: pd.Series) -> float:
    """How far two dense models agree on `metric`, the way the rows measure a pruned model against its dense one."""
    from lthray.explain.cam import topk_iou
    from lthray.explain.rank import spearman

    if metric == "concept_topk_overlap":
        sa, sb = _concept_sets(list(a["top_concepts"])), _concept_sets(list(b["top_concepts"]))
        return float(np.mean([len(x & y) / max(len(x), 1) for x, y in zip(sa, sb, strict=True)]))
    col = SEED_FLOORS[metric]
    n = int(json.loads(a["config_json"]).get("data.probe_size", 64))
    ma = np.asarray(a[col], dtype=np.float32).reshape(n, -1)
    mb = np.asarray(b[col], dtype=np.float32).reshape(n, -1)
    if metric == "cam_iou":
        k = float(json.loads(a["config_json"]).get("explain.topk", 0.2))
        return float(np.mean(topk_iou(ma, mb, k)))
    return float(np.mean(spearman(ma, mb)))


def floors(rows: pd.DataFrame) -> pd.DataFrame:
    """Per (design, metric, kind): the floor (mean agreement), its spread (lo, hi: the lowest and highest
    seed pair, or a 95% interval for a refit) and how many pairs or fits it rests on."""
    dense = dense_models(rows)
    recs = []
    for design, g in dense.groupby("design"):
        for metric, col in SEED_FLOORS.items():
            have = g[g[col].notna()]
            vals = [_agreement(metric, a, b) for (_, a), (_, b) in itertools.combinations(have.iterrows(), 2)]
            if vals:
                recs.append({"design": design, "metric": metric, "kind": "seed", "floor": float(np.mean(vals)),
                             "lo": float(np.min(vals)), "hi": float(np.max(vals)), "n": len(vals)})
        for metric, col in REFIT_FLOORS.items():
            v = g[col].dropna().astype(float)
            if len(v):
                m, lo, hi, n = inference.interval(v, inference.RANGES.get(metric))
                recs.append({"design": design, "metric": metric, "kind": "refit", "floor": m, "lo": lo, "hi": hi,
                             "n": n})
    return pd.DataFrame(recs, columns=["design", "metric", "kind", "floor", "lo", "hi", "n"])


def floor_of(fl: pd.DataFrame, design: str, metric: str, kind: str = "seed") -> pd.Series | None:
    """The floor row of (design, metric, kind), or None."""
    if fl.empty:
        return None
    hit = fl[(fl["design"] == design) & (fl["metric"] == metric) & (fl["kind"] == kind)]
    return hit.iloc[0] if not hit.empty else None


def against(value: float, lo: float, hi: float, floor: pd.Series | None) -> str:
    """Where a drift's interval [lo, hi] of agreement-with-dense lies against a floor: 'beyond the floor'
    when all of it is below the floor's lowest pair (more change than another seed or fit brings),
    'within the floor' when all of it is at or above the floor's mean, else 'at the floor's edge'."""
    if floor is None or not np.isfinite(value):
        return "no floor measured"
    top = hi if np.isfinite(hi) else value
    bottom = lo if np.isfinite(lo) else value
    what = "seed-to-seed" if floor["kind"] == "seed" else "refit"
    span = f"{what} floor {floor['floor']:.2f} (pairs {floor['lo']:.2f}-{floor['hi']:.2f})" \
        if floor["kind"] == "seed" else f"{what} floor {floor['floor']:.2f} [{floor['lo']:.2f}, {floor['hi']:.2f}]"
    low_edge = floor["lo"] if math.isfinite(floor["lo"]) else floor["floor"]
    if top < low_edge:
        return f"beyond the {span}"
    if bottom >= floor["floor"]:
        return f"within the {span}"
    return f"at the edge of the {span}"
