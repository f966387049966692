"""Benchmarks: ratios measured in one run (these machines are noisy; absolute times are not comparable)."""
