"""Watching the pipeline run: Prometheus exporters for what Flink and Kafka do not report themselves, and drift
between recent data and a model's training data."""
