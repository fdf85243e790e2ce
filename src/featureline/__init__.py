"""featureline: a streaming feature store with data contracts."""

from __future__ import annotations

from typing import TYPE_CHECKING

__version__ = "0.1.0"
__all__ = ["FeatureStore", "__version__"]

if TYPE_CHECKING:
    from .store import FeatureStore


def __getattr__(name: str):
    if name == "FeatureStore":  # imported on first use: `import featureline` stays light
        from .store import FeatureStore

        return FeatureStore
    raise AttributeError(name)
