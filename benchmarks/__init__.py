"""Benchmarks against the original sample's algorithm: `python benchmarks/run.py`."""
