"""The preservation study's section (issue 34): the decision rule's outcome in words and every test it
read, or, for the pilot's rows, the lambda and distillation weight its rule picks. Present only when the
rows hold the three mask-fixed arms (analysis.preserve.ARMS)."""

from __future__ import annotations

from pathlib import Path

import altair as alt
import pandas as pd

from analysis import preserve
from analysis.report.render import Report
from lthray import presets


def densities_of(rows: pd.DataFrame) -> tuple[float, ...]:
    """The densities the rule tests: the anchor design's on CIFAR-10, the Fashion-MNIST study's otherwise."""
    return presets.CIFAR_DENSITIES if set(rows["dataset"]) == {"cifar10"} else preserve.FASHION_DENSITIES


NAMES = {preserve.PRIMARY: "LRP (primary)", preserve.SECONDARY: "occlusion (secondary)",
         preserve.OWN: "Grad-CAM (B trains on it)"}


def contrast_chart(c: pd.DataFrame) -> alt.FacetChart:
    """B - A and B - C with 95% intervals against density, a panel per yardstick, the zero line drawn."""
    d = c.dropna(subset=["mean"]).assign(yardstick=lambda t: t["metric"].map(NAMES),
                                         pct=lambda t: (100 * t["density"]).map(lambda v: f"{v:.3g}%"))
    order = [f"{100 * v:.3g}%" for v in sorted(d["density"].unique(), reverse=True)]
    x = alt.X("pct:N", sort=order, title="density (IMP's mask)", axis=alt.Axis(labelAngle=0))
    base = alt.Chart().encode(x=x, xOffset="test:N", color=alt.Color("test:N", title="paired difference"))
    zero = alt.Chart().mark_rule(color="black", strokeDash=[4, 3]).encode(y=alt.datum(0))
    layers = alt.layer(zero, base.mark_errorbar(ticks=True).encode(y=alt.Y("lo:Q", title="difference in "
                       "Spearman agreement with dense"), y2="hi:Q"), base.mark_point(filled=True, size=50).encode(
                       y="mean:Q", tooltip=["test", "pct", "n", alt.Tooltip("mean:Q", format=".3f")]), data=d)
    return layers.properties(width=220, height=220).facet(
        column=alt.Column("yardstick:N", sort=[NAMES[m] for m in NAMES], title=None))


def preserve_section(r: Report, rows: pd.DataFrame, out: Path) -> list[str]:
    """Writes the section (and preserve_tests.csv with preserve_contrasts.csv, or pilot.csv); the names of the
    tables written."""
    if not set(preserve.ARMS.values()) <= set(rows["method"]):
        return []
    fid = rows[rows["method"] == preserve.ARMS["B"]]
    if fid["lambda_fid"].nunique() > 1 or rows[rows["method"] == preserve.ARMS["C"]]["kd_weight"].nunique() > 1:
        c = preserve.pilot_choice(rows)
        r.heading("The pilot's choice (declared rule)")
        r.para(f"B's lambda_fid: the largest keeping accuracy within 0.5 points of A at 6.4% density -> "
               f"{c.lambda_fid}; C's kd_weight: the smallest whose top-1 agreement with dense reaches B's -> "
               f"{c.kd_weight} (None: no setting qualifies). Means over the pilot seeds:")
        r.table(c.table.round(4))
        c.table.to_csv(out / "pilot.csv", index=False, float_format="%.5g")
        return ["pilot.csv"]
    d = preserve.decide(rows, densities_of(rows))
    r.heading("The preservation rule (declared before the study ran)")
    r.para(f"**Outcome: {d.sentence}** A = imp (cross-entropy), B = imp_fid (+ Grad-CAM fidelity), C = imp_kd "
           "(+ distillation to the dense logits), the same IMP mask retrained from the same rewind point, paired by "
           "seed. Primary: LRP agreement with dense (one Holm family of 6 one-sided paired t-tests); secondary: "
           "occlusion agreement; guards: accuracy non-inferior at 1 point and ROAD at 0.02; Grad-CAM, the "
           "yardstick B trains on, is never evidence for B. `holds`: Holm-adjusted p < 0.05.")
    c = preserve.contrasts(rows, densities_of(rows))
    if c["mean"].notna().any():
        r.chart(contrast_chart(c), "preserve_contrasts", "B - A and B - C with 95% intervals per yardstick and density")
    c.to_csv(out / "preserve_contrasts.csv", index=False, float_format="%.5g")
    t = d.tests[["role", "metric", "test", "density", "n", "mean", "sd", "p", "p_holm", "holds"]]
    r.table(t.round(4))
    t.to_csv(out / "preserve_tests.csv", index=False, float_format="%.5g")
    return ["preserve_tests.csv", "preserve_contrasts.csv"]
