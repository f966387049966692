"""One declared pyarrow schema for every result row, written as one Parquet file per (run_id, level).

Files are written to a hidden temp name (which pyarrow.dataset, pandas and duckdb skip) and published
with a hard link, which fails if the target exists: a level's row appears atomically, exactly once,
even if two processes finish the same level. Readers need nothing but pyarrow/pandas/duckdb.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import math
import os
import subprocess
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.fs as pafs
import pyarrow.parquet as pq

from lthray import storage

# 3: + rewind_spec (the rewind point as written); 4: + instability_barrier, instability_errors;
# 5: + cam_energy_inside, cam_pointing, cam_concentration, object_area, the lrp_ columns and the
# randomisation checks (cam_ and lrp_sanity_spearman); 6: + empty_layers, reference_cams, reference_lrp,
# concept_refit_overlap, concept_refit_spearman (the noise floors); 7: + shared_from and the explain step's
# parts (cam_, faithfulness_, lrp_, sanity_, pcbm_seconds); 8: + eval_seconds; 9: + extra_metrics (lthray.metrics);
# 10: + pred_agreement, pred_kl (function change), the floor_ columns (the same-initialisation floor);
# 11: + concepts_kept, concept_random_overlap, concept_random_spearman (the concept measure's range),
# cascade_layers, cam_ and lrp_cascade_spearman (cascading randomisation), weight_move_quantiles,
# weights_still, first_filters, first_filters_shape (weights over training).
# Versions 2 to 10 still read (_upgrade).
SCHEMA_VERSION = 12

_F, _I, _S = pa.float64(), pa.int64(), pa.string()


def col(kind: pa.DataType, doc: str, *, nullable: bool = False, report: bool = False, show: str = "",
        show_first: bool = False, show_nonzero: bool = False) -> Any:
    """A LevelRecord field = one Parquet column: its arrow type, meaning and where else it appears.

    nullable columns default to None (a metric not computed, or a diverged level); `report` sends it to
    Ray Tune with every level; `show` is its format in the one-line progress report (e.g. 'acc {:.4f}'),
    where `show_first` columns lead and `show_nonzero` columns (a method's weights) appear only when set.
    """
    meta = {"arrow": kind, "doc": doc, "nullable": nullable, "report": report, "show": show,
            "show_first": show_first, "show_nonzero": show_nonzero}
    return dataclasses.field(default=None, metadata=meta) if nullable else dataclasses.field(metadata=meta)


@dataclass(frozen=True, kw_only=True)
class LevelRecord:
    """One trial's result at one pruning level. Each field is a column, in this order: adding a column
    is adding a field here (and computing it in a step of lthray/trial/measure.py)."""

    sweep: str = col(_S, "sweep name ('single' for python -m lthray)")
    run_id: str = col(_S, "hash of the config's non-default fields: names the run's folder", report=True)
    trial_id: str = col(_S, "Ray Tune's trial id (run_id outside Ray)")
    method: str = col(_S, "pruning method (lthray.methods.METHODS)", report=True, show="{:>14}")
    scope: str = col(_S, "global: one ranking over all layers | layer: same fraction per layer")
    model: str = col(_S, "model name (models.MODELS)")
    dataset: str = col(_S, "dataset name (data.DATASETS)")
    rewind: str = col(_S, "weight | lr | finetune (rewind.REWINDS)")
    rewind_step: int = col(_I, "rewind point k in iterations")
    rewind_spec: str = col(_S, "rewind point as written in the config ('0it', '1ep')")
    guidance_weight: float = col(_F, "g in (1-g)*magnitude + g*guide", report=True, show="g={:.2f}",
                                   show_nonzero=True)
    lambda_fid: float = col(_F, "weight of the explanation-preserving loss during retraining", report=True,
                            show="lambda_fid={:g}", show_nonzero=True)
    kd_weight: float | None = col(_F, "weight of distillation to the dense logits while retraining (the imp_kd arm)",
                                  nullable=True, report=True, show="kd_weight={:g}", show_nonzero=True)
    kd_temperature: float | None = col(_F, "distillation temperature T (the imp_kd arm)", nullable=True)
    seed: int = col(_I, "initial weights, data order, augmentation, random pruning")
    level: int = col(_I, "pruning level (0 = dense)", report=True, show="level {}", show_first=True)
    density: float = col(_F, "fraction of prunable weights kept, measured from the mask", report=True,
                         show="density {:.4f}")
    empty_layers: list[str] | None = col(pa.list_(_S), "prunable layers the mask keeps no weight of (any: the "
                                         "network is disconnected there)", nullable=True)
    status: str = col(_S, "ok | diverged", report=True, show="{}")
    test_acc: float | None = col(_F, "test accuracy", nullable=True, report=True, show="acc {:.4f}")
    test_loss: float | None = col(_F, "test cross-entropy", nullable=True)
    pred_agreement: float | None = col(_F, "fraction of test images on which this network's top-1 prediction is the "
                                       "same seed's dense model's (1 at level 0): function change", nullable=True,
                                       report=True, show="agree {:.3f}")
    pred_kl: float | None = col(_F, "mean KL(dense || this network) of the test images' softmax outputs, nats (0 at "
                                "level 0)", nullable=True, report=True)
    cam_spearman_same_pred: float | None = col(_F, "cam_spearman over the probe images on which this network predicts "
                                               "the dense model's class (function-matched)", nullable=True)
    lrp_spearman_same_pred: float | None = col(_F, "lrp_spearman over those probe images", nullable=True)
    cam_spearman: float | None = col(_F, "Grad-CAM vs the dense model's maps: Spearman, mean over probe images",
                                     nullable=True, report=True, show="cam_rho {:.3f}")
    cam_iou: float | None = col(_F, "top-k% IoU vs the dense model's maps", nullable=True, report=True,
                                show="iou {:.3f}")
    cam_faithfulness: float | None = col(_F, "the model's own maps: ROAD combined or confidence drop",
                                         nullable=True, report=True)
    cam_energy_inside: float | None = col(_F, "share of the Grad-CAM map's mass on the object (energy-based "
                                          "pointing game); null without object masks", nullable=True, report=True)
    cam_pointing: float | None = col(_F, "fraction of probe maps whose maximum lies on the object (pointing "
                                     "game); null without object masks", nullable=True, report=True)
    cam_concentration: float | None = col(_F, "fraction of the image's area holding half the map's mass",
                                          nullable=True, report=True)
    object_area: float | None = col(_F, "mean fraction of a probe image's area on the object: energy inside's "
                                    "chance level; null without object masks", nullable=True)
    lrp_spearman: float | None = col(_F, "LRP (zennit EpsilonPlusFlat) maps vs the dense model's: Spearman, mean "
                                     "over probe images; null unless explain.lrp", nullable=True, report=True)
    occlusion_spearman: float | None = col(_F, "occlusion (captum) maps vs the dense model's: Spearman, mean over "
                                           "probe images; null unless explain.occlusion", nullable=True, report=True)
    lrp_energy_inside: float | None = col(_F, "share of the LRP map's mass on the object", nullable=True,
                                          report=True)
    lrp_pointing: float | None = col(_F, "fraction of LRP maps whose maximum lies on the object", nullable=True,
                                     report=True)
    lrp_concentration: float | None = col(_F, "fraction of the image's area holding half the LRP map's mass",
                                          nullable=True, report=True)
    cam_sanity_spearman: float | None = col(_F, "level 0 only: Spearman of the trained model's Grad-CAM maps with "
                                            "those of the same network, every weight re-initialised (Adebayo et "
                                            "al. 2018); >= 0.5 fails the check", nullable=True)
    lrp_sanity_spearman: float | None = col(_F, "level 0 only: the same randomisation check for the LRP maps",
                                            nullable=True)
    cascade_layers: list[str] | None = col(pa.list_(_S), "level 0 only: the weight layers in the order the cascading "
                                           "randomisation re-initialises them, output first", nullable=True)
    cam_cascade_spearman: list[float] | None = col(pa.list_(_F), "level 0 only: Spearman of the trained Grad-CAM "
                                                   "maps with those after each cascade step", nullable=True)
    lrp_cascade_spearman: list[float] | None = col(pa.list_(_F), "level 0 only: the same for the LRP maps",
                                                   nullable=True)
    concept_bank: str = col(_S, "concept source ('/random': checks the pipeline only)")
    pcbm_acc: float | None = col(_F, "test accuracy of the post-hoc concept bottleneck on this backbone",
                                 nullable=True, report=True)
    concept_topk_overlap: float | None = col(_F, "mean over classes of |top-k concepts & the dense PCBM's| / k, "
                                             "mean over concepts.refits bootstrap refits of the concept -> class "
                                             "layer (dense projection held fixed)", nullable=True, report=True,
                                             show="concepts {:.2f}")
    concept_weight_spearman: float | None = col(_F, "Spearman of concept->class weights vs dense's, mean over "
                                                "those refits", nullable=True)
    extra_metrics: dict[str, float] | None = col(pa.map_(_S, _F), "metrics registered with a compute function "
                                                 "(lthray.metrics: a plugin's): name -> value", nullable=True)
    top_concepts: list[str] | None = col(pa.list_(_S), "per class: 'CLASS: concept | concept | ...'",
                                         nullable=True)
    concepts_kept: int | None = col(_I, "concepts of the vocabulary that pass the fidelity cutoff on the dense "
                                    "backbone (concepts.fidelity_cutoff): the PCBM's concepts", nullable=True)
    concept_refit_overlap: float | None = col(_F, "level 0 only: the dense backbone's concept_topk_overlap with "
                                              "itself (its refits): the top of the measure's range, the refit "
                                              "noise floor", nullable=True)
    concept_refit_spearman: float | None = col(_F, "level 0 only: its concept_weight_spearman with itself",
                                               nullable=True)
    concept_random_overlap: float | None = col(_F, "level 0 only: concept_topk_overlap of the untrained network "
                                               "(the trial's initialisation): the bottom of the range", nullable=True)
    concept_random_spearman: float | None = col(_F, "level 0 only: its concept_weight_spearman", nullable=True)
    floor_test_acc: float | None = col(_F, "level 0 only: test accuracy of the same-initialisation copy (its rewind "
                                       "point trained again, other data order; explain.same_init_floor)", nullable=True)
    floor_pred_agreement: float | None = col(_F, "level 0: the copy's pred_agreement", nullable=True)
    floor_pred_kl: float | None = col(_F, "level 0: the copy's pred_kl", nullable=True)
    floor_cam_spearman: float | None = col(_F, "level 0: the copy's cam_spearman", nullable=True)
    floor_cam_iou: float | None = col(_F, "level 0: the copy's cam_iou", nullable=True)
    floor_cam_spearman_same_pred: float | None = col(_F, "level 0: the copy's cam_spearman_same_pred", nullable=True)
    floor_lrp_spearman_same_pred: float | None = col(_F, "level 0: the copy's lrp_spearman_same_pred", nullable=True)
    floor_lrp_spearman: float | None = col(_F, "level 0: the copy's lrp_spearman", nullable=True)
    floor_occlusion_spearman: float | None = col(_F, "level 0: the copy's occlusion_spearman", nullable=True)
    floor_concept_topk_overlap: float | None = col(_F, "level 0: the copy's concept_topk_overlap", nullable=True)
    floor_concept_weight_spearman: float | None = col(_F, "level 0: the copy's concept_weight_spearman",
                                                      nullable=True)
    weight_move_quantiles: list[float] | None = col(pa.list_(_F), "|w_end - w_start| of the kept weights over this "
                                                    "level's training, at quantiles 5/25/50/75/95% (lthray.weights)",
                                                    nullable=True)
    weights_still: float | None = col(_F, "fraction of kept weights that moved < 1% of their layer's starting RMS "
                                      "(training left them where they were)", nullable=True)
    first_filters: list[float] | None = col(pa.list_(pa.float32()), "the first convolution's trained weights, "
                                            "flattened (shape: first_filters_shape)", nullable=True)
    first_filters_shape: list[int] | None = col(pa.list_(_I), "their shape (out, in, h, w)", nullable=True)
    instability_barrier: float | None = col(_F, "test-error barrier between two copies trained from this level's "
                                            "start with different data orders (Frankle et al. 2020); null unless "
                                            "instability.enabled", nullable=True, report=True, show="barrier {:.3f}")
    instability_errors: list[float] | None = col(pa.list_(_F), "test error at each interpolation point, "
                                                 "alpha = 0 .. 1", nullable=True)
    probe_cams: list[float] | None = col(pa.list_(pa.float32()), "Grad-CAM maps of the first GALLERY probe "
                                         "images, flattened N x H x W", nullable=True)
    reference_cams: list[float] | None = col(pa.list_(pa.float32()), "level 0 only: Grad-CAM maps of every probe "
                                             "image, flattened N x H x W (the dense seed-vs-seed noise floor)",
                                             nullable=True)
    reference_lrp: list[float] | None = col(pa.list_(pa.float32()), "level 0 only: the LRP maps of every probe "
                                            "image, flattened N x H x W", nullable=True)
    shared_from: str | None = col(_S, "the run_id whose stored level this row reused (lthray.trial.cache; null: the "
                                  "trial computed the level itself)", nullable=True)
    train_steps: int = col(_I, "optimizer steps trained at this level", report=True)
    train_seconds: float = col(_F, "wall time of this trial's own training at this level (0 for a reused one)")
    eval_seconds: float | None = col(_F, "wall time of the test-set pass: accuracy, loss and the test features the "
                                     "concept bottleneck reads (0 when reused)", nullable=True)
    explain_seconds: float = col(_F, "wall time of the explain step: the parts below, and the rest (0 when reused)")
    cam_seconds: float | None = col(_F, "of which Grad-CAM maps and their comparison with dense's", nullable=True)
    faithfulness_seconds: float | None = col(_F, "of which faithfulness (ROAD's imputations, or confidence drop)",
                                             nullable=True)
    lrp_seconds: float | None = col(_F, "of which LRP maps and their columns", nullable=True)
    occlusion_seconds: float | None = col(_F, "of which occlusion maps and their column", nullable=True)
    sanity_seconds: float | None = col(_F, "of which the randomisation sanity checks (level 0)", nullable=True)
    pcbm_seconds: float | None = col(_F, "of which the concept bottleneck fit(s) and their columns", nullable=True)
    git_sha: str = col(_S, "source revision ('+dirty' if uncommitted changes)")
    config_json: str = col(_S, "the full flat config (lthray.config.to_flat)")

    def to_row(self) -> dict[str, Any]:
        """The row as a plain dict (what checkpoints, callbacks and write_row take)."""
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}


COLUMNS = tuple(f for f in dataclasses.fields(LevelRecord))
SCHEMA = pa.schema(
    [pa.field("schema_version", pa.int16(), nullable=False)]
    + [pa.field(f.name, f.metadata["arrow"], nullable=f.metadata["nullable"]) for f in COLUMNS]
    + [pa.field("created_at", pa.timestamp("us", tz="UTC"), nullable=False)],
    metadata={"lthray.schema_version": str(SCHEMA_VERSION)},
)
REPORTED = tuple(f.name for f in COLUMNS if f.metadata["report"])  # what a trial reports to Ray Tune
STATUSES = ("ok", "diverged")
GALLERY = 4  # probe images whose maps every row keeps (flattened N x H x W), for the analysis gallery


def progress_line(row: dict[str, Any]) -> str:
    """One line per finished level: the columns marked `show`, in column order (missing ones skipped, and
    a weight of 0: an arm's line names its lambda_fid or kd_weight, a guided method's its g)."""
    parts = []
    for f in sorted(COLUMNS, key=lambda c: not c.metadata["show_first"]):  # stable: column order otherwise
        fmt, v = f.metadata["show"], row.get(f.name)
        if fmt and v is not None and (v or not f.metadata["show_nonzero"]):
            parts.append(fmt.format(v))
    return "  ".join(parts)


class SchemaError(ValueError):
    """A row does not match SCHEMA (missing/extra column, wrong type, null where not allowed)."""


class ResultsError(RuntimeError):
    """A results directory holds something that is not a readable lthray results file."""


def _num(x: object) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool)


_TYPE_CHECKS = {
    "int64": lambda v: isinstance(v, int) and not isinstance(v, bool),
    "double": _num,
    "string": lambda v: isinstance(v, str),
    "list<item: string>": lambda v: isinstance(v, list) and all(isinstance(x, str) for x in v),
    "list<item: float>": lambda v: isinstance(v, list) and all(_num(x) for x in v),
    "list<item: double>": lambda v: isinstance(v, list) and all(_num(x) for x in v),
    "list<item: int64>": lambda v: isinstance(v, list) and all(isinstance(x, int) for x in v),
    "map<string, double>": lambda v: isinstance(v, dict) and all(isinstance(k, str) and _num(x) for k, x in v.items()),
}


def _check_row(row: dict[str, Any]) -> None:
    names = {f.name for f in COLUMNS}
    missing, extra = names - set(row), set(row) - names - {"created_at"}
    if missing or extra:
        raise SchemaError(f"row columns differ from SCHEMA: missing {sorted(missing)}, unexpected {sorted(extra)}")
    for f in COLUMNS:
        v = row[f.name]
        if v is None:
            if not f.metadata["nullable"]:
                raise SchemaError(f"column {f.name!r} may not be null")
            continue
        if not _TYPE_CHECKS.get(str(f.metadata["arrow"]), lambda _: True)(v):
            raise SchemaError(f"column {f.name!r} is {f.metadata['arrow']}; got {type(v).__name__} {v!r}")
    if row["status"] not in STATUSES:
        raise SchemaError(f"column 'status' is {row['status']!r}; allowed: {list(STATUSES)}")


def row_name(run_id: str, level: int) -> str:
    return f"{run_id}__L{level:03d}.parquet"


def row_path(results_dir: str | Path, run_id: str, level: int) -> Path:
    return Path(storage.resolve(results_dir)[1]) / row_name(run_id, level)


def write_row(results_dir: str | Path, row: dict[str, Any] | LevelRecord) -> bool:
    """Write one result row atomically; returns False (writing nothing) if that level's row exists."""
    row = row.to_row() if isinstance(row, LevelRecord) else row
    _check_row(row)
    full = {"schema_version": SCHEMA_VERSION, "created_at": dt.datetime.now(dt.UTC), **row}
    # nan -> null for metric columns: "not computed" must not look like a number to readers
    full = {k: (None if isinstance(v, float) and math.isnan(v) and SCHEMA.field(k).nullable else v)
            for k, v in full.items()}
    try:
        table = pa.Table.from_pylist([full], schema=SCHEMA)
    except (pa.ArrowInvalid, pa.ArrowTypeError) as e:
        raise SchemaError(str(e)) from e
    return storage.publish_table(results_dir, row_name(row["run_id"], row["level"]), table)


def result_files(results_dir: str | Path) -> list[str]:
    """The published result files (hidden temp files and other names are not results)."""
    return storage.list_files(results_dir, ".parquet")


def _upgrade(t: pa.Table, version: int) -> pa.Table:
    """A table written by an older schema version, in today's columns: new columns derived where the
    old ones say what they would have held, else null (every column added since version 2 allows that)."""
    if version < 3 and "rewind_spec" not in t.column_names:  # v2 kept only the iterations
        spec = pa.array([f"{k}it" for k in t["rewind_step"].to_pylist()], _S)
        t = t.append_column("rewind_spec", spec)
    for f in SCHEMA:
        if f.name not in t.column_names:
            t = t.append_column(f.name, pa.nulls(t.num_rows, f.type))
    return t


def read_tagged(path: str, fs: pafs.FileSystem, tag: str, what: str) -> tuple[pa.Table, int]:
    """One of lthray's Parquet files (rows or masks) and the version its metadata `tag` holds;
    ResultsError naming the file when it cannot be read or is not lthray's (no `tag`)."""
    try:
        t = pq.read_table(storage.resolve(path)[1], filesystem=fs)
    except Exception as e:
        raise ResultsError(f"{path}: not a readable {what} ({type(e).__name__}: {e})") from e
    version = (t.schema.metadata or {}).get(tag.encode())
    if version is None:
        raise ResultsError(f"{path}: not an lthray {what} (no {tag} in its metadata)")
    return t, int(version)


def read(results_dir: str | Path, files: list[str] | None = None) -> pa.Table:
    """All rows under `results_dir` (or those of `files` in it); ResultsError naming the first file that
    is not an lthray result."""
    fs, _ = storage.resolve(results_dir)
    tables = []
    for p in result_files(results_dir) if files is None else files:
        t, version = read_tagged(p, fs, "lthray.schema_version", "results file")
        if not 2 <= version <= SCHEMA_VERSION:
            raise ResultsError(f"{p}: schema version {version}, this lthray reads versions 2 to {SCHEMA_VERSION}")
        t = _upgrade(t, version) if version < SCHEMA_VERSION else t
        tables.append(t.select(SCHEMA.names).cast(SCHEMA))
    return pa.concat_tables(tables) if tables else SCHEMA.empty_table()


def read_run(results_dir: str | Path, run_id: str, levels: range) -> list[dict[str, Any]]:
    """The rows of `run_id`'s `levels` that exist, in level order (only their files are read)."""
    names = [f"{str(results_dir).rstrip('/')}/{row_name(run_id, lv)}" for lv in levels]
    present = [n for n in names if storage.exists(n)]
    return read(results_dir, present).to_pylist() if present else []


def trial_finished(levels: int, finished: set[int], diverged: bool) -> bool:
    """The one definition of a finished trial, for the level loop, the trainable and a sweep's tally:
    every level 0..levels has finished, or one diverged (no level after it is trained)."""
    return diverged or finished >= set(range(levels + 1))


@lru_cache(maxsize=1)
def git_sha() -> str:
    """The source revision that produced a row ('+dirty' if uncommitted changes), or 'unknown'."""
    here = Path(__file__).resolve().parent
    try:
        sha = subprocess.run(["git", "rev-parse", "HEAD"], cwd=here, capture_output=True, text=True, timeout=5,
                             check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=here,
                               capture_output=True, text=True, timeout=5).stdout.strip()
        return sha + ("+dirty" if dirty else "")
    except (OSError, subprocess.SubprocessError):
        return os.environ.get("LTHRAY_GIT_SHA", "unknown")
