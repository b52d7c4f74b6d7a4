"""Reproducible benchmarks whose figures go into docs/benchmarks.md."""
