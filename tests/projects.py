"""Edits of the example project's YAML shared by tests."""

from __future__ import annotations

from pathlib import Path


def add_views(features_file: Path, yaml: str) -> None:
    """Add `yaml` (feature views, then `feature_services:`) to the example's user_features.yaml:
    the views among its feature_views (before `user_profile`), the services at the end."""
    views, _, services = yaml.partition("feature_services:")
    head, _, tail = features_file.read_text().partition("\n  - name: user_profile")
    features_file.write_text(head + "\n" + views + "\n  - name: user_profile" + tail + "\nfeature_services:" + services)
