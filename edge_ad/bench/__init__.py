"""Benchmarks (``edge-ad bench ...``); results go to BENCHMARKS.md, never into timed tests."""
