"""Benchmarks: spidernet measured side by side with the Go reference plugins, as ratios.

Run from the repository root, e.g. `python -m bench.ipam` (see bench/README.md). They are not
tests: they print tables and write a plot and a JSON file of every number.
"""
