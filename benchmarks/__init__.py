"""Speed benchmarks (benchmarks/README.md). Each script runs as ``python benchmarks/NAME.py`` from the
repository root; what they share is :mod:`benchmarks.common`."""
