"""Grad-CAM gallery (dense vs pruned overlays) and the concept-shift table (dense vs sparsest).

Both read only the result rows: every row keeps the maps of the first few probe images
(`probe_cams`) and each class's top concepts (`top_concepts`); the probe images themselves are
reloaded from the dataset (the probe set is a fixed function of the test set).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd

from analysis.load import final_rows
from lthray.results import GALLERY


def median_seed(rows: pd.DataFrame) -> tuple[int | None, str]:
    """The seed every method's gallery and concept shift come from, and why: among the seeds every method
    has a healthy finished trial at, the one whose mean final accuracy over the methods is the median (the
    lower middle one for an even count). One seed for all, so the methods are compared paired, never
    each at its own best seed."""
    final = final_rows(rows)
    if final.empty:
        return None, ""
    per = final.groupby(["seed", "method"])["test_acc"].mean().unstack()
    common = per.dropna()
    if common.empty:
        return None, ""
    mean = common.mean(axis=1).sort_values(kind="stable")
    seed = int(mean.index[(len(mean) - 1) // 2])
    return seed, (f"the median of the {len(mean)} seeds every method finished by mean final accuracy over the "
                  f"methods ({100 * mean[seed]:.1f}%)")


def representatives(rows: pd.DataFrame, seed: int | None = None) -> pd.DataFrame:
    """Per method, the rows of its healthy trial at `seed` (default: median_seed) that pruned furthest."""
    seed = median_seed(rows)[0] if seed is None else seed
    final = final_rows(rows)
    if seed is not None:
        final = final[final["seed"] == seed]
    pick = final.sort_values(["density", "run_id"]).groupby("method").head(1)
    return rows[rows["run_id"].isin(pick["run_id"])]


def _levels_to_show(levels: list[int], n: int = 3) -> list[int]:
    pruned = [lv for lv in levels if lv > 0]
    if len(pruned) <= n:
        return pruned
    idx = np.linspace(0, len(pruned) - 1, n).round().astype(int)
    return [pruned[i] for i in idx]


def _probe_images(row: pd.Series) -> np.ndarray | None:
    """The first GALLERY probe images as HxWx3 floats in [0, 1], or None if the data is not on disk."""
    from lthray import data as data_mod
    from lthray.config import from_flat

    cfg = from_flat(json.loads(row["config_json"]))
    if cfg.data.dataset not in data_mod.DATASETS:  # a plugin's dataset, its plugin not loaded (--plugin)
        return None
    try:
        d = data_mod.load(cfg.data.dataset, cfg.data.probe_size, "cpu")
    except data_mod.DataUnavailableError:
        return None
    x = (d.probe_x[:GALLERY] * d.std + d.mean).clamp(0, 1)
    return x.expand(-1, 3, -1, -1).permute(0, 2, 3, 1).numpy()  # grayscale shown as RGB for the overlay


def gallery(rows: pd.DataFrame, out: Path, images: int = 2, seed: int | None = None) -> Path | None:
    """gallery.png: for each method's trial at `seed` (representatives) and probe image, input | dense |
    3 densities, with the colour bar of the maps (Grad-CAM normalised to [0, 1] per map, jet as drawn)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from pytorch_grad_cam.utils.image import show_cam_on_image

    reps = representatives(rows, seed)
    if reps.empty:
        return None
    imgs = _probe_images(reps.iloc[0])
    if imgs is None:
        return None
    runs = list(reps.groupby("method"))
    ncols = 2 + max(len(_levels_to_show(list(g["level"]))) for _, g in runs)  # input | dense | pruned...
    fig, axes = plt.subplots(len(runs) * images, ncols, figsize=(2.0 * ncols, 2.1 * len(runs) * images),
                             squeeze=False)
    for r, (method, g) in enumerate(runs):
        g = g.set_index("level").sort_index()
        shown = [0, *_levels_to_show(list(g.index))]
        for i in range(images):
            ax_row = axes[r * images + i]
            ax_row[0].imshow(imgs[i])
            ax_row[0].set_title(f"{method}\nprobe {i}", fontsize=8)
            for c, lv in enumerate(shown[: ncols - 1], start=1):
                cams = g.loc[lv, "probe_cams"]
                if cams is None:
                    continue
                m = np.asarray(cams, dtype=np.float32).reshape(GALLERY, *imgs.shape[1:3])[i]
                ax_row[c].imshow(show_cam_on_image(imgs[i].astype(np.float32), m, use_rgb=True))
                label = "dense" if lv == 0 else f"density {g.loc[lv, 'density']:.3f}"
                ax_row[c].set_title(f"{label}\nacc {g.loc[lv, 'test_acc']:.2f}", fontsize=8)
            for ax in ax_row:
                ax.axis("off")
    seeds = sorted({int(s) for s in reps["seed"]})
    fig.suptitle("Grad-CAM of the same probe images as pruning proceeds (true class; seed "
                 f"{', '.join(map(str, seeds))} for every method)", fontsize=10)
    fig.tight_layout(rect=(0, 0, 0.92, 1 - 0.35 / fig.get_figheight()))  # room for the title and colour bar
    from matplotlib import cm, colors

    cax = fig.add_axes((0.935, 0.15, 0.015, 0.7))
    # show_cam_on_image draws with OpenCV's COLORMAP_JET, matplotlib's "jet" to the eye
    bar = fig.colorbar(cm.ScalarMappable(norm=colors.Normalize(0, 1), cmap="jet"), cax=cax)
    bar.set_label("Grad-CAM (per map, 0 = min, 1 = max)", fontsize=8)
    bar.ax.tick_params(labelsize=7)
    path = out / "gallery.png"
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def concept_shift(rows: pd.DataFrame, seed: int | None = None) -> pd.DataFrame:
    """Top concepts per class of each method's trial at `seed` (representatives): dense vs its sparsest level."""
    out = []
    for method, g in representatives(rows, seed).groupby("method"):
        g = g.sort_values("level")
        dense, last = g.iloc[0], g.iloc[-1]
        if dense["top_concepts"] is None or last["top_concepts"] is None:
            continue
        for d_entry, s_entry in zip(dense["top_concepts"], last["top_concepts"], strict=True):
            cls, _, d_top = d_entry.partition(": ")
            _, _, s_top = s_entry.partition(": ")
            dset, sset = d_top.split(" | "), s_top.split(" | ")
            out.append({
                "method": method, "run_id": dense["run_id"], "seed": int(dense["seed"]), "class": cls,
                "density": last["density"],
                "dense_top": d_top, "sparsest_top": s_top,
                "kept": " | ".join(c for c in dset if c in sset),
                "lost": " | ".join(c for c in dset if c not in sset),
                "gained": " | ".join(c for c in sset if c not in dset),
            })
    return pd.DataFrame(out)
