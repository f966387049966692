"""One trial of iterative pruning, as a few modules of one job each:

- `state`: what a trial keeps between levels, and its checkpoints (STATE, PREVIOUS);
- `setup`: what every step reads (data, model, guide images, concept bank), built once;
- `steps`: the level's steps (prune, rewind, train, and the reinit and instability copies);
- `measure`: what a level's row measures (accuracy, maps, concepts);
- `cache`: levels shared across a sweep's trials (content-addressed);
- `level`: one path through a level, with the cache in front;
- `driver`: `run_trial`, every level published once and checkpointed.
"""

from lthray.trial.driver import run_trial
from lthray.trial.state import PREVIOUS, STATE, CorruptState, TrialState, last_level

__all__ = ["PREVIOUS", "STATE", "CorruptState", "TrialState", "last_level", "run_trial"]
