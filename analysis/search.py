"""The report of an Optuna search, and the confirm section of its re-run.

A search report never mixes densities: every schedule of a search ends at the same target density
(the sweep refuses a space that would not), and only the trials' last levels, at that density, are read.
Its points are single trials (one seed), so it names the front without claiming anything about it; the
confirm sweep (`--confirm NAME`) re-runs the front with fresh seeds, paired with IMP, and its section
gives each front config's paired difference at the target density with Holm-adjusted p-values.
"""

from __future__ import annotations

import json
import math
import warnings
from pathlib import Path

import altair as alt
import numpy as np
import pandas as pd
from scipy import stats as sps

from analysis import colors, inference, stats
from analysis.front import OBJECTIVES, last_levels, pareto_set

NAMES = {"test_acc": "accuracy", "cam_spearman": "Grad-CAM Spearman to dense",
         "concept_topk_overlap": "concept top-k overlap with dense"}
ALPHA = 0.05


def flat_configs(final: pd.DataFrame) -> pd.DataFrame:
    """Each row's flat config (config_json), one column per key, on the rows' index."""
    return pd.DataFrame([json.loads(c) for c in final["config_json"]], index=final.index)


def knobs(final: pd.DataFrame) -> pd.DataFrame:
    """The config keys that differ between the trials (what the search searched), one column each."""
    flats = flat_configs(final)
    varying = [k for k in flats.columns if flats[k].astype(str).nunique() > 1 and k != "seed"]
    return flats[sorted(varying)]


def at_one_density(final: pd.DataFrame) -> tuple[pd.DataFrame, int]:
    """The trials at the most common final density (all of them in a valid search), and how many
    others were left out (a search never compares densities)."""
    d = final["density"].round(6)
    keep = d == d.mode().iloc[0]
    return final[keep].reset_index(drop=True), int((~keep).sum())


def importances(final: pd.DataFrame, kn: pd.DataFrame) -> pd.DataFrame:
    """Optuna's fANOVA parameter importances per objective, from a study rebuilt from the rows (so it
    works whatever storage the search used). Rows: parameters; columns: objectives."""
    import optuna

    if len(final) < 3 or kn.empty:
        return pd.DataFrame()
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    dists = {k: optuna.distributions.CategoricalDistribution(sorted(kn[k].dropna().unique().tolist(), key=str))
             for k in kn.columns if kn[k].notna().all()}
    study = optuna.create_study(directions=["maximize"] * len(OBJECTIVES))
    for i, r in final.iterrows():
        study.add_trial(optuna.trial.create_trial(
            params={k: kn.loc[i, k] for k in dists}, distributions=dists,
            values=[float(r[o]) for o in OBJECTIVES]))
    out = {}
    evaluator = optuna.importance.FanovaImportanceEvaluator(seed=0)
    for j, o in enumerate(OBJECTIVES):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            out[NAMES[o]] = optuna.importance.get_param_importances(
                study, evaluator=evaluator, target=lambda t, j=j: t.values[j])
    return pd.DataFrame(out).fillna(0.0).sort_values(NAMES["test_acc"], ascending=False)


def front_chart(final: pd.DataFrame, front_ids: set[str], color: alt.Color) -> alt.HConcatChart:
    """Accuracy vs each fidelity objective: every trial, the Pareto set drawn large."""
    d = final[["run_id", "method", "guidance_weight", "lambda_fid", *OBJECTIVES]].copy()
    d["on front"] = d["run_id"].isin(front_ids).map({True: "Pareto set", False: "dominated"})
    panels = []
    for fid in OBJECTIVES[1:]:
        panels.append(alt.Chart(d).mark_point(filled=True).encode(
            x=alt.X(f"{fid}:Q", title=NAMES[fid], scale=alt.Scale(zero=False)),
            y=alt.Y("test_acc:Q", title="test accuracy", scale=alt.Scale(zero=False)),
            color=color, shape=alt.Shape("on front:N", title=""),
            size=alt.Size("on front:N", scale=alt.Scale(domain=["Pareto set", "dominated"], range=[140, 40]),
                          legend=None),
            tooltip=["run_id", "method", "guidance_weight", "lambda_fid", *OBJECTIVES],
        ).properties(width=320, height=260, title=f"accuracy vs {NAMES[fid]}"))
    return alt.hconcat(*panels)


def knob_chart(final: pd.DataFrame, knob: str, title: str, color: alt.Color) -> alt.HConcatChart:
    """Accuracy and Grad-CAM fidelity against one knob (g or lambda_fid), one point per trial."""
    d = final[["run_id", "method", knob, "test_acc", "cam_spearman"]]
    return alt.hconcat(*[alt.Chart(d).mark_point(filled=True, opacity=0.8).encode(
        x=alt.X(f"{knob}:Q", title=title), y=alt.Y(f"{m}:Q", title=NAMES[m], scale=alt.Scale(zero=False)),
        color=color, tooltip=["run_id", "method", knob, m]).properties(width=260, height=200)
        for m in ("test_acc", "cam_spearman")])


def search_section(r, rows: pd.DataFrame, out: Path, name: str) -> None:
    """The search's Pareto set at its target density, its parameter importances and what g and
    lambda_fid buy and cost. `r` is an analysis.report.Report."""
    trials = last_levels(rows)
    diverged = int(rows.loc[rows["status"] != "ok", "run_id"].nunique())
    unfinished = rows["run_id"].nunique() - len(trials) - diverged
    final, other = at_one_density(trials)
    density = float(final["density"].iloc[0])
    kn = knobs(final)
    front = pareto_set(final)
    color = colors.encoding(final["method"], field="method")  # the method's colour in every report
    r.heading("Search")
    r.bullets([
        f"{len(final)} trials, each read at its last level: density {stats.pct(density)} "
        f"({density:.5f}) for every one of them" + (f"; {other} trials at another density left out" if other else "")
        + (f"; {diverged} diverged trials left out" if diverged else "")
        + (f"; {unfinished} unfinished trials (short of their last level) left out" if unfinished else "") + ".",
        "Searched: " + ", ".join(f"{k} in {sorted(kn[k].unique().tolist(), key=str)}" for k in kn.columns) + ".",
        f"Each point is a single trial at seed {sorted(set(final['seed']))}: the Pareto set below is the best of "
        f"{len(final)} single noisy trials and claims nothing; `python sweeps/imp_vs_guided.py --confirm {name}` "
        "re-runs it with fresh seeds, paired with IMP.",
    ])
    r.heading(f"Pareto set at {stats.pct(density)} density ({len(front)} of {len(final)} trials)", 3)
    table = pd.concat([front[["run_id"]], flat_configs(front).reindex(columns=kn.columns),
                       front[list(OBJECTIVES)].round(4)], axis=1)
    table.to_csv(out / "pareto_set.csv", index=False)
    r.table(table.rename(columns={o: NAMES[o] for o in OBJECTIVES}))
    r.chart(front_chart(final, set(front["run_id"]), color), "search_front", "Pareto set of the search")
    r.heading("Which knobs matter", 3)
    imp = importances(final, kn)
    if imp.empty:
        r.para("Too few trials for parameter importances.")
    else:
        imp.round(3).to_csv(out / "importances.csv")
        r.para(f"Optuna's fANOVA importances (share of each objective's variance over the {len(final)} trials "
               "explained by each knob; they sum to 1 per objective). With fewer than ~30 trials they are "
               "indicative only.")
        r.table(imp.round(3).reset_index(names="knob"))
    r.heading("What guidance buys and what it costs", 3)
    r.para("Accuracy and Grad-CAM fidelity at the target density against the guidance weight g (0 = IMP's "
           "magnitude criterion) and against lambda_fid (0 = no explanation-preserving loss). Single trials: "
           "a pattern here is a hypothesis for the confirm, not a finding.")
    r.chart(knob_chart(final, "guidance_weight", "guidance weight g", color), "search_g", "metrics vs g")
    r.chart(knob_chart(final, "lambda_fid", "lambda_fid", color), "search_lambda", "metrics vs lambda_fid")
    final.drop(columns=["probe_cams", "top_concepts"], errors="ignore").to_csv(out / "trials.csv", index=False)


def confirm_table(rows: pd.DataFrame) -> pd.DataFrame:
    """Per front config: paired difference from IMP (same design, seed) at the last level (the target
    density), mean and 95% t CI per objective, paired t-test p-values Holm-adjusted over every config
    and objective (one family), and a verdict."""
    final = stats.with_design(last_levels(rows))
    ref = final[final["family"] == stats.label(*stats.REFERENCE)].set_index(["design", "seed"])
    recs = []
    for (design, family), g in final[final["family"] != stats.label(*stats.REFERENCE)].groupby(["design", "family"]):
        g = g.set_index(["design", "seed"])
        common = g.index.intersection(ref.index)
        if len(common) == 0:
            continue
        same = final[final["family"] == family].drop_duplicates("design")
        rec = {"config": dict(zip(same["design"], stats.series(same), strict=True))[design], "design": design,
               "pairs": len(common), "density": float(g.loc[common, "density"].mean())}
        for o in OBJECTIVES:
            diff = g.loc[common, o].astype(float).to_numpy() - ref.loc[common, o].astype(float).to_numpy()
            m, lo, hi, n = stats.mean_ci(diff)
            p = float(sps.ttest_1samp(diff, 0.0).pvalue) if n >= 2 and np.ptp(diff) > 0 else math.nan
            rec.update({f"d_{o}": m, f"d_{o}_lo": lo, f"d_{o}_hi": hi, f"p_{o}": p})
        recs.append(rec)
    t = pd.DataFrame(recs)
    if t.empty:
        return t
    ps = t[[f"p_{o}" for o in OBJECTIVES]].to_numpy().ravel()
    adj = inference.adjust(ps).reshape(len(t), len(OBJECTIVES))
    for j, o in enumerate(OBJECTIVES):
        t[f"p_holm_{o}"] = adj[:, j]
        t[f"verdict_{o}"] = [
            ("higher" if d > 0 else "lower") if np.isfinite(q) and q < ALPHA else f"inconclusive with {n} seeds"
            for d, q, n in zip(t[f"d_{o}"], adj[:, j], t["pairs"], strict=True)]
    return t


def confirm_sentences(t: pd.DataFrame) -> list[str]:
    out = []
    for _, r in t.iterrows():
        parts = []
        for o, scale, unit in (("test_acc", 100, " points"), ("cam_spearman", 1, ""), ("concept_topk_overlap", 1, "")):
            v = r[f"verdict_{o}"]
            ci = (f"{r[f'd_{o}'] * scale:+.3g}{unit}, 95% CI {r[f'd_{o}_lo'] * scale:+.3g} to "
                  f"{r[f'd_{o}_hi'] * scale:+.3g}")
            p = f"Holm p = {r[f'p_holm_{o}']:.3g}" if np.isfinite(r[f"p_holm_{o}"]) else "no test"
            parts.append(f"{NAMES[o]} {v} than IMP ({ci}; {p})" if v in ("higher", "lower")
                         else f"{NAMES[o]} {v} ({ci}; {p})")
        out.append(f"{r['config']} at {stats.pct(r['density'])} density, {r['pairs']} paired seeds: " + "; ".join(parts)
                   + ".")
    return out


def confirm_section(r, rows: pd.DataFrame, out: Path, search: str) -> None:
    """Which front configs of the search `search` hold up against IMP at the target density."""
    t = confirm_table(rows)
    r.heading("Confirm: the search's Pareto set against IMP, with fresh seeds")
    short = rows["run_id"].nunique() - last_levels(rows)["run_id"].nunique()
    if short:
        r.para(f"{short} runs have no row at their last level (unfinished or diverged) and are left out: "
               "every comparison below is at the target density.")
    if t.empty:
        r.para("No front config shares a design and seed with an IMP run: nothing to compare.")
        return
    t.to_csv(out / "confirm.csv", index=False, float_format="%.5g")
    n = len(t) * len(OBJECTIVES)
    r.para(f"Each front config of search {search} and IMP at the same schedule, scope and rewind point, at seeds "
           f"the search never used, compared at the last level (the target density) seed by seed. One family of "
           f"{n} comparisons ({len(t)} configs x {len(OBJECTIVES)} objectives): paired t-tests, Holm-adjusted; a "
           f"difference is claimed only where the adjusted p < {ALPHA}, otherwise it is inconclusive.")
    held = t[[any(t.loc[i, f"verdict_{o}"] in ("higher", "lower") for o in OBJECTIVES) for i in t.index]]
    r.bullets([f"{len(held)} of {len(t)} front configs differ from IMP in at least one objective after correction"
               + (": " + ", ".join(held["config"]) if len(held) else "") + "."] + confirm_sentences(t))
    show = t[["config", "pairs"] + [c for o in OBJECTIVES for c in (f"d_{o}", f"p_holm_{o}", f"verdict_{o}")]]
    r.table(show.round(4))
