"""The report's topic sections: noise floors, gallery, localisation, sanity checks, tickets,
instability, the dense concepts and the paper's claims. Each takes the Report and the rows it reads."""

from __future__ import annotations

from pathlib import Path

import altair as alt
import pandas as pd

from analysis import claims, floors, instability, stats, tickets
from analysis.gallery import concept_shift, gallery, median_seed
from analysis.report.charts import curve
from analysis.report.render import Report, _ci
from analysis.report.training import cascade_section
from lthray import mask_files


def empty_layer_sentences(rows: pd.DataFrame) -> list[str]:
    """One line per (method, level) whose masks leave some layer empty, naming the layers and seeds."""
    d = rows[rows["empty_layers"].map(lambda v: v is not None and len(v) > 0)]
    out = []
    for (method, level), g in stats.with_design(d).groupby(["family", "level"]):
        layers = sorted({name for v in g["empty_layers"] for name in v})
        out.append(f"{method} at {stats.pct(float(g['density'].mean()))} density (level {level}), seeds "
                   f"{sorted(int(x) for x in g['seed'])}: no weight kept in {', '.join(layers)}.")
    return out


KIND_NAMES = {"same_init": "same initialisation, another data order", "seed": "dense seed vs dense seed",
              "refit": "PCBM refit (same backbone)"}


def floor_section(r: Report, fl: pd.DataFrame) -> None:
    """The noise floors as a table: what every drift in this report is read against."""
    if fl.empty:
        r.para("No noise floor could be measured: the rows hold no level-0 reference maps or refits (written "
               "before lthray's schema 6), or there is one seed only. Drift is reported without a yardstick.")
        return
    t = fl.assign(what=[stats.METRICS.get(m, m) for m in fl["metric"]],
                  floor_kind=[KIND_NAMES[k] for k in fl["kind"]])
    r.para("Noise floors (noise_floors.csv): same initialisation = the dense model against its copy from the same "
           "initialisation and rewind point trained with another data order, measured as a pruned level is (the "
           "null for a ticket's drift; lo/hi: 95% interval over seeds; tests pair it with its seed); seed-to-seed "
           "= mean over pairs of dense models of different seeds (lo/hi: the lowest and highest pair); refit = the "
           "same backbone's PCBM refitted (lo/hi: 95% interval over seeds).")
    r.table(t[["what", "floor_kind", "floor", "lo", "hi", "n"]].round(3))


def gallery_section(r: Report, rows: pd.DataFrame, out: Path, label: str = "") -> None:
    """The Grad-CAM gallery (gallery.png) and the concept shift (concept_shift.csv), both of the median seed
    for every method (paired): the one place both are computed, for the study and the search report."""
    r.heading(f"{label}Grad-CAM gallery and concept shift")
    seed, why = median_seed(rows)
    if seed is not None:
        r.para(f"Every method at seed {seed}, {why}, so the methods are compared on one seed (paired), not each "
               "on its best.")
    g = gallery(rows, out, seed=seed)
    if g is not None:
        r.image(g, "Grad-CAM gallery")
    shift = concept_shift(rows, seed=seed)
    if not shift.empty:
        shift.to_csv(out / "concept_shift.csv", index=False)
        r.table(shift[["method", "seed", "class", "density", "kept", "lost", "gained"]].round({"density": 4}))


def localisation_section(r: Report, rows: pd.DataFrame, shown: pd.DataFrame, fl: pd.DataFrame, design: str) -> None:
    """(b2) Where the maps lie against the object masks, per method and density, with the dense models'
    seed-to-seed band as the noise floor and the object's area as energy-inside's chance level."""
    if shown["cam_concentration"].isna().all():
        return
    r.heading("(b2) Where Grad-CAM looks: localisation and concentration")
    has_masks = shown["cam_energy_inside"].notna().any()
    area = rows["object_area"].dropna()
    r.para(("Energy inside: the share of each probe map's mass on the garment (pixels above the black "
            f"background); a map spread evenly scores the object's area, {area.mean():.1%} of the probe "
            "images (chance). Pointing: the share of maps whose peak lies on the garment. " if has_masks else
            "This dataset has no object masks: only concentration is measured. ")
           + "Concentration: the fraction of the image's area holding half the map's mass (0.5 = uniform; "
           "lower = focused on a part). Mean and 95% interval over seeds; the grey band is the dense models' "
           "interval over seeds, the seed-to-seed noise floor a pruned model's change must clear.")
    charts = [curve(shown, "cam_concentration", "area holding half the mass", dense_band=True)]
    if has_masks:
        chance = alt.Chart(pd.DataFrame({"chance": [float(area.mean())]})).mark_rule(
            color="black", strokeDash=[4, 3]).encode(y="chance:Q")  # a uniform map's score
        energy = curve(shown, "cam_energy_inside", "Grad-CAM mass on the object (dashed: chance)", dense_band=True)
        charts = [alt.layer(energy, chance),
                  curve(shown, "cam_pointing", "Grad-CAM peak on the object", dense_band=True),
                  *charts]
    r.chart(alt.hconcat(*charts), "localisation", "Grad-CAM localisation and concentration vs density")
    if shown["lrp_spearman"].notna().any():
        r.heading("(b3) A second attribution method: LRP next to Grad-CAM")
        r.para("LRP (zennit, EpsilonPlusFlat with BatchNorm merged into its convolution) on the same probe "
               "images and true classes: its drift from the dense model's LRP maps (grey: its noise floor, as for "
               "Grad-CAM), "
               "and the same localisation metrics. Where LRP and Grad-CAM move together with density, the "
               "finding is about the network; where only one moves, it may be about that method.")
        lrp = [curve(shown, "lrp_spearman", "LRP Spearman to dense", floor=floors.floor_of(fl, design, "lrp_spearman"))]
        if has_masks:
            lrp.append(curve(shown, "lrp_energy_inside", "LRP mass on the object", dense_band=True))
        lrp.append(curve(shown, "lrp_concentration", "area holding half the LRP mass", dense_band=True))
        r.chart(alt.hconcat(*lrp), "lrp", "LRP fidelity, localisation and concentration vs density")
    sanity_section(r, rows)


def sanity_section(r: Report, rows: pd.DataFrame) -> None:
    """(b4) The model-randomisation check of each attribution method, over the sweep's dense models."""
    from lthray.explain.sanity import FAIL_AT, verdict

    dense = rows[(rows["level"] == 0) & rows["cam_sanity_spearman"].notna()]
    # every method of one seed and design shares its dense model: count each dense model once
    dense = dense.drop_duplicates(["seed", "cam_sanity_spearman"])
    if dense.empty:
        return
    r.heading("(b4) Sanity check: do the maps depend on the weights?")
    recs = []
    for name, col in (("Grad-CAM", "cam_sanity_spearman"), ("LRP", "lrp_sanity_spearman")):
        v = dense[col].dropna().astype(float).to_numpy()
        if len(v):
            m, lo, hi, n = stats.mean_ci(v)
            recs.append({"attribution": name, "dense models": n,
                         "Spearman trained vs random weights": _ci(m, max(lo, -1.0), min(hi, 1.0), 1, 2),
                         "verdict": verdict(m, lo, hi)})  # shown clipped to the range a correlation can take
    r.para("Each dense model's maps on the probe images against the maps of the same network with every weight "
           "re-initialised (Adebayo et al. 2018, independent randomisation), by Spearman correlation per image. "
           f"A method whose 95% interval lies at or above {FAIL_AT} fails (its maps barely depend on what the "
           f"network learnt), below {FAIL_AT} passes; an interval across it is inconclusive.")
    r.table(pd.DataFrame(recs))
    cascade_section(r, rows)


def masks_of(rows: pd.DataFrame) -> tickets.Masks:
    """The mask files beside the rows' results folder ({} if the rows did not come from one)."""
    where = rows.attrs.get("results")
    return mask_files.read(where) if where else {}


def ticket_section(r: Report, rows: pd.DataFrame, masks: tickets.Masks, out: Path) -> None:
    """(g) Mask overlap between seeds and methods, and where each method prunes."""
    ov = tickets.overlap(rows, masks)
    if ov.empty:
        return
    r.heading("(g) Ticket overlap and structure")
    ov.to_csv(out / "mask_overlap.csv", index=False, float_format="%.5g")
    r.para("Jaccard index |A ∩ B| / |A ∪ B| of the kept weights at each pruning level. Diagonal: between seeds "
           "of one method (mean over seed pairs); off-diagonal: between two methods' masks of the same seed (mean "
           "over seeds). Chance is layer-matched: the expected Jaccard index of two random masks with the same "
           "per-layer kept counts (in each panel's title), so an overlap at chance is explained by how many "
           "weights each layer keeps alone.")
    same = tickets.same_masks(rows, masks)
    r.bullets(tickets.sentences(ov, same))
    r.chart(tickets.heatmap(ov), "mask_overlap", "mask overlap heatmaps")
    ld = tickets.layer_density(rows, masks)
    ld.to_csv(out / "layer_density.csv", index=False, float_format="%.5g")
    r.para("Fraction of each layer's weights kept, per method (mean over seeds), input layer on the left; on the "
           "log axis a layer with no weight kept cannot be drawn (those are listed under Design)."
           + "".join(f" {a} has exactly {b}'s masks and is drawn as {b}." for a, b in sorted(same.items())))
    r.chart(tickets.layer_chart(ld[~ld["family"].isin(same)]), "layer_density", "per-layer density per method")


def instability_section(r: Report, rows: pd.DataFrame, summary: pd.DataFrame, t: pd.DataFrame, out: Path) -> None:
    """(h) Linear mode connectivity: the error barrier vs rewind point and density; `t`: the barrier tests
    (instability.tests of `rows`)."""
    s = instability.from_levels(summary)
    if s.empty:
        return
    r.heading("(h) Instability analysis (linear mode connectivity)")
    tested = t[["family", "rewind_spec", "level", "upper", "p_below", "p_below_holm", "p_above", "p_above_holm",
                "verdict"]]
    s.merge(tested, on=["family", "rewind_spec", "level"], how="left").to_csv(
        out / "instability.csv", index=False, float_format="%.5g")
    r.para("Two copies of each level's network train from the same start under the same mask with different "
           "data orders; the barrier is the highest test error on the straight line between them (BN "
           f"statistics re-estimated at every point) minus the mean of the two ends. Below {instability.STABLE:.0%} "
           "(dashed) Frankle et al. (2020) call the start stable; matching tickets came from stable rewind points. "
           "'Stable' here is a test: each level's barriers over seeds against 2% by one-sided t-tests (below and "
           "above), Holm-adjusted over every barrier in this table; a rewind point is stable at every level when "
           "each level's own test passes (an intersection-union test, which needs no correction). The charts' bars "
           "are the tables' two-sided 95% intervals (logit scale, so wide and lopsided with 3 seeds) and may cross "
           "2% where a test passes; the one-sided bound each sentence quotes is the test's own. Per level, with "
           "every p-value: `instability.csv`.")
    r.bullets(instability.sentences(s, t))
    r.chart(instability.charts(s, instability.paths(rows)), "instability", "instability barrier charts")


def dense_concepts(r: Report, rows: pd.DataFrame) -> None:
    """The dense PCBM's top concepts per class, and its accuracy next to the backbone's."""
    dense = rows[(rows["level"] == 0) & (rows["status"] == "ok")].drop_duplicates("seed")
    acc, pcbm = stats.mean_ci(dense["test_acc"]), stats.mean_ci(dense["pcbm_acc"])
    r.para(f"Dense models ({pcbm[3]} seeds): backbone accuracy {_ci(*acc[:3])}%, its post-hoc concept "
           f"bottleneck {_ci(*pcbm[:3])}% (mean [95% CI]). Top concepts per class of the dense PCBM (seed "
           f"{int(dense['seed'].min())}):")
    first = dense.sort_values("seed").iloc[0]
    if first["top_concepts"] is not None:
        r.table(pd.DataFrame([e.split(": ", 1) for e in first["top_concepts"]], columns=["class", "top concepts"]))




def claims_section(r: Report, tables: dict[str, pd.DataFrame]) -> None:
    """(i) The paper's claims (analysis.claims.all_claims' tables), each stated whichever way it comes out."""
    if not tables:
        return
    r.heading("The paper's claims, tested", 3)
    r.para("Each claim is one family of comparisons (every method at every pruned level, paired by seed), "
           "Holm-adjusted; 'no change' needs TOST at the declared margin. A per-seed floor (same initialisation, "
           "refit) is paired with its seed, so its spread is in the test; the seed-to-seed floor is one value per "
           "design, treated as known (its spread is in the noise-floor table).")
    for name, t in tables.items():
        r.bullets(claims.sentences(name, t))
