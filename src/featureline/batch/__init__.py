"""The DuckDB batch engine: validated sources, point-in-time training sets, offline backfills."""
