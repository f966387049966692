"""The headline sentences, each computed from the tables below it: every 'better', 'worse' or 'no
change' is a corrected test (analysis.inference), else the sentence says 'inconclusive'."""

from __future__ import annotations

import pandas as pd

from analysis import claims, floors, inference, instability, stats
from analysis.report.render import _ci, _points
from lthray import metrics

HEADLINE = metrics.COUNTED  # the metrics whose comparisons the findings count (a headline or guard role)


def imp_designs(summary: pd.DataFrame) -> list[tuple[str, str]]:
    """(label prefix, design) of every design with IMP rows; the prefix names what sets the design apart
    and is empty when there is one design."""
    imp = summary[summary["family"] == "imp"].drop_duplicates("design").sort_values(["rewind_step", "design"])
    if len(imp) <= 1:
        return [("", d) for d in imp["design"]]
    names = stats.design_names(summary)
    return [(f"{names[d]}: ", d) for d in imp["design"]]


def findings(summary: pd.DataFrame, diffs: pd.DataFrame, fl: pd.DataFrame | None = None,
             acc_claim: pd.DataFrame | None = None, margin: float = inference.MARGINS["test_acc"],
             inst: pd.DataFrame | None = None) -> list[str]:
    """The headline sentences, each computed from the tables below it; every 'better', 'worse' or
    'equivalent' rests on a Holm-adjusted test or TOST (analysis.inference), every drift on its floor.
    `acc_claim` is the "accuracy falls" claim's table (analysis.claims), whose tests say how far IMP keeps
    its dense accuracy; `inst` the barrier tests (instability.tests), whose verdicts say which rewind points
    are stable."""
    fl = fl if fl is not None else pd.DataFrame(columns=["design", "metric", "kind", "floor", "lo", "hi", "n"])
    out = []
    for lab, design in imp_designs(summary):
        k = stats.knee(summary, design=design)
        kept = claims.knee_sentence(acc_claim, design, margin) if acc_claim is not None else ""
        if k is None:
            if kept:
                out.append(f"{lab}{kept}.")
            continue
        where = floors.against(k["cam_spearman"], k["cam_spearman_lo"], k["cam_spearman_hi"],
                               floors.floor_of(fl, design, "cam_spearman"))
        cam = _ci(k["cam_spearman"], k["cam_spearman_lo"], k["cam_spearman_hi"], 1, 2)
        out.append(f"{lab}{kept or 'IMP'}. At {stats.pct(k['density'])} density, the sparsest level whose mean "
                   f"accuracy is within 1 point of dense, its Grad-CAM Spearman to dense is {cam}, {where}.")
    headline = instability.summary_of(instability.from_levels(summary), inst) if inst is not None else ""
    if headline:
        out.append(headline)
    if diffs.empty:
        return out
    for fam, g in diffs.groupby("family"):
        said = [_verdicts(stats.tally(g, "test_acc"), "accuracy", f"±{_points(g['test_acc_margin'].iloc[0])}"),
                _verdicts(stats.tally(g, "cam_spearman"), "Grad-CAM Spearman",
                          f"±{g['cam_spearman_margin'].iloc[0]:g}")]
        out.append(f"{fam} vs IMP over {len(g)} matched levels (Holm within each metric's family): "
                   + "; ".join(said) + ".")
    metrics = [m for m in HEADLINE if diffs[f"{m}_p"].notna().any()]
    guided = diffs[diffs["method"].map(stats.is_guided)]
    if len(guided):
        raw = sum(int((guided[f"{m}_p"] < inference.ALPHA).sum()) for m in metrics)
        holm = sum(int((guided[f"{m}_p_holm"] < inference.ALPHA).sum()) for m in metrics)
        bh = sum(int((guided[f"{m}_p_bh"] < inference.ALPHA).sum()) for m in metrics)
        tests = sum(int(guided[f"{m}_p"].notna().sum()) for m in metrics)
        good = [(m, r) for m in metrics for _, r in guided.iterrows()
                if r[f"{m}_verdict"] in ("higher", "lower") and _favourable(m, r[f"d_{m}"])]
        bad = [(m, r) for m in metrics for _, r in guided.iterrows()
               if r[f"{m}_verdict"] in ("higher", "lower") and not _favourable(m, r[f"d_{m}"])]
        out.append(f"Guided methods against IMP: {tests} tests over {len(metrics)} metrics; {raw} have a raw p below "
                   f"{inference.ALPHA} (about {inference.ALPHA * tests:.1f} expected by chance alone), {holm} survive "
                   f"Holm within their metric's family and {bh} Benjamini-Hochberg. Of the Holm detections, "
                   f"{len(good)} favour the guided method and {len(bad)} favour IMP"
                   + ("." if not good + bad else ": " + "; ".join(
                       f"{r['family']} {stats.METRICS[m]} at {stats.pct(r['density'])} "
                       f"({r[f'd_{m}']:+.3g}, Holm p {r[f'{m}_p_holm']:.3g})" for m, r in good + bad) + "."))
    return out


# Metrics where a lower value counts as favourable (lthray.metrics: direction <= 0)
_LOWER_IS_BETTER = metrics.LOWER_IS_FAVOURABLE


def _favourable(metric: str, d: float) -> bool:
    """Whether a difference favours the method over IMP. Concentration has no better direction of its own
    (the claim is that pruning shrinks it); it counts as favourable when lower, i.e. more focused."""
    return d < 0 if metric in _LOWER_IS_BETTER else d > 0


def _verdicts(tally: dict[str, int], metric: str, margin: str) -> str:
    """'accuracy inconclusive at 4, equivalent (±1 point) at 1': the verdicts a metric got, none at zero."""
    words = {"higher": "higher", "lower": "lower", "equivalent": f"equivalent ({margin})",
             "inconclusive": "inconclusive", "no CI": "untested (a single seed pair)"}
    return f"{metric} " + ", ".join(f"{words[v]} at {n}" for v, n in tally.items() if n)
