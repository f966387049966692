"""Pruning methods: one module per family, each registering its criteria and its `Method`s.

A new method is one module here that registers (`CRITERIA.register`, `METHODS.register`) plus its name
in the import list below; presets, the level loop, the config checks and the report read everything
else (guided or not, at initialisation, what it needs) from its `Method`.
"""

from lthray.methods import at_init, guided, lrp, magnitude  # noqa: F401  (registration)
from lthray.methods.at_init import GRASP_TEMPERATURE
from lthray.methods.base import (
    CRITERIA,
    METHODS,
    MIX_SCALES,
    Criterion,
    Method,
    MissingInput,
    Needs,
    ScoreContext,
    is_guided,
    mix,
    names,
    normalise,
    percentile,
    scores_for,
)

__all__ = ["CRITERIA", "GRASP_TEMPERATURE", "METHODS", "Criterion", "Method", "MissingInput", "Needs",
           "MIX_SCALES", "ScoreContext", "is_guided", "mix", "names", "normalise", "percentile", "scores_for"]
