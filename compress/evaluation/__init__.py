"""Measuring models: quality figures, uncertainty, comparison, gate and promotion decisions,
latency and memory benchmarks, plots and the report. Imports the packages before it
(`runtime` to `models`)."""
