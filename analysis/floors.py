"""Noise floors: the yardsticks every drift is read against.

- Same initialisation (the null for a ticket's drift): the dense model against its second copy, trained
  from the same initialisation and rewind point with another data order and measured exactly as a pruned
  level is (level-0 `floor_` columns, `explain.same_init_floor`). A rewound ticket shares its dense
  model's initialisation and first k steps; so does this copy. It is a per-seed value, so a drift is
  tested *paired by seed* against it (`analysis.claims`), which carries the floor's own spread into the
  test instead of treating it as a known constant.
- Seed to seed: two dense models of one design that differ only in their seed are equally good networks.
  How far their Grad-CAM and LRP maps disagree (Spearman, top-k IoU, on the same probe images) and how
  far their PCBMs' top concepts do is the change that replacing the network by another equally trained
  one brings. A pruned model's drift from its own dense model within this floor is no more than that.
- Refit: the dense backbone's concept -> class layer refitted on bootstraps of the bank's images, through
  its own projection (`concepts.refit_agreement`). A concept shift within this floor is indistinguishable
  from refitting. It is the top of the concept measure's range; the bottom is the trial's untrained
  initialisation measured the same way (`concept_range`): a measure that cannot tell those apart with the
  seeds at hand cannot support a concept claim.

The last two come from level-0 rows (`reference_cams`, `reference_lrp`, `top_concepts`, `concept_refit_*`); rows
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
SAME_INIT_FLOORS = metrics.SAME_INIT_FLOORS
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
        for kind, cols in (("same_init", SAME_INIT_FLOORS), ("refit", REFIT_FLOORS)):
            recs += _interval_floors(design, g, kind, cols)
    return pd.DataFrame(recs, columns=["design", "metric", "kind", "floor", "lo", "hi", "n"])


def _interval_floors(design: str, g: pd.DataFrame, kind: str, cols: dict[str, str]) -> list[dict]:
    """Floors that are one value per dense model (same-initialisation copy, refit): their mean over seeds
    and its 95% interval."""
    recs = []
    for metric, col in cols.items():
        if col in g:
            v = g[col].dropna().astype(float)
            if len(v):
                m, lo, hi, n = inference.interval(v, inference.RANGES.get(metric))
                recs.append({"design": design, "metric": metric, "kind": kind, "floor": m, "lo": lo, "hi": hi,
                             "n": n})
    return recs


def floor_of(fl: pd.DataFrame, design: str, metric: str, kind: str | None = None) -> pd.Series | None:
    """The floor row of (design, metric, kind), or None. Without a kind: the same-initialisation floor
    where the rows have one (the null for a ticket's drift), else the seed-to-seed floor."""
    if fl.empty:
        return None
    for k in (kind,) if kind is not None else ("same_init", "seed"):
        hit = fl[(fl["design"] == design) & (fl["metric"] == metric) & (fl["kind"] == k)]
        if not hit.empty:
            return hit.iloc[0]
    return None


def against(value: float, lo: float, hi: float, floor: pd.Series | None) -> str:
    """Where a drift's interval [lo, hi] of agreement-with-dense lies against a floor: 'beyond the floor'
    when all of it is below the floor's lowest pair (more change than another seed or fit brings),
    'within the floor' when all of it is at or above the floor's mean, else 'at the floor's edge'."""
    if floor is None or not np.isfinite(value):
        return "no floor measured"
    top = hi if np.isfinite(hi) else value
    bottom = lo if np.isfinite(lo) else value
    what = {"seed": "seed-to-seed", "refit": "refit", "same_init": "same-initialisation"}[floor["kind"]]
    span = f"{what} floor {floor['floor']:.2f} (pairs {floor['lo']:.2f}-{floor['hi']:.2f})" \
        if floor["kind"] == "seed" else f"{what} floor {floor['floor']:.2f} [{floor['lo']:.2f}, {floor['hi']:.2f}]"
    low_edge = floor["lo"] if math.isfinite(floor["lo"]) else floor["floor"]
    if top < low_edge:
        return f"beyond the {span}"
    if bottom >= floor["floor"]:
        return f"within the {span}"
    return f"at the edge of the {span}"


def concept_range(rows: pd.DataFrame) -> pd.DataFrame:
    """Per design, the concept measure's range over its dense models: the top (the dense backbone refitted,
    `concept_refit_overlap`) and the bottom (the untrained initialisation, `concept_random_overlap`), each
    a mean and 95% interval over seeds; the chance overlap k / kept concepts; and whether the seeds at hand
    separate the two ends: a one-sided paired t-test (top > bottom, paired by seed) at inference.ALPHA.
    Empty for rows without the range (schema < 11, or concepts off)."""
    dense = dense_models(rows)
    dense = dense[dense["concept_random_overlap"].notna() & dense["concept_refit_overlap"].notna()]
    recs = []
    for design, g in dense.groupby("design"):
        top, bottom = g["concept_refit_overlap"].astype(float), g["concept_random_overlap"].astype(float)
        c = inference.paired((top - bottom).to_numpy(), margin=0.0, span=1.0)
        p = c.p / 2 if c.mean > 0 else 1 - c.p / 2 if np.isfinite(c.p) else math.nan  # one-sided: top > bottom
        k = int(json.loads(g["config_json"].iloc[0]).get("concepts.topk", 5))
        recs.append({"design": design, "seeds": len(g), **_ends("top", top), **_ends("bottom", bottom),
                     "kept": float(g["concepts_kept"].mean()), "chance": k / float(g["concepts_kept"].mean()),
                     "p": p, "separates": bool(np.isfinite(p) and p < inference.ALPHA)})
    return pd.DataFrame(recs)


def _ends(name: str, v: pd.Series) -> dict[str, float]:
    m, lo, hi, _ = inference.interval(v, (0.0, 1.0))
    return {name: m, f"{name}_lo": lo, f"{name}_hi": hi}
