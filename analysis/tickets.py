"""Ticket overlap and structure, from the per-level mask files (lthray.mask_files), without checkpoints.

- Jaccard overlap |A & B| / |A | B| of the kept weights: between the seeds of one method (is the ticket a
  property of the data and architecture, or of the initialisation?) and between methods at the same
  seed and level (matched density: do two criteria find the same subnetwork?).
- Per-layer density per method: where each method prunes.

Chance is layer-matched: the expected Jaccard of two random masks with the compared masks' own per-layer
kept counts. Two masks that share only their layer allocation score it; the overlap beyond it is what
the criteria agree on. (Two uniformly random masks of density d give d / (2 - d), the lower figure when
layers are pruned unevenly.)
"""

from __future__ import annotations

import itertools

import altair as alt
import numpy as np
import pandas as pd

from analysis import colors, inference, stats

Masks = dict[tuple[str, int], dict[str, np.ndarray]]


def jaccard(a: np.ndarray, b: np.ndarray) -> float:
    """|a & b| / |a | b| of two bool vectors (1.0 for two empty masks)."""
    union = np.count_nonzero(a | b)
    return float(np.count_nonzero(a & b) / union) if union else 1.0


def chance(density: float) -> float:
    """Expected Jaccard of two independent uniformly random masks of this density."""
    return density / (2 - density)


def layer_matched_chance(a: dict[str, np.ndarray], b: dict[str, np.ndarray]) -> float:
    """Expected Jaccard of two random masks drawn with the per-layer kept counts of `a` and `b`: in layer l
    (n_l weights, k_a and k_b kept) the expected intersection is k_a k_b / n_l. The ratio of the expected
    intersection to the expected union: with thousands of weights per layer both concentrate tightly, so
    it is the expectation of the ratio to well under 0.001 (checked by simulation in the tests)."""
    inter = union = 0.0
    for name, ma in a.items():
        n, ka, kb = ma.size, int(np.count_nonzero(ma)), int(np.count_nonzero(b[name]))
        inter += ka * kb / n
        union += ka + kb - ka * kb / n
    return inter / union if union else 1.0


def _flat(mask: dict[str, np.ndarray]) -> np.ndarray:
    return np.concatenate([m.ravel() for m in mask.values()])


def jaccard_to_imp(rows: pd.DataFrame, masks: Masks) -> pd.Series:
    """Per row (aligned with `rows`): the Jaccard index of its mask with the same seed's IMP mask at the same
    level and design; NaN where either mask file is missing. How far a method's ticket moved from IMP's:
    guided masks that keep almost all of IMP's make "guidance does not beat IMP" near-null by construction."""
    d = stats.with_design(rows)
    imp = {(des, s, lvl): r for des, s, lvl, r, m in
           zip(d["design"], d["seed"], d["level"], d["run_id"], d["method"], strict=True) if m == "imp"}
    out = []
    for des, s, lvl, r in zip(d["design"], d["seed"], d["level"], d["run_id"], strict=True):
        ref = imp.get((des, s, lvl))
        ok = ref is not None and (r, lvl) in masks and (ref, lvl) in masks
        out.append(jaccard(_flat(masks[(r, lvl)]), _flat(masks[(ref, lvl)])) if ok else np.nan)
    return pd.Series(out, index=rows.index, dtype=float)


def _keyed(rows: pd.DataFrame, masks: Masks) -> pd.DataFrame:
    """Pruned, healthy rows that have a mask file, with their design, family and `series` labels (the
    family, plus what sets its design apart when the rows hold several designs)."""
    d = stats.with_design(rows[(rows["status"] == "ok") & (rows["level"] > 0)])
    d = d[[(r, lvl) in masks for r, lvl in zip(d["run_id"], d["level"], strict=True)]]
    return d.assign(series=stats.series(d))


def overlap(rows: pd.DataFrame, masks: Masks) -> pd.DataFrame:
    """Per (level, series a, series b) at matched density: mean Jaccard and its 95% CI. a == b: over pairs
    of seeds of one series (`pairs` = seed pairs); a != b: over seeds, the two series' masks of the same
    seed. Series whose densities at a level differ (another pruning rate) are never compared."""
    d = _keyed(rows, masks)
    out = []
    for (level, _), g in d.groupby(["level", d["density"].round(4)]):
        by = {(f, s): masks[(r, level)] for f, s, r in zip(g["series"], g["seed"], g["run_id"], strict=True)}
        flat = {k: _flat(m) for k, m in by.items()}
        fams = sorted(g["series"].unique())
        density = float(g["density"].mean())
        for a, b in itertools.combinations_with_replacement(fams, 2):
            seeds_a = sorted(s for f, s in flat if f == a)
            seeds_b = sorted(s for f, s in flat if f == b)
            if a == b:
                pairs = [((a, s), (a, t)) for s, t in itertools.combinations(seeds_a, 2)]
            else:
                pairs = [((a, s), (b, s)) for s in sorted(set(seeds_a) & set(seeds_b))]
            if not pairs:
                continue
            vals = [jaccard(flat[x], flat[y]) for x, y in pairs]
            m, lo, hi, n = inference.interval(vals, (0, 1))  # a Jaccard index lies in [0, 1]
            matched = float(np.mean([layer_matched_chance(by[x], by[y]) for x, y in pairs]))
            for x, y in sorted({(a, b), (b, a)}):  # sorted: the table's row order is reproducible
                out.append({"level": int(level), "density": density, "a": x, "b": y, "same_method": a == b,
                            "jaccard": m, "lo": lo, "hi": hi, "pairs": n, "chance": matched,
                            "chance_uniform": chance(density)})
    return pd.DataFrame(out)


def layer_density(rows: pd.DataFrame, masks: Masks) -> pd.DataFrame:
    """Per (series, level, layer): the fraction of the layer's weights kept, mean over seeds (`family`
    holds the series label)."""
    d = _keyed(rows, masks)
    recs = []
    for fam, level, run, design in zip(d["series"], d["level"], d["run_id"], d["design"], strict=True):
        for i, (name, m) in enumerate(masks[(run, level)].items()):
            recs.append({"design": design, "family": fam, "level": int(level), "index": i, "layer": name,
                         "weights": int(m.size), "kept": float(m.mean())})
    if not recs:
        return pd.DataFrame(recs)
    per = pd.DataFrame(recs)
    return per.groupby(["design", "family", "level", "index", "layer", "weights"], as_index=False)["kept"].mean()


def same_masks(rows: pd.DataFrame, masks: Masks) -> dict[str, str]:
    """{family: an earlier family whose masks are identical at every seed and level} (e.g. reinit, which
    trains IMP's masks from a fresh initialisation): drawn once, so one line does not hide the other."""
    d = _keyed(rows, masks)
    keys: dict[str, set] = {}
    for fam, design, seed, level, run in zip(d["series"], d["design"], d["seed"], d["level"], d["run_id"],
                                             strict=True):
        bits = np.packbits(_flat(masks[(run, level)])).tobytes()
        keys.setdefault(fam, set()).add((design, seed, level, hash(bits)))
    out, seen = {}, {}
    for fam in sorted(keys):
        k = frozenset(keys[fam])
        if k in seen:
            out[fam] = seen[k]
        else:
            seen[k] = fam
    return out


def heatmap(ov: pd.DataFrame) -> alt.FacetChart:
    """Mean Jaccard, method x method, one panel per level; the diagonal is seed-to-seed overlap."""
    # one panel per level: its title gives the range of the pairs' layer-matched chance (each cell's own is
    # in its tooltip), and a cell's text its Jaccard index over that chance
    span = ov.groupby("level")["chance"].agg(["min", "max"])
    dens = ov.groupby("level")["density"].mean()

    def title(lvl: int) -> str:
        lo, hi = span.loc[lvl, "min"], span.loc[lvl, "max"]
        ch = f"{lo:.2f}" if f"{lo:.2f}" == f"{hi:.2f}" else f"{lo:.2f}-{hi:.2f}"
        return f"level {lvl}: {stats.pct(dens[lvl])} kept (layer-matched chance {ch})"

    d = ov.assign(text=[f"{j:.2f}/{c:.2f}" for j, c in zip(ov["jaccard"], ov["chance"], strict=True)],
                  panel=[title(lvl) for lvl in ov["level"]])
    base = alt.Chart(d).encode(x=alt.X("a:N", title=None), y=alt.Y("b:N", title=None))
    cells = base.mark_rect().encode(
        color=alt.Color("jaccard:Q", title="Jaccard", scale=alt.Scale(domain=[0, 1], scheme="viridis")),
        tooltip=["a", "b", "level", alt.Tooltip("jaccard:Q", format=".3f"), alt.Tooltip("lo:Q", format=".3f"),
                 alt.Tooltip("hi:Q", format=".3f"), "pairs", alt.Tooltip("chance:Q", format=".3f")])
    text = base.mark_text(fontSize=10).encode(
        text="text:N", color=alt.condition("datum.jaccard > 0.6", alt.value("black"), alt.value("white")))
    order = [p for _, p in sorted({(lvl, p) for lvl, p in zip(d["level"], d["panel"], strict=True)})]
    return alt.layer(cells, text, data=d).properties(width=230, height=230).facet(
        facet=alt.Facet("panel:N", sort=order, title="mask overlap: Jaccard index / its layer-matched chance; "
                        "diagonal: between seeds of one method, off-diagonal: between methods at the same seed"),
        columns=3)


def log_ticks(values: pd.Series) -> list[float]:
    """1-2-5 ticks from just below the smallest positive value up to 1 (every layer keeps at most all its
    weights): a log axis's own ticks leave the upper decade unlabelled."""
    v = values[values > 0]
    lo = float(v.min()) if not v.empty else 0.1
    ticks = [m * 10.0**e for e in range(-6, 1) for m in (1, 2, 5) if m * 10.0**e <= 1]
    return [t for t in ticks if t >= lo / 2.5]


def layer_chart(ld: pd.DataFrame) -> alt.FacetChart:
    """Kept fraction per layer (model order) per method, one panel per level."""
    d = ld.assign(layer_label=[f"{i}: {n.removesuffix('.weight')}" for i, n in zip(ld["index"], ld["layer"],
                                                                                   strict=True)])
    order = [lab for _, lab in sorted(set(zip(d["index"], d["layer_label"], strict=True)))]
    return alt.Chart(d).mark_line(point=True).encode(
        x=alt.X("layer_label:N", sort=order, title="layer (input to output)"),
        y=alt.Y("kept:Q", title="fraction of layer kept (log)",
                scale=alt.Scale(type="log", nice=False, domain=[log_ticks(d["kept"])[0], 1.0]),
                axis=alt.Axis(values=log_ticks(d["kept"]), format=".2~%")),
        color=colors.encoding(d["family"]),
        tooltip=["family", "level", "layer", "weights", alt.Tooltip("kept:Q", format=".4f")],
    ).properties(width=230, height=200).facet(facet=alt.Facet("level:O", title="pruning level"), columns=3)


def sentences(ov: pd.DataFrame, same: dict[str, str] | None = None) -> list[str]:
    """Seed-to-seed overlap of each method at its sparsest level, against chance, and the closest pair of
    different methods there (leaving out pairs that share their masks by construction: `same`)."""
    if ov.empty:
        return []
    out = []
    last = ov[ov["level"] == ov["level"].max()]
    for _, r in last[last["same_method"]].drop_duplicates("a").iterrows():
        ci = f" [{r['lo']:.2f}, {r['hi']:.2f}]" if np.isfinite(r["lo"]) else ""
        beyond = "above" if np.isfinite(r["lo"]) and r["lo"] > r["chance"] else "not clearly above"
        out.append(f"At level {r['level']} ({stats.pct(r['density'])} kept), the masks of two seeds of {r['a']} have "
                   f"Jaccard index {r['jaccard']:.2f}{ci} ({r['pairs']} seed pairs), {beyond} the layer-matched "
                   f"chance {r['chance']:.2f} (random masks with the same per-layer kept counts; uniform chance "
                   f"{r['chance_uniform']:.2f}).")
    twins = set(same or {})  # a method with another's masks adds no pair of its own
    cross = last[~last["same_method"] & (last["a"] < last["b"]) & ~last["a"].isin(twins) & ~last["b"].isin(twins)]
    if not cross.empty:
        top = cross.sort_values("jaccard").iloc[-1]
        out.append(f"The most similar pair of different methods (or designs) there: {top['a']} and {top['b']}, "
                   f"Jaccard index {top['jaccard']:.2f} at the same seed (layer-matched chance {top['chance']:.2f}).")
    return out
