"""Why a stream stops on its own: errors that say what happened and what to do, one line each.

The CLI prints their message and exits 1 (no traceback); Beam re-raises them from the DoFns
with the step's name appended. Standard library only (the helper processes raise them too).
"""

from __future__ import annotations

from ..errors import FeaturelineError


class StreamStopped(FeaturelineError, RuntimeError):
    """The stream cannot go on without losing or double counting something: it stops and says why."""
