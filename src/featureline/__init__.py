"""featureline: a streaming feature store with data contracts."""

__version__ = "0.1.0"
