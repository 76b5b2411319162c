"""Panel hosts of the visual components in ``js/``: one ``AnyWidgetComponent`` per ES module.

The same files serve the notebook widgets (anywidget) and these Panel
components; the parameters here carry the names the modules read with
``model.get``. The classes are built on first use so that importing this
module does not need the JavaScript files.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Any

from physicsnemo_curator.monitor.assets import esm


@lru_cache(maxsize=None)
def _classes() -> dict[str, type]:
    import param
    from panel.custom import AnyWidgetComponent

    class ProgressView(AnyWidgetComponent):
        """Counts, bar, elapsed time, rate, ETA and worker states."""

        _esm = esm("progress")
        progress = param.Dict(default={})
        store_state = param.Dict(default={})

    class TimelineView(AnyWidgetComponent):
        """Canvas scatter of wall time per index; a click sets ``selected_index``."""

        _esm = esm("timeline")
        timeline = param.Bytes(default=b"")
        timeline_meta = param.Dict(default={})
        store_state = param.Dict(default={})
        selected_index = param.Integer(default=None, allow_None=True)

    class StageBarsView(AnyWidgetComponent):
        """Stacked own time per stage (per index, or totals), a stage filter and a statistics table."""

        _esm = esm("stage_bars")
        stages = param.Dict(default={})
        store_state = param.Dict(default={})
        selected_index = param.Integer(default=None, allow_None=True)

    classes: dict[str, type] = {"progress": ProgressView, "timeline": TimelineView, "stage_bars": StageBarsView}
    return classes


def component(name: str, **params: Any) -> Any:
    """Return a new Panel component for the visual component ``name`` (``"timeline"``, ...)."""
    return _classes()[name](**params)
