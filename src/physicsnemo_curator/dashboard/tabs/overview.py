"""Overview tab: progress cards, workers, pipeline structure, recent outputs and errors."""

from __future__ import annotations

from typing import Any

from physicsnemo_curator.dashboard import _html
from physicsnemo_curator.dashboard._data import DashboardData
from physicsnemo_curator.monitor.payloads import format_duration


def progress_cards(progress: dict[str, Any]) -> _html.Safe:
    """Return the progress cards: completed, failed, remaining, elapsed, rate and ETA."""
    rate = progress.get("rate_per_s")
    total = progress.get("total")
    cards = [
        _html.card("Completed", progress["completed"], "completed"),
        _html.card("Failed", progress["failed"], "failed"),
        _html.card("Remaining", "-" if progress.get("remaining") is None else progress["remaining"], "remaining"),
        _html.card("Total", "-" if total is None else total, "total"),
        _html.card("Elapsed", format_duration(progress.get("elapsed_s")), "elapsed"),
        _html.card("Rate", "-" if not rate else f"{rate:.2f} /s", "rate"),
        _html.card("ETA", format_duration(progress.get("eta_s")), "eta"),
        _html.card("State", progress.get("state", "-"), "state"),
    ]
    return _html.tag("div", _html.join(cards), class_="psnc-cards")


def workers_table(workers: list[dict[str, Any]]) -> _html.Safe:
    rows = [
        (
            w.get("worker_id"),
            w.get("host"),
            w.get("pid"),
            _html.badge(w.get("state")),
            w.get("current_index"),
            w.get("n_done"),
            "-" if w.get("heartbeat_age_s") is None else f"{w['heartbeat_age_s']:.1f} s ago",
            w.get("exit_reason"),
        )
        for w in workers
    ]
    return _html.table(
        ("Worker", "Host", "PID", "State", "Current index", "Done", "Heartbeat", "Exit reason"),
        rows,
        test_id="workers",
        empty="No workers registered yet.",
    )


def structure_table(stats: list[dict[str, Any]]) -> _html.Safe:
    rows = [
        (s["position"], s["name"], s["kind"], s["count"], _html.seconds(s["mean"]), _html.seconds(s["total"]))
        for s in stats
    ]
    return _html.table(("#", "Stage", "Kind", "Indices", "Mean", "Total"), rows, test_id="structure", empty="No stages recorded yet.")


def outputs_table(outputs: list[dict[str, Any]]) -> _html.Safe:
    rows = [(o["index"], o["path"]) for o in outputs]
    return _html.table(("Index", "Output file"), rows, test_id="outputs", empty="No output files recorded yet.")


def errors_table(errors: list[dict[str, Any]]) -> _html.Safe:
    rows = [(e["index"], e["error_type"], _html.tag("div", e["error_message"], class_="psnc-pre")) for e in errors]
    return _html.table(("Index", "Error", "Message"), rows, test_id="errors", empty="No failures.")


class OverviewTab:
    """The Overview tab of one browser session."""

    def __init__(self, data: DashboardData) -> None:
        import panel_material_ui as pmui

        self.data = data
        self.message = _html.pane()
        self.cards = _html.pane()
        self.workers = _html.pane()
        self.structure = _html.pane()
        self.outputs = _html.pane()
        self.errors = _html.pane()
        self.panel = pmui.Column(
            self.message,
            self.cards,
            pmui.Card(self.workers, title="Workers", sizing_mode="stretch_width", collapsible=False),
            pmui.Card(self.structure, title="Pipeline structure", sizing_mode="stretch_width", collapsible=False),
            pmui.Row(
                pmui.Card(self.outputs, title="Recent output files (20)", sizing_mode="stretch_width", collapsible=False),
                pmui.Card(self.errors, title="Error log (10 most recent)", sizing_mode="stretch_width", collapsible=False),
                sizing_mode="stretch_width",
            ),
            sizing_mode="stretch_width",
            name="Overview",
        )

    def update(self, changed: bool) -> None:
        """Redraw the time-dependent cards always, the rest only when the data changed."""
        data = self.data
        progress = data.progress()
        self.cards.object = progress_cards(progress)
        self.workers.object = workers_table(progress["workers"])
        message = data.monitor.message
        self.message.object = "" if not message else _html.tag("p", message, class_="psnc-empty", data_testid="store-message")
        if changed:
            self.structure.object = structure_table(data.stage_stats())
            self.outputs.object = outputs_table(data.recent_outputs(20))
            self.errors.object = errors_table(data.errors(10))
