"""One record per measured quantity (like `Method` for a pruning method): what it is called, its unit and
range, which way is better, the equivalence margin that counts as "no change", the noise floor it is read
against, and whether it is a headline or a guard metric. The analysis (stats, floors, claims, the Pareto
charts and the report) reads all of it from here, so adding a metric is one record:

    from lthray.metrics import Metric, register
    register(Metric("logit_margin", "mean top-1 logit margin", range=None, margin=0.1,
                    compute=lambda model, data: float(...)))   # any function of (model, data) -> float

A built-in metric's value is a LevelRecord column computed in `trial.measure`; a metric with `compute`
(a plugin's) needs neither: its value goes into the row's `extra_metrics` column, and the analysis
expands it into a column of its own (`analysis.load`).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any, Literal

from lthray.registry import Registry

Floor = Literal["same_init", "seed", "refit"]


@dataclass(frozen=True)
class Metric:
    """A measured quantity. `direction`: +1 higher is better, -1 lower is better, 0 neither (a change
    either way is a change, e.g. how concentrated a map is). `margin`: the declared equivalence margin of
    TOST, in the metric's own units. `floors`: (kind, the row column the floor is computed from):
    'same_init' = the dense model against its second copy from the same initialisation and rewind point,
    trained with another data order (a level-0 column, per seed: the null for a ticket's drift), 'seed' =
    two dense models of one design that differ in their seed (`analysis.floors`), 'refit' = the dense
    PCBM fitted twice. `role`: 'headline' (in the report's summary table and verdict figures), 'guard'
    (must not get worse while another metric improves) or '' (reported in the tables only).
    `compute(model, data) -> float`: for a metric that is no LevelRecord column (a plugin's), called on
    the network a level's row describes."""

    name: str
    label: str
    unit: str = ""
    range: tuple[float, float] | None = None
    direction: int = 1
    margin: float = 0.05
    floors: tuple[tuple[Floor, str], ...] = ()
    role: Literal["headline", "guard", ""] = ""
    scale: float = 1.0  # how a difference is printed: 100 prints an accuracy in points
    compute: Callable[[Any, Any], float] | None = None

    def floor_column(self, kind: Floor) -> str | None:
        return dict(self.floors).get(kind)


METRICS: Registry[Metric] = Registry("metric")


def register(m: Metric) -> Metric:
    METRICS.register(m.name)(m)
    return m


def unregister(name: str) -> None:
    """Remove a metric (tests that register a toy one clean up after themselves)."""
    METRICS.unregister(name)


def all_metrics() -> list[Metric]:
    """Every metric, built-in ones in their declared order, then registered ones."""
    return METRICS.values()


def computed() -> list[Metric]:
    """The metrics a trial computes through their record's `compute` (not LevelRecord columns)."""
    return [m for m in all_metrics() if m.compute is not None]


class View(Mapping[str, Any]):
    """name -> one field of every metric that has it, read from the registry at each use, so a metric
    registered after the analysis was imported (a plugin's, a test's) is seen everywhere."""

    def __init__(self, field: Callable[[Metric], Any]) -> None:
        self._field = field

    def _items(self) -> dict[str, Any]:
        return {m.name: v for m in all_metrics() if (v := self._field(m)) is not None}

    def __getitem__(self, name: str) -> Any:
        return self._items()[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self._items())

    def __len__(self) -> int:
        return len(self._items())


LABELS = View(lambda m: m.label)
RANGES = View(lambda m: m.range)
MARGINS = View(lambda m: m.margin)
SAME_INIT_FLOORS = View(lambda m: m.floor_column("same_init"))  # metric -> its level-0 floor_ column
SEED_FLOORS = View(lambda m: m.floor_column("seed"))  # metric -> the row column its seed floor comes from
REFIT_FLOORS = View(lambda m: m.floor_column("refit"))
COUNTED = View(lambda m: True if m.role else None)  # the metrics whose comparisons the findings count
LOWER_IS_FAVOURABLE = View(lambda m: True if m.direction <= 0 else None)


_P, _R = (0.0, 1.0), (-1.0, 1.0)
def _same(name: str) -> tuple[Floor, str]:
    return ("same_init", f"floor_{name}")


_SEED_CAMS, _SEED_LRP = ("seed", "reference_cams"), ("seed", "reference_lrp")
for _m in (
    Metric("test_acc", "test accuracy", " points", _P, margin=0.01, role="guard", scale=100.0),
    # function change: what explanation drift is read against (lthray.explain.function)
    Metric("pred_agreement", "top-1 agreement with dense", "", _P, margin=0.01, floors=(_same("pred_agreement"),)),
    Metric("pred_kl", "KL(dense || pruned) of test outputs", " nats", None, direction=-1, margin=0.02,
           floors=(_same("pred_kl"),)),
    Metric("cam_spearman", "Grad-CAM Spearman to dense", "ρ", _R, floors=(_same("cam_spearman"), _SEED_CAMS),
           role="headline"),
    Metric("cam_iou", "Grad-CAM top-k IoU to dense", "", _P, floors=(_same("cam_iou"), _SEED_CAMS), role="headline"),
    Metric("cam_faithfulness", "Grad-CAM faithfulness", "", None, margin=0.02, role="headline"),
    Metric("cam_energy_inside", "Grad-CAM mass on the object", "", _P, role="headline"),
    Metric("cam_pointing", "Grad-CAM peak on the object", "", _P),
    Metric("cam_concentration", "area holding half the Grad-CAM mass", "", _P, direction=0, role="headline"),
    Metric("cam_spearman_same_pred", "Grad-CAM Spearman to dense, same predictions", "ρ", _R,
           floors=(_same("cam_spearman_same_pred"),)),
    Metric("lrp_spearman_same_pred", "LRP Spearman to dense, same predictions", "ρ", _R,
           floors=(_same("lrp_spearman_same_pred"),)),
    Metric("lrp_spearman", "LRP Spearman to dense", "ρ", _R, floors=(_same("lrp_spearman"), _SEED_LRP),
           role="headline"),
    # the attribution no training loss reads: the preservation study's held-out yardstick (explain.occlusion)
    Metric("occlusion_spearman", "occlusion Spearman to dense", "ρ", _R, floors=(_same("occlusion_spearman"),)),
    Metric("lrp_energy_inside", "LRP mass on the object", "", _P),
    Metric("lrp_pointing", "LRP peak on the object", "", _P),
    Metric("lrp_concentration", "area holding half the LRP mass", "", _P, direction=0, role="headline"),
    Metric("concept_topk_overlap", "concept top-k overlap with dense", "", _P,
           floors=(_same("concept_topk_overlap"), ("seed", "top_concepts"), ("refit", "concept_refit_overlap")),
           role="headline"),
    Metric("concept_weight_spearman", "concept weight Spearman to dense", "ρ", _R,
           floors=(_same("concept_weight_spearman"), ("refit", "concept_refit_spearman")), role="headline"),
    Metric("pcbm_acc", "PCBM accuracy", " points", _P, margin=0.01, role="headline", scale=100.0),
    # weights over training (lthray.weights): reported, never a claim
    Metric("weights_still", "share of kept weights left still", "", _P, direction=0),
    Metric("instability_barrier", "instability barrier (test error)", "", _P, direction=-1, margin=0.01),
):
    register(_m)
