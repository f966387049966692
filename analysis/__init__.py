"""Turns lthray's Parquet results into tables and plots."""
