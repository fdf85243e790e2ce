"""Streaming engine: the Kafka source, micro-batch apply, sinks and the Beam pipeline (docs/stream.md)."""
