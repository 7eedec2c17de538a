"""LightQuant benchmarks (issue 9): ``python -m benchmarks.run --quick``; see BENCHMARKS.md."""
