"""lthray: lottery-ticket pruning that tracks, and can be guided by, explanations.

The library never imports Ray: the same level loop runs in a test, a notebook or a Ray Tune trial.
"""

__version__ = "0.1.0"
