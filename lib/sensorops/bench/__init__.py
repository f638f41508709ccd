"""Benchmarks that measure and return figures (the CLI prints them): `bench.generate` and `bench.stream`."""
