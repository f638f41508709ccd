"""Flink job entry points, run by the Flink client (`flink run -py`), not imported by the library."""
