"""The study's numbers: means with 95% intervals over seeds, and paired differences against IMP.

A comparison is only made between rows that share a *design* (every config key but the method, its
guidance weight, lambda_fid and the seed: so the same data, model, schedule, rewind and pruning rate),
the same seed and the same level. Intervals and tests come from `analysis.inference`: t intervals on a
logit scale for bounded metrics (never outside the range), paired t-tests adjusted over a declared
family (one metric: every method against IMP at every density; Holm, BH beside it), and TOST with a
declared margin before anything is called equivalent.
"""

from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd

from analysis import inference
from lthray import methods, metrics

METRICS = metrics.LABELS  # name -> label of every metric (lthray.metrics), read at each use
FAMILY = ["method", "guidance_weight", "lambda_fid", "kd_weight"]
# Keys that may differ within one comparison: the method and its own knobs, the seed, and the
# instability analysis, which trains a second copy beside the measured network but never changes it.
_NOT_DESIGN = {"prune.method", "prune.guidance_weight", "prune.lambda_fid", "prune.kd_weight", "prune.kd_temperature",
               "prune.pai_iterations", "seed"}
_NOT_DESIGN_PREFIX = ("instability.",)
REFERENCE = ("imp", 0.0, 0.0)


def mean_ci(x: np.ndarray | pd.Series, level: float = 0.95,
            metric: str | None = None) -> tuple[float, float, float, int]:
    """(mean, low, high, n) of the finite values: inference.interval, inside `metric`'s range when it has
    one (inference.RANGES); low = high = nan when n < 2."""
    return inference.interval(x, inference.RANGES.get(metric) if metric else None, level)


def with_design(rows: pd.DataFrame) -> pd.DataFrame:
    """Rows plus `design` (a short label of what must match for a comparison) and `family` labels."""
    def design(cfg: str) -> str:
        flat = {k: v for k, v in json.loads(cfg).items()
                if k not in _NOT_DESIGN and not k.startswith(_NOT_DESIGN_PREFIX)}
        return json.dumps(flat, sort_keys=True)

    out = rows.copy()
    out["design"] = out["config_json"].map(design)
    kd = out["kd_weight"].fillna(0.0) if "kd_weight" in out else pd.Series(0.0, index=out.index)
    out["family"] = [label(m, g, f, k) for m, g, f, k in zip(out["method"], out["guidance_weight"], out["lambda_fid"],
                                                               kd, strict=True)]
    return out


def series(d: pd.DataFrame, ignore: tuple[str, ...] = ()) -> list[str]:
    """The one 'family [design]' label of each row of `d` (with_design columns): the family, plus what
    sets its design apart from the others in `d` (keys in `ignore` left out); the family alone when
    nothing does."""
    names = design_names(d, ignore)
    return [f"{f} [{names[g]}]" if names[g] else f for f, g in zip(d["family"], d["design"], strict=True)]


is_guided = methods.is_guided  # the registry's answer (lthray.methods), one definition


def design_names(summary: pd.DataFrame, ignore: tuple[str, ...] = ()) -> dict[str, str]:
    """Each design named by the config keys in which the designs differ ('prune.rewind_step=25it'), keys
    in `ignore` (shown some other way, e.g. on an axis) left out; '' when nothing else sets it apart."""
    designs = sorted(summary["design"].unique())
    if len(designs) <= 1:
        return {d: "" for d in designs}
    flats = [json.loads(d) for d in designs]
    keys = sorted(k for k in set().union(*flats)
                  if k not in ignore and len({json.dumps(f.get(k)) for f in flats}) > 1)
    return {d: ", ".join(f"{k}={f.get(k)}" for k in keys) for d, f in zip(designs, flats, strict=True)}


def label(method: str, g: float, lam: float, kd: float = 0.0) -> str:
    """'cam_guided (g=0.5)', 'imp + fid 0.5', 'imp_kd + kd 1', 'imp'."""
    s = method + (f" (g={g:g})" if g > 0 else "")
    return s + (f" + fid {lam:g}" if lam > 0 else "") + (f" + kd {kd:g}" if kd > 0 else "")


def chance_accuracy(dataset: str) -> float:
    """1 / the dataset's number of classes (a guess's accuracy); nan for a dataset lthray does not know."""
    from lthray.data import DATASETS

    return 1 / DATASETS.get(dataset).num_classes if dataset in DATASETS else math.nan


def level_summary(rows: pd.DataFrame) -> pd.DataFrame:
    """Per (design, family, level): mean density and, per metric, mean and 95% interval over seeds (inside
    the metric's range). Diverged levels are left out (their metrics are null), and counted in `diverged`.
    `collapsed` flags seeds that disagree wildly (some at chance accuracy, others not: inference.collapsed),
    and `acc_by_seed` lists each seed's accuracy so the report can show them one by one."""
    d = with_design(rows)
    out = []
    for (design, family, level), g in d.groupby(["design", "family", "level"], sort=True):
        ok = g[g["status"] == "ok"].sort_values("seed")
        rec = {"design": design, "family": family, "method": g["method"].iloc[0], "level": int(level),
               "density": float(g["density"].mean()), "seeds": int(ok["seed"].nunique()),
               "diverged": int((g["status"] != "ok").sum()), "rewind": g["rewind"].iloc[0],
               "rewind_spec": g["rewind_spec"].iloc[0], "rewind_step": int(g["rewind_step"].iloc[0])}
        for m in METRICS:
            rec[m], rec[f"{m}_lo"], rec[f"{m}_hi"], _ = mean_ci(ok[m], metric=m)
        acc = ok["test_acc"].astype(float).to_numpy()
        rec["collapsed"] = inference.collapsed(acc, chance_accuracy(str(g["dataset"].iloc[0])))
        rec["acc_by_seed"] = ", ".join(f"{s}: {100 * a:.1f}%" for s, a in zip(ok["seed"], acc, strict=True))
        out.append(rec)
    return pd.DataFrame(out)


def paired_differences(rows: pd.DataFrame, reference: tuple[str, float, float] = REFERENCE,
                       margins: dict[str, float] | None = None) -> pd.DataFrame:
    """Per (design, family, level) of every non-reference family, pruned levels only: per metric the mean
    (family - IMP) over seeds, each difference taken within one seed (same design and level), its 95% t
    interval (`d_M`, `d_M_lo`, `d_M_hi`, clipped to what a difference of M can be), the per-seed differences
    (`pairs_M`), and the family's tests (inference.family_table: one family per metric, every comparison
    of the table): `M_p`, `M_p_holm`, `M_p_bh`, `M_p_tost_holm`, `M_mde`, `M_verdict`, under the declared
    equivalence `margins` (inference.MARGINS, replaced key by key)."""
    margins = {**inference.MARGINS, **(margins or {})}
    d = with_design(rows[(rows["status"] == "ok") & (rows["level"] > 0)])
    ref_label = label(*reference)
    ref = d[d["family"] == ref_label].set_index(["design", "seed", "level"])
    out = []
    for (design, family, level), g in d[d["family"] != ref_label].groupby(["design", "family", "level"]):
        g = g.set_index(["design", "seed", "level"])
        common = g.index.intersection(ref.index).sort_values()
        if len(common) == 0:
            continue
        rec = {"design": design, "family": family, "method": g["method"].iloc[0], "level": int(level),
               "density": float(g.loc[common, "density"].mean()), "pairs": len(common),
               "seeds": ", ".join(str(s) for _, s, _ in common)}
        for m in METRICS:
            mine, theirs = g.loc[common, m].astype(float).to_numpy(), ref.loc[common, m].astype(float).to_numpy()
            rec[f"pairs_{m}"] = list(mine - theirs)
        out.append(rec)
    t = pd.DataFrame(out)
    if t.empty:
        return t
    cols = {}
    for m in METRICS:
        lo, hi = inference.RANGES.get(m, (-math.inf, math.inf))
        fam = inference.family_table(t, m, margins.get(m, 0.0), span=hi - lo)
        cols[f"d_{m}"], cols[f"d_{m}_lo"], cols[f"d_{m}_hi"] = fam["mean"], fam["lo"], fam["hi"]
        for c in ("p", "p_holm", "p_bh", "p_tost_holm", "mde", "clipped", "verdict", "family_size"):
            cols[f"{m}_{c}"] = fam[c]
        cols[f"{m}_margin"] = pd.Series(margins.get(m, 0.0), index=t.index)
    return pd.concat([t, pd.DataFrame(cols, index=t.index)], axis=1)


def pct(d: float) -> str:
    return f"{100 * d:.2g}%" if d < 0.1 else f"{100 * d:.0f}%"


def _p(p: float) -> str:
    return "n/a" if not np.isfinite(p) else ("< 0.001" if p < 0.001 else f"{p:.3f}")


def part(rec: pd.Series, m: str, scale: float = 1.0, unit: str = "", name: str | None = None) -> str:
    """One metric's clause of a sentence: the difference, its interval and what the corrected tests allow."""
    name = name or METRICS[m]
    mean, lo, hi = (rec[f"d_{m}"] * scale, rec[f"d_{m}_lo"] * scale, rec[f"d_{m}_hi"] * scale)
    v, n = rec[f"{m}_verdict"], int(rec["pairs"])
    if not np.isfinite(mean):
        return f"{name} not measured"
    if v == "no CI":
        return f"{name} {mean:+.3g}{unit} (one pair: no test)"
    ci = f"95% CI {lo:+.3g} to {hi:+.3g}"
    if v in ("higher", "lower"):
        return (f"{name} {abs(mean):.3g}{unit} {v} than IMP ({ci}; Holm p {_p(rec[f'{m}_p_holm'])}, "
                f"BH p {_p(rec[f'{m}_p_bh'])})")
    margin = rec[f"{m}_margin"] * scale
    if v == "equivalent":
        return (f"{name} equivalent to IMP's within ±{margin:.3g}{unit} ({mean:+.3g}{unit}, {ci}; TOST Holm p "
                f"{_p(rec[f'{m}_p_tost_holm'])})")
    mde = rec[f"{m}_mde"] * scale
    return (f"{name} inconclusive with {n} seeds ({mean:+.3g}{unit}, {ci}; Holm p {_p(rec[f'{m}_p_holm'])}; "
            f"neither a difference nor equivalence within ±{margin:.3g}{unit} is shown; 80% power needs "
            f"|difference| >= {mde:.2g}{unit})")


def sentence(rec: pd.Series, metric: str = "cam_spearman", scale: float = 1.0, unit: str = "") -> str:
    """One generated sentence from a paired-difference record, e.g. 'At 2.6% density (level 4), cam_guided
    (g=0.5): Grad-CAM Spearman to dense inconclusive with 5 seeds (...); accuracy equivalent to IMP's
    within ±1 points (...).'"""
    return (f"At {pct(rec['density'])} density (level {rec['level']}), {rec['family']}: "
            f"{part(rec, metric, scale, unit)}; {part(rec, 'test_acc', 100.0, ' points', 'accuracy')}.")


def tally(diffs: pd.DataFrame, metric: str) -> dict[str, int]:
    """How many comparisons of `metric` got each verdict (inference.VERDICTS)."""
    out = dict.fromkeys(inference.VERDICTS, 0)
    for v in diffs[f"{metric}_verdict"]:
        out[v] += 1
    return out


def knee(summary: pd.DataFrame, family: str = "imp", tolerance: float = 0.01,
         design: str | None = None) -> pd.Series | None:
    """IMP's sparsest level whose mean accuracy is within `tolerance` of dense (None if no pruned level is),
    within one design (default: the design with the most IMP levels, so designs are never mixed)."""
    s = summary[summary["family"] == family]
    if s.empty:
        return None
    design = design if design is not None else s["design"].value_counts().sort_index().idxmax()
    s = s[s["design"] == design].sort_values("level")
    if s.empty:
        return None
    dense = s.iloc[0]["test_acc"]
    ok = s[(s["level"] > 0) & (s["test_acc"] >= dense - tolerance)]
    return ok.iloc[-1] if not ok.empty else None
