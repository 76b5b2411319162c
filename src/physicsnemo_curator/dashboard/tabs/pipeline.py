"""Pipeline tab: structure cards, index query with pagination, index detail and artifacts."""

from __future__ import annotations

import json
import logging
import time
from typing import Any

from physicsnemo_curator.core.errors import IndexQueryError
from physicsnemo_curator.dashboard import _html
from physicsnemo_curator.dashboard._cli import IndexQuery, parse_index_query
from physicsnemo_curator.dashboard._data import PAGE_SIZES, DashboardData
from physicsnemo_curator.dashboard.widgets import WidgetRegistry

logger = logging.getLogger(__name__)

AGGREGATE_REDRAW_SECONDS = 10.0
"""Minimum seconds between two redraws of the run-wide artifact view while a run is live."""


def component_cards(meta: dict[str, Any], stages: list[dict[str, Any]]) -> _html.Safe:
    """Return one card per component (source, filters, sink) with its type and parameters."""
    try:
        config = json.loads(meta.get("config") or "{}")
    except ValueError:
        config = {}
    specs: list[tuple[str, Any]] = [("source", config.get("source"))]
    specs += [("filter", spec) for spec in config.get("filters") or []]
    specs.append(("sink", config.get("sink")))
    names = [s["name"] for s in stages]
    cards = []
    for position, (kind, spec) in enumerate(specs):
        if spec is None and kind == "sink":
            continue
        name = names[position] if position < len(names) else kind
        if kind == "source":
            name = meta.get("source_name") or name
        spec = spec if isinstance(spec, dict) else {}
        params = spec.get("params") or {}
        rows = [(key, json.dumps(value, default=str) if not isinstance(value, str) else value) for key, value in params.items()]
        body = _html.Safe(
            _html.tag("div", kind, class_="label")
            + _html.tag("div", name, class_="value", data_testid="component-name")
            + _html.tag("div", spec.get("type"), class_="label")
            + _html.table(("Parameter", "Value"), rows, empty="No parameters.")
        )
        cards.append(_html.tag("div", body, class_="psnc-card"))
    return _html.tag("div", _html.join(cards), class_="psnc-cards", data_testid="component-cards")


def query_table(rows: list[dict[str, Any]]) -> _html.Safe:
    out = [
        (
            r["index"],
            _html.badge(r["status"]),
            _html.seconds(None if r["wall_ns"] is None else r["wall_ns"] / 1e9),
            _html.size(r["peak_mem"] if r["peak_mem"] is not None else r["rss_peak"]),
            r["worker_id"],
            "" if r["error_type"] is None else f"{r['error_type']}: {r['error_message']}",
        )
        for r in rows
    ]
    return _html.table(("Index", "Status", "Wall", "Memory", "Worker", "Error"), out, test_id="query-rows", empty="No index matches.")


def index_summary(detail: dict[str, Any]) -> _html.Safe:
    wall = None if detail["wall_ns"] is None else detail["wall_ns"] / 1e9
    parts = [
        _html.tag("h3", f"Index {detail['index']}", data_testid="selected-index"),
        _html.tag(
            "div",
            _html.Safe(
                _html.card("Status", detail["status"], "detail-status")
                + _html.card("Wall time", _html.seconds(wall), "detail-wall")
                + _html.card("Peak memory", _html.size(detail["peak_mem"]), "detail-mem")
                + _html.card("Peak RSS", _html.size(detail["rss_peak"]), "detail-rss")
                + _html.card("Worker", detail["worker_id"], "detail-worker")
            ),
            class_="psnc-cards",
        ),
        _html.table(
            ("Stage", "Own wall time"),
            [(s["name"], _html.seconds(None if s["wall_ns"] is None else s["wall_ns"] / 1e9)) for s in detail["stages"]],
            empty="No stage times recorded.",
        ),
    ]
    error = detail.get("error")
    if error:
        parts.append(_html.tag("h4", f"{error['error_type']}: {error['error_message']}", data_testid="detail-error"))
        parts.append(_html.tag("div", error.get("traceback") or "", class_="psnc-pre"))
    return _html.join(parts)


def preview_table(preview: dict[str, Any]) -> _html.Safe:
    """Return a Parquet preview (first rows and column types) as an escaped table."""
    if preview.get("error"):
        return _html.tag("p", preview["error"], class_="psnc-empty")
    headers = [f"{c['name']} ({c['type']})" for c in preview["columns"]]
    caption = _html.tag("div", f"{preview['path']}: first {len(preview['rows'])} of {preview['num_rows']} rows", class_="label")
    return _html.Safe(caption + _html.table(headers, preview["rows"], test_id="parquet-preview", empty="The file has no rows."))


class PipelineTab:
    """The Pipeline tab of one browser session.

    Parameters
    ----------
    data : DashboardData
        The shared store access.
    registry : WidgetRegistry
        Finds the filters' own dashboard panels.
    """

    def __init__(self, data: DashboardData, registry: WidgetRegistry) -> None:
        import panel as pn
        import panel_material_ui as pmui

        self.data = data
        self.registry = registry
        self.query: IndexQuery = IndexQuery("all")
        self.page = 0
        self.total = 0
        self._drawn_key: tuple[Any, ...] | None = None
        self._drawn_at = 0.0

        self.cards = _html.pane()
        self.query_input = pmui.TextInput(label="Index query", value="all", placeholder="10-20, 1,5,10, all, completed, error", width=320)
        self.page_size = pmui.Select(label="Page size", options=list(PAGE_SIZES), value=PAGE_SIZES[0], width=120)
        self.prev_button = pmui.Button(label="Prev", variant="outlined", width=90)
        self.next_button = pmui.Button(label="Next", variant="outlined", width=90)
        self.page_label = _html.pane(sizing_mode="fixed", width=260)
        self.query_error = _html.pane()
        self.rows = _html.pane()
        self.selected = pmui.IntInput(label="Selected index", value=None, width=200)
        self.clear_button = pmui.Button(label="Show all artifacts", variant="outlined")
        # A panel-material-ui Column failed in Chromium ("reading 'top_panel'")
        # when its children were swapped for Bokeh plots; Panel's own does not.
        self.detail = pn.Column(sizing_mode="stretch_width")

        self.query_input.param.watch(self._on_query, "value")
        self.page_size.param.watch(self._on_page_size, "value")
        self.prev_button.on_click(lambda _event: self._turn(-1))
        self.next_button.on_click(lambda _event: self._turn(1))
        self.selected.param.watch(self._on_selected, "value")
        self.clear_button.on_click(lambda _event: setattr(self.selected, "value", None))

        self.panel = pmui.Column(
            pmui.Card(self.cards, title="Components", sizing_mode="stretch_width", collapsible=False),
            pmui.Card(
                pmui.Row(self.query_input, self.page_size, self.prev_button, self.next_button, self.page_label),
                self.query_error,
                self.rows,
                title="Indices",
                sizing_mode="stretch_width",
                collapsible=False,
            ),
            pmui.Card(
                pmui.Row(self.selected, self.clear_button),
                self.detail,
                title="Outputs and artifacts",
                sizing_mode="stretch_width",
                collapsible=False,
            ),
            sizing_mode="stretch_width",
            name="Pipeline",
        )

    # -- events -------------------------------------------------------------

    def _on_query(self, event: Any) -> None:
        try:
            self.query = parse_index_query(event.new)
        except IndexQueryError as exc:
            self.query_error.object = _html.tag("p", str(exc), class_="psnc-empty", data_testid="query-error")
            return
        self.query_error.object = ""
        self.page = 0
        self.show_rows()

    def _on_selected(self, event: Any) -> None:
        logger.debug("Pipeline tab selection %r -> %r", event.old, event.new)
        self.show_detail()

    def _on_page_size(self, _event: Any) -> None:
        self.page = 0
        self.show_rows()

    def _turn(self, step: int) -> None:
        pages = max(1, -(-self.total // int(self.page_size.value)))
        self.page = min(max(0, self.page + step), pages - 1)
        self.show_rows()

    # -- drawing --------------------------------------------------------------

    def select(self, index: int | None) -> None:
        """Select ``index`` (``None``: the whole run) and show its outputs and artifacts."""
        self.selected.value = index

    def show_rows(self) -> None:
        size = int(self.page_size.value)
        self.total, rows = self.data.query(self.query, self.page, size)
        pages = max(1, -(-self.total // size))
        self.page = min(self.page, pages - 1)
        self.page_label.object = _html.tag("span", f"Page {self.page + 1} of {pages} ({self.total} {'index' if self.total == 1 else 'indices'})", data_testid="page-label")
        self.prev_button.disabled = self.page == 0
        self.next_button.disabled = self.page >= pages - 1
        self.rows.object = query_table(rows)

    def show_detail(self, force: bool = False) -> None:
        index = self.selected.value
        if index is None:
            # The run-wide view reads every artifact file, so a live run redraws it at most every few seconds.
            now = time.monotonic()
            if not force and self._drawn_key and self._drawn_key[0] is None and now - self._drawn_at < AGGREGATE_REDRAW_SECONDS:
                return
            key: tuple[Any, ...] = (None, self.data.version)
        else:
            key = (int(index), self.data.index_detail(int(index)) is not None)
        if key == self._drawn_key and not force:
            return
        self._drawn_key = key
        self._drawn_at = time.monotonic()
        parts: list[Any] = []
        if index is not None:
            detail = self.data.index_detail(int(index))
            if detail is None:
                parts.append(_html.pane(_html.tag("p", f"Index {index} has no record yet.", class_="psnc-empty", data_testid="selected-index")))
                self.detail.objects = parts
                return
            parts.append(_html.pane(index_summary(detail)))
        payload = self.data.artifacts(None if index is None else int(index))
        outputs = payload["outputs"]
        title = "Output files" if index is not None else "Recent output files"
        parts.append(_html.pane(
            _html.Safe(_html.tag("h4", title) + _html.table(("Index", "Path", "Exists"), [(o["index"], o["path"], o["exists"]) for o in outputs],
                                                               test_id="detail-outputs", empty="No output files.")),
        ))
        classes = self.data.filter_classes()
        for group in payload["groups"]:
            parts.extend(self._group_view(group, classes, index))
        if not payload["groups"]:
            parts.append(_html.pane(_html.tag("p", "No filter artifacts recorded.", class_="psnc-empty")))
        self.detail.objects = parts

    def _group_view(self, group: dict[str, Any], classes: dict[int, type], index: int | None) -> list[Any]:
        stage = group["stage"]
        files = group["files"]
        heading = _html.tag("h4", f"Filter {stage}: {len(files)} artifact file(s)", data_testid="artifact-group")
        listing = _html.table(
            ("Index", "Path", "Exists"),
            [("flush" if f["index"] is None else f["index"], f["path"], f["exists"]) for f in files[:50]],
            empty="No files.",
        )
        out: list[Any] = [_html.pane(_html.Safe(heading + listing))]
        for f in files:
            if f.get("preview"):
                out.append(_html.pane(preview_table(f["preview"])))
        widget = self.registry.find(stage, classes.get(group["position"]))
        if widget is not None:
            paths = [] if index is None else self.data.artifact_paths(group["position"], int(index))
            if not paths:
                paths = self.data.artifact_paths(group["position"], None)
            view = self.registry.render(widget, stage, paths, None if index is None else int(index))
            if view is not None:
                out.append(view)
        return out

    def update(self, changed: bool) -> None:
        if not changed:
            return
        self.cards.object = component_cards(self.data.meta(), self.data.stages())
        self.show_rows()
        self.show_detail()
