"""Performance tab: timeline, per-stage bars and statistics, memory and GPU histograms, slowest indices."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from physicsnemo_curator.dashboard import _html
from physicsnemo_curator.dashboard._components import component
from physicsnemo_curator.dashboard._data import DashboardData

logger = logging.getLogger(__name__)

def slowest_table(rows: list[dict[str, Any]]) -> _html.Safe:
    out = [
        (r["index"], _html.seconds(r["wall_s"]), _html.size(r["memory_bytes"]), _html.badge(r["status"]), r["worker_id"])
        for r in rows
    ]
    return _html.table(("Index", "Wall time", "Memory", "Status", "Worker"), out, test_id="slowest", empty="No index recorded yet.")


class _Histogram:
    """A Bokeh bar histogram whose data source is replaced on update."""

    def __init__(self, title: str, empty_text: str) -> None:
        import panel as pn
        from bokeh.models import ColumnDataSource
        from bokeh.plotting import figure

        self.empty_text = empty_text
        self.source = ColumnDataSource({"left": [], "right": [], "count": []})
        self.figure = figure(
            title=title, height=240, sizing_mode="stretch_width", toolbar_location=None, x_axis_type="log",
            x_axis_label="MiB (log scale)", y_axis_label="indices"
        )
        self.figure.quad(left="left", right="right", bottom=0, top="count", source=self.source, color="#76b900", line_color="white")
        self.note = _html.pane()
        self.panel = pn.Column(pn.pane.Bokeh(self.figure, sizing_mode="stretch_width"), self.note, sizing_mode="stretch_width")

    def update(self, payload: dict[str, Any]) -> None:
        edges = [e / 2**20 for e in payload["edges"]]
        self.source.data = {"left": edges[:-1], "right": edges[1:], "count": list(payload["counts"])}
        self.note.object = "" if payload["count"] else _html.tag("p", self.empty_text, class_="psnc-empty")


class PerformanceTab:
    """The Performance tab of one browser session.

    Parameters
    ----------
    data : DashboardData
        The shared store access.
    on_select : callable
        Called with the index a click on the timeline selected.
    """

    def __init__(self, data: DashboardData, on_select: Callable[[int | None], None]) -> None:
        import panel_material_ui as pmui

        self.data = data
        self.on_select = on_select
        self.timeline = component("timeline", sizing_mode="stretch_width", height=330)
        self.timeline.param.watch(self._on_timeline_select, "selected_index")
        self.stage_bars = component("stage_bars", sizing_mode="stretch_width", min_height=300)
        self.stage_bars.param.watch(self._on_timeline_select, "selected_index")
        self.memory = _Histogram("Peak memory per index", "Memory was not tracked (track_memory=False).")
        self.gpu = _Histogram("Peak GPU memory per index", "GPU memory was not tracked (needs track_gpu=True, torch and CUDA).")
        self.slowest = _html.pane()
        self.panel = pmui.Column(
            pmui.Card(self.timeline, title="Timeline: wall time per index (click a point to select it)",
                      sizing_mode="stretch_width", collapsible=False),
            pmui.Card(self.stage_bars, title="Time per stage (stage filter and mean, median, p95, max)",
                      sizing_mode="stretch_width", collapsible=False),
            pmui.Row(
                pmui.Card(self.memory.panel, title="Memory", sizing_mode="stretch_width", collapsible=False),
                pmui.Card(self.gpu.panel, title="GPU memory", sizing_mode="stretch_width", collapsible=False),
                sizing_mode="stretch_width",
            ),
            pmui.Card(self.slowest, title="10 slowest indices", sizing_mode="stretch_width", collapsible=False),
            sizing_mode="stretch_width",
            name="Performance",
        )

    def _on_timeline_select(self, event: Any) -> None:
        logger.debug("Index %r selected in %s", event.new, type(event.obj).__name__)
        if event.new is not None:
            self.on_select(int(event.new))

    def update(self, changed: bool) -> None:
        data = self.data
        state = {"state": data.state, "message": data.monitor.message}
        for view in (self.timeline, self.stage_bars):
            if view.store_state != state:
                view.store_state = state
        if not changed:
            return
        meta, buffer = data.timeline()
        self.timeline.param.update(timeline_meta=meta, timeline=buffer)
        self.stage_bars.stages = data.stage_bars()
        self.memory.update(data.histogram("memory"))
        self.gpu.update(data.histogram("gpu_mem"))
        self.slowest.object = slowest_table(data.slowest(10))

    def select(self, index: int | None) -> None:
        """Mark ``index`` on the timeline (after a selection made elsewhere)."""
        for view in (self.timeline, self.stage_bars):
            if view.selected_index != index:
                view.selected_index = index
