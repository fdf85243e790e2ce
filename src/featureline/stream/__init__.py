"""Streaming engine: the Kafka source, micro-batch apply, sinks and the Beam pipeline (DESIGN.md section 5)."""
