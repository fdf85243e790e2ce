"""The Redis online store: tiles of partial aggregates, read exactly as of now in one round trip."""
