"""Performance tab: timeline, per-stage bars and statistics, memory and GPU histograms, slowest indices."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from physicsnemo_curator.dashboard import _html
from physicsnemo_curator.dashboard._components import component
from physicsnemo_curator.dashboard._data import DashboardData

logger = logging.getLogger(__name__)

ALL_STAGES = "All stages"


def stats_table(stats: list[dict[str, Any]], stage: str = ALL_STAGES) -> _html.Safe:
    """Return the per-stage statistics (count, mean, median, p95, max, total) as a table."""
    chosen = [s for s in stats if stage == ALL_STAGES or s["name"] == stage]
    rows = [
        (
            s["name"],
            s["count"],
            _html.seconds(s["mean"]),
            _html.seconds(s["median"]),
            _html.seconds(s["p95"]),
            _html.seconds(s["max"]),
            _html.seconds(s["total"]),
        )
        for s in chosen
    ]
    note = ""
    if any(s.get("approximate") for s in chosen):
        note = _html.tag("div", "Median and p95 are estimated from log-binned histograms (within 2.3 %).", class_="label")
    return _html.Safe(
        _html.table(("Stage", "Count", "Mean", "Median", "p95", "Max", "Total"), rows, test_id="stage-stats", empty="No stage times yet.")
        + note
    )


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
            title=title, height=240, sizing_mode="stretch_width", toolbar_location=None, x_axis_label="MiB", y_axis_label="indices"
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
        import panel as pn
        import panel_material_ui as pmui

        self.data = data
        self.on_select = on_select
        self.timeline = component("timeline", sizing_mode="stretch_width", height=330)
        self.timeline.param.watch(self._on_timeline_select, "selected_index")
        self.stage_bars = self._stage_bars()
        self.stage_filter = pmui.Select(label="Stage", options=[ALL_STAGES], value=ALL_STAGES, width=260)
        self.stage_filter.param.watch(lambda _event: self._draw_stats(), "value")
        self.stats = _html.pane()
        self.memory = _Histogram("Peak memory per index", "Memory was not tracked (track_memory=False).")
        self.gpu = _Histogram("Peak GPU memory per index", "GPU memory was not tracked (needs track_gpu=True, torch and CUDA).")
        self.slowest = _html.pane()
        stage_parts = [self.stage_bars] if self.stage_bars is not None else []
        self.panel = pmui.Column(
            pmui.Card(self.timeline, title="Timeline: wall time per index (click a point to select it)",
                      sizing_mode="stretch_width", collapsible=False),
            pmui.Card(*stage_parts, self.stage_filter, self.stats, title="Time per stage",
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

    def _stage_bars(self) -> Any:
        try:
            return component("stage_bars", sizing_mode="stretch_width", height=300)
        except (KeyError, FileNotFoundError, ValueError):
            return None

    def _on_timeline_select(self, event: Any) -> None:
        if event.new is not None:
            self.on_select(int(event.new))

    def _draw_stats(self) -> None:
        self.stats.object = stats_table(self.data.stage_stats(), self.stage_filter.value)

    def update(self, changed: bool) -> None:
        data = self.data
        state = {"state": data.state, "message": data.monitor.message}
        if self.timeline.store_state != state:
            self.timeline.store_state = state
        if not changed:
            return
        meta, buffer = data.timeline()
        self.timeline.param.update(timeline_meta=meta, timeline=buffer)
        if self.stage_bars is not None:
            self.stage_bars.param.update(**{k: v for k, v in {"stages": data.stage_bars(), "store_state": state}.items()
                                            if k in self.stage_bars.param})
        names = [ALL_STAGES] + [s["name"] for s in data.stages()]
        if list(self.stage_filter.options) != names:
            self.stage_filter.options = names
            if self.stage_filter.value not in names:
                self.stage_filter.value = ALL_STAGES
        self._draw_stats()
        self.memory.update(data.histogram("memory"))
        self.gpu.update(data.histogram("gpu_mem"))
        self.slowest.object = slowest_table(data.slowest(10))

    def select(self, index: int | None) -> None:
        """Mark ``index`` on the timeline (after a selection made elsewhere)."""
        if self.timeline.selected_index != index:
            self.timeline.selected_index = index
