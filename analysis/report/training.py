"""The report's sections on what training and pruning do inside the network: the cascading randomisation
check of each attribution method (which layers its maps depend on), and the weights over training (the
first layer's filters level by level, and how far the kept weights moved)."""

from __future__ import annotations

from pathlib import Path

import altair as alt
import numpy as np
import pandas as pd

from analysis import colors, floors, stats
from analysis.axes import density_x
from analysis.gallery import median_seed
from analysis.report.render import Report
from lthray.weights import QUANTILES, STILL


def cascade_table(rows: pd.DataFrame) -> pd.DataFrame:
    """Per attribution method and cascade step (output layer first): the mean Spearman of the trained maps
    with the maps after that step, and its 95% interval over the dense models."""
    dense, recs = floors.dense_models(rows), []
    for name, col in (("Grad-CAM", "cam_cascade_spearman"), ("LRP", "lrp_cascade_spearman")):
        have = dense[dense[col].notna()] if col in dense else dense.iloc[:0]
        if have.empty:
            continue
        vals = np.array([list(v) for v in have[col]], dtype=float)  # dense models x steps
        for i, layer in enumerate(have["cascade_layers"].iloc[0]):
            m, lo, hi, n = stats.mean_ci(vals[:, i], metric="cam_spearman")
            recs.append({"attribution": name, "step": i + 1, "randomised down to": layer, "spearman": m,
                         "lo": lo, "hi": hi, "dense models": n})
    return pd.DataFrame(recs)


def cascade_sentences(t: pd.DataFrame, fail_at: float) -> list[str]:
    """Per method: the first cascade step whose interval lies below `fail_at`, or that none does."""
    out = []
    for name, g in t.groupby("attribution", sort=False):
        below = g[g["hi"] < fail_at]
        n = len(g)
        if below.empty:
            out.append(f"{name}: its maps keep a Spearman of {fail_at} or more with the trained maps (95% interval) "
                       f"at every step, all {n} layers randomised included: they do not depend on the weights.")
            continue
        first = below.iloc[0]
        kept = g[g["step"] < first["step"]]
        out.append(f"{name}: below {fail_at} once `{first['randomised down to']}` is randomised (step "
                   f"{int(first['step'])} of {n}, Spearman {first['spearman']:.2f})"
                   + (f"; the maps survive randomising {', '.join(f'`{x}`' for x in kept['randomised down to'])} "
                      "above it: they are blind to those layers." if not kept.empty else "."))
    return out


def cascade_chart(t: pd.DataFrame, fail_at: float) -> alt.LayerChart:
    order = list(dict.fromkeys(t.sort_values("step")["randomised down to"]))
    x = alt.X("randomised down to:N", sort=order, title="layers re-initialised, from the output down to")
    base = alt.Chart(t).encode(x=x)
    band = base.mark_area(opacity=0.15).encode(y="lo:Q", y2="hi:Q", fill=alt.Fill("attribution:N", legend=None))
    line = base.mark_line(point=True).encode(y=alt.Y("spearman:Q", title="Spearman with the trained maps",
                                                     scale=alt.Scale(domain=[-0.2, 1.0])),
                                             color="attribution:N")
    rule = alt.Chart(pd.DataFrame({"y": [fail_at]})).mark_rule(strokeDash=[5, 3], color="#555").encode(y="y:Q")
    return alt.layer(band, line, rule).properties(width=360, height=220, title="cascading randomisation")


def cascade_section(r: Report, rows: pd.DataFrame) -> None:
    """The cascade's per-layer curve for both attribution methods, under the sanity check."""
    from lthray.explain.sanity import FAIL_AT

    t = cascade_table(rows)
    if t.empty:
        return
    r.para("Cascading randomisation (Adebayo et al. 2018): the layers are re-initialised one at a time from the "
           "output down, cumulatively, and the maps compared with the trained model's after each step. A method "
           "whose maps survive randomising the top layers ignores them, which the all-at-once check above cannot "
           "show (Sixt et al. 2020 prove it for LRP's z+ rules). Dashed: the check's threshold; bands: 95% "
           "intervals over the dense models.")
    r.bullets(cascade_sentences(t, FAIL_AT))
    r.chart(cascade_chart(t, FAIL_AT), "cascade", "cascading randomisation per layer")


def filters_png(rows: pd.DataFrame, out: Path) -> tuple[Path, str] | None:
    """The first convolution's filters at every level of one trial (IMP's where there is one, at the
    gallery's median seed), one row of filters per level, each level on one symmetric colour scale: a
    pruned weight is exactly white. Returns the PNG and which trial it shows."""
    have = rows[rows["first_filters"].notna()] if "first_filters" in rows else rows.iloc[:0]
    if have.empty:
        return None
    seed = median_seed(have)[0]
    pick = have[have["seed"] == seed] if seed is not None else have
    method = "imp" if (pick["method"] == "imp").any() else sorted(pick["method"])[0]
    trial = pick[pick["method"] == method]
    trial = trial[trial["run_id"] == sorted(trial["run_id"])[0]].sort_values("level")
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    shape = list(trial["first_filters_shape"].iloc[0])
    n = shape[0]
    fig, axes = plt.subplots(len(trial), n, figsize=(0.45 * n + 1.4, 0.5 * len(trial) + 0.4), squeeze=False)
    for ax_row, (_, row) in zip(axes, trial.iterrows(), strict=True):
        w = np.asarray(row["first_filters"], dtype=float).reshape(shape).mean(1)  # mean over input channels
        lim = float(np.abs(w).max()) or 1.0
        for j, ax in enumerate(ax_row):
            ax.imshow(w[j], cmap="RdBu_r", vmin=-lim, vmax=lim)
            ax.set_xticks([]), ax.set_yticks([])
        ax_row[0].set_ylabel(f"{100 * row['density']:.3g}%", rotation=0, ha="right", va="center", fontsize=8)
    fig.suptitle(f"first-layer filters of {method}, seed {int(trial['seed'].iloc[0])}, by density", fontsize=9)
    path = out / "first_filters.png"
    fig.savefig(path, dpi=110, bbox_inches="tight")
    plt.close(fig)
    return path, f"{method} at seed {int(trial['seed'].iloc[0])}"


def movement_table(rows: pd.DataFrame) -> pd.DataFrame:
    """Per (series, level): the mean over seeds of each quantile of |w_end - w_start| of the kept weights."""
    d = stats.with_design(rows[(rows["status"] == "ok") & rows["weight_move_quantiles"].notna()])
    if d.empty:
        return pd.DataFrame()
    q = pd.DataFrame([list(v) for v in d["weight_move_quantiles"]], index=d.index,
                     columns=[f"q{int(100 * p)}" for p in QUANTILES])
    d = pd.concat([d.assign(family=stats.series(d)), q], axis=1)
    return d.groupby(["family", "level"], as_index=False)[["density", *q.columns]].mean()


def weights_section(r: Report, rows: pd.DataFrame, shown: pd.DataFrame, out: Path) -> None:
    """(i) The first layer's filters per level, and the movement of the kept weights per level."""
    mv = movement_table(rows)
    if mv.empty:
        return
    r.heading("(i) Weights over training")
    got = filters_png(rows, out)
    if got is not None:
        r.para(f"The first convolution's filters ({got[1]}), averaged over input channels, one row per level: "
               "red positive, blue negative, white zero (pruned weights are exactly zero).")
        r.image(got[0], "first-layer filters per level")
    mv.to_csv(out / "weight_movement.csv", index=False, float_format="%.5g")
    r.para("How far the kept weights moved in each level's training, |w_end - w_start| from the weights the "
           "training began with (a rewound ticket: the rewind point): the median with the 25-75% band, mean over "
           f"seeds (`weight_movement.csv`); and the share of kept weights that moved less than {STILL:.0%} of "
           "their layer's starting RMS, the weights training leaves where they were.")
    palette, mv = mv["family"], mv.assign(band_of=mv["family"])
    base = alt.Chart(mv).encode(x=density_x(mv["density"]))
    y = alt.Y("q50:Q", title="|w_end - w_start| of kept weights (median)", scale=alt.Scale(type="log"))
    band = base.mark_area(opacity=0.15).encode(y=alt.Y("q25:Q", scale=alt.Scale(type="log")), y2="q75:Q",
                                               fill=colors.fill(palette))
    line = base.mark_line(point=True).encode(y=y, color=colors.encoding(palette), strokeDash=colors.dash(palette))
    moved = alt.layer(band, line).resolve_scale(fill="independent").resolve_legend(fill="independent").properties(
        width=300, height=220, title="weight movement per level")
    from analysis.report.charts import curve

    still = [curve(shown, "weights_still", "share of kept weights left still")] if "weights_still" in shown and \
        shown["weights_still"].notna().any() else []
    r.chart(alt.hconcat(moved, *still), "weight_movement", "weight movement vs density")
