"""Benchmarks behind `scripts/benchmark.py mode=...`: each module has `main(argv) -> None`."""
