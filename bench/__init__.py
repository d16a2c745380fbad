"""Benchmarks: one command each (`python -m bench.NAME`); see docs/benchmarks.md."""
