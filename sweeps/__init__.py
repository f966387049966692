"""Ray Tune sweeps over lthray trials (the only place Ray is imported)."""
