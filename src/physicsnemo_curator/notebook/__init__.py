"""Live notebook widgets on a run store, and the ``%psnc_monitor`` magic.

Each widget polls its store on a background thread, so it keeps updating
while the kernel is busy in ``run_pipeline``. Polling stops when the widget
is closed, at kernel shutdown, and once the run has ended and nothing
changed for a while.

>>> from physicsnemo_curator.notebook import MonitorWidget  # doctest: +SKIP
>>> MonitorWidget("pipeline.db", interval=1.0)  # doctest: +SKIP
"""

from __future__ import annotations

try:
    import anywidget  # noqa: F401
    import traitlets  # noqa: F401
except ImportError as exc:
    raise ImportError(
        "The notebook widgets need anywidget and ipywidgets: pip install 'physicsnemo-curator[notebook]'."
    ) from exc

from physicsnemo_curator.notebook._widgets import (
    ArtifactPreviewWidget,
    MonitorWidget,
    ProgressWidget,
    StageBarsWidget,
    TimelineWidget,
)

__all__ = ["ArtifactPreviewWidget", "MonitorWidget", "ProgressWidget", "StageBarsWidget", "TimelineWidget"]
