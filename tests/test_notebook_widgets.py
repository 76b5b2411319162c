"""Notebook widgets without a browser: trait contents after polls, polling lifecycle, no leaks."""

from __future__ import annotations

import gc
import os
import re
import sys
import threading
import time
from pathlib import Path

import pytest

pytest.importorskip("anywidget")

from pipeline_parts import RangeSource, SleepFilter, TextSink  # noqa: E402

from physicsnemo_curator import Filter, Pipeline, run_pipeline  # noqa: E402
from physicsnemo_curator.monitor import assets, decode_timeline  # noqa: E402
from physicsnemo_curator.notebook import (  # noqa: E402
    ArtifactPreviewWidget,
    MonitorWidget,
    ProgressWidget,
    StageBarsWidget,
    TimelineWidget,
)
from physicsnemo_curator.notebook import _poller  # noqa: E402
from physicsnemo_curator.notebook._run_progress import NotebookProgress  # noqa: E402


def _pipeline(tmp_path: Path, n: int = 12, fail_on: list[int] | None = None, sleep: float = 0.0) -> Pipeline:
    return Pipeline(
        source=RangeSource(n, sleep=sleep, fail_on=fail_on or []),
        filters=[SleepFilter()],
        sink=TextSink(str(tmp_path / "out")),
        db_file=tmp_path / "run.db",
    )


def _wait(predicate, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.05)
    raise AssertionError("condition not reached in time")


def test_monitor_traits_after_polls(tmp_path):
    pipeline = _pipeline(tmp_path, n=12, fail_on=[5])
    widget = MonitorWidget(tmp_path / "run.db", autostart=False)
    try:
        widget.refresh()
        assert widget.store_state["state"] == "waiting"
        assert "does not exist yet" in widget.store_state["message"]
        assert widget.timeline == b""

        run_pipeline(pipeline, indices=range(6), on_error="continue", progress=False)
        first = widget.refresh()
        assert first.reload
        assert widget.store_state["state"] == "finished"
        assert widget.store_state["db_path"] == str(tmp_path / "run.db")
        assert (widget.progress["completed"], widget.progress["failed"], widget.progress["remaining"]) == (5, 1, 6)
        assert widget.timeline_meta["n"] == 6
        columns = decode_timeline(widget.timeline_meta, widget.timeline)
        assert sorted(columns["idx"].astype(int).tolist()) == list(range(6))
        assert columns["status"][columns["idx"] == 5].tolist() == [1]
        assert widget.stages["stages"] == ["source", "sleepy", "sink"]
        assert widget.stages["indices"] == list(range(6))
        assert len(widget.artifacts["outputs"]) == 5

        run_pipeline(pipeline, indices=range(6, 12), on_error="continue", progress=False)
        second = widget.refresh()
        assert not second.reload
        assert second.n_rows == 6
        assert widget.progress["completed"] == 11
        assert widget.progress["remaining"] == 0
        assert widget.timeline_meta["n"] == 12

        widget.selected_index = 8
        assert widget.artifacts["index"] == 8
        assert [Path(o["path"]).name for o in widget.artifacts["outputs"]] == ["8.txt"]

        assert widget.refresh().changed is False
    finally:
        widget.close()


def test_single_component_widgets_hold_only_their_parts(tmp_path):
    run_pipeline(_pipeline(tmp_path, n=4), progress=False)
    db = tmp_path / "run.db"
    widgets = [ProgressWidget(db, autostart=False), TimelineWidget(db, autostart=False),
               StageBarsWidget(db, autostart=False), ArtifactPreviewWidget(db, autostart=False)]
    try:
        for w in widgets:
            w.refresh()
        progress, timeline, stages, artifacts = widgets
        assert progress.progress["completed"] == 4
        assert not progress.has_trait("timeline")
        assert timeline.timeline_meta["n"] == 4
        assert stages.stages["mode"] == "per_index"
        assert len(artifacts.artifacts["outputs"]) == 4
        for w, name in zip(widgets, ("progress", "timeline", "stage_bars", "artifact_preview"), strict=True):
            assert w._esm == assets.esm(name)
    finally:
        for w in widgets:
            w.close()


def test_polling_follows_same_process_run(tmp_path):
    pipeline = _pipeline(tmp_path, n=15, sleep=0.02)
    widget = ProgressWidget(tmp_path / "run.db", interval=0.05, idle_stop=0.3)
    try:
        assert widget.polling
        seen: list[int] = []

        def watch():
            while widget.polling:
                value = widget.progress.get("completed", 0)
                if not seen or seen[-1] != value:
                    seen.append(value)
                time.sleep(0.01)

        watcher = threading.Thread(target=watch)
        watcher.start()
        run_pipeline(pipeline, progress=False)
        _wait(lambda: not widget.polling)
        watcher.join()
        assert widget.progress["completed"] == 15
        assert len(seen) >= 3
        assert seen == sorted(seen)
        assert widget.store_state["state"] == "finished"
    finally:
        widget.close()


def test_invalid_store_shows_message(tmp_path):
    path = tmp_path / "notes.db"
    path.write_text("plain text")
    widget = MonitorWidget(path, autostart=False)
    try:
        widget.refresh()
        assert widget.store_state["state"] == "invalid"
        assert "not an SQLite database" in widget.store_state["message"]
        assert widget.timeline == b""
    finally:
        widget.close()


def test_bad_arguments_are_rejected_with_a_hint(tmp_path):
    with pytest.raises(TypeError, match=r"unknown keyword argument\(s\) 'intervall' \(did you mean 'interval'\?\)"):
        MonitorWidget(tmp_path / "x.db", intervall=2)
    with pytest.raises(ValueError, match="interval must be a positive number of seconds, got 0"):
        MonitorWidget(tmp_path / "x.db", interval=0)
    with pytest.raises(TypeError, match="pass the path of a run store"):
        MonitorWidget(42)


def _open_fds() -> int:
    return len(os.listdir(f"/proc/{os.getpid()}/fd"))


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="counts open files through /proc")
def test_twenty_monitors_leak_no_thread_or_file(tmp_path):
    run_pipeline(_pipeline(tmp_path, n=5), progress=False)
    db = tmp_path / "run.db"
    # One widget first, so one-time imports and caches do not count as leaks.
    MonitorWidget(db, interval=0.02).close()
    gc.collect()
    threads_before = threading.active_count()
    fds_before = _open_fds()

    widgets = [MonitorWidget(db, interval=0.02) for _ in range(20)]
    _wait(lambda: all(w.store_state.get("state") == "finished" for w in widgets))
    assert threading.active_count() >= threads_before + 20
    assert _open_fds() > fds_before
    for w in widgets:
        w.close()
    gc.collect()

    assert threading.active_count() == threads_before
    assert _poller.running() == 0
    assert _open_fds() == fds_before
    assert not any(w.polling for w in widgets)


def test_polling_stops_after_run_ends(tmp_path):
    run_pipeline(_pipeline(tmp_path, n=3), progress=False)
    widget = MonitorWidget(tmp_path / "run.db", interval=0.02, idle_stop=0.2)
    try:
        _wait(lambda: not widget.polling)
        assert widget.store_state["state"] == "finished"
        widget.start()
        assert widget.polling
    finally:
        widget.close()
    with pytest.raises(RuntimeError, match="is closed; create a new widget"):
        widget.start()


def test_waiting_widget_keeps_polling_until_the_store_appears(tmp_path):
    widget = ProgressWidget(tmp_path / "run.db", interval=0.05, idle_stop=0.05)
    try:
        time.sleep(0.3)
        assert widget.polling
        assert widget.store_state["state"] == "waiting"
        run_pipeline(_pipeline(tmp_path, n=3), progress=False)
        _wait(lambda: widget.progress.get("completed") == 3)
    finally:
        widget.close()


def test_notebook_progress_counts_and_workers(tmp_path):
    run_pipeline(_pipeline(tmp_path, n=3), progress=False)
    shown = []
    now = [100.0]
    progress = NotebookProgress(10, str(tmp_path / "run.db"), display=shown.append, clock=lambda: now[0])
    assert shown == [progress.widget]
    assert progress.widget.store_state["db_path"] == str(tmp_path / "run.db")
    now[0] += 2.0
    progress.update(4, 1)
    p = progress.widget.progress
    assert (p["completed"], p["failed"], p["remaining"]) == (3, 1, 6)
    assert p["rate_per_s"] == pytest.approx(2.0)
    assert p["eta_s"] == pytest.approx(3.0)
    assert p["worker_states"]["stopped"] == 1
    now[0] += 3.0
    progress.update(10, 1)
    progress.close()
    assert progress.widget.progress["state"] == "finished"
    assert progress.widget.store_state["state"] == "finished"
    assert progress.widget.progress["remaining"] == 0


def test_assets_find_the_component_files():
    for name in assets.COMPONENTS:
        path = assets.js_path(name)
        assert path.is_file()
        text = path.read_text()
        assert "export default" in text
        assert not re.search(r"^\s*import[\s{*]", text, re.M), f"{name}.js has a static import"
        assert not re.search(r"import\(\s*[\"'`]", text), f"{name}.js imports a module by name"
    monitor = assets.esm("monitor")
    assert "__PSNC_COMPONENT_SOURCES__" not in monitor
    for name in ("progress", "timeline", "stage_bars", "artifact_preview"):
        assert assets.js_path(name).read_text()[:60].replace("\n", "\\n") in monitor
    with pytest.raises(ValueError, match="Unknown visual component 'chart'"):
        assets.js_path("chart")


class ViewFilter(Filter):
    """Writes one text artifact per index and shows a Markdown view of them."""

    name = "viewed"

    def __init__(self, out_dir: str, broken_view: bool = False) -> None:
        self.out_dir = out_dir
        self.broken_view = broken_view
        self._written: list[str] = []

    def __call__(self, items):
        for item in items:
            path = Path(self.out_dir) / f"artifact_{item}.txt"
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(str(item))
            self._written.append(str(path))
            yield item

    def artifacts(self):
        written, self._written = self._written, []
        return written

    @classmethod
    def dashboard_panel(cls, artifact_paths, selected_index=None):
        import panel as pn

        if any("artifact_2" in p for p in artifact_paths):
            raise RuntimeError("view of <index 2> is broken")
        names = ", ".join(Path(p).name for p in artifact_paths)
        return pn.pane.Markdown(f"### Files of index {selected_index}\n\n{names}")


def test_artifact_preview_renders_the_filters_own_view(tmp_path):
    pytest.importorskip("panel")
    pipeline = Pipeline(
        source=RangeSource(3), filters=[ViewFilter(str(tmp_path / "art"))], sink=TextSink(str(tmp_path / "out")),
        db_file=tmp_path / "run.db",
    )
    run_pipeline(pipeline, progress=False)
    widget = ArtifactPreviewWidget(tmp_path / "run.db", autostart=False)
    try:
        widget.refresh()
        widget.selected_index = 1
        (group,) = widget.artifacts["groups"]
        assert group["stage"] == "viewed"
        assert group["has_panel"] is True
        assert [Path(f["path"]).name for f in group["files"]] == ["artifact_1.txt"]
        html = group["panel_html"]
        assert group["panel_error"] is None
        assert html.lstrip().lower().startswith("<!doctype html")
        assert "Files of index 1" in html
        assert "artifact_1.txt" in html
        assert not re.search(r"<script[^>]*src=[\"']https?://", html), "the view loads a script from the network"
        assert not re.search(r"https?://[^\"'\s]+\.css", html), "the view loads a stylesheet from the network"

        widget.selected_index = 2
        (group,) = widget.artifacts["groups"]
        assert group["panel_html"] is None
        assert group["panel_error"] == "ViewFilter.dashboard_panel() failed: RuntimeError: view of <index 2> is broken"
    finally:
        widget.close()


def test_costly_timeline_is_sent_on_a_later_poll(tmp_path, monkeypatch):
    from physicsnemo_curator.notebook import _widgets

    pipeline = _pipeline(tmp_path, n=8)
    run_pipeline(pipeline, indices=range(4), progress=False)
    monkeypatch.setattr(_widgets, "TIMELINE_COST_FACTOR", 1e9)
    widget = TimelineWidget(tmp_path / "run.db", autostart=False)
    try:
        widget.refresh()  # a first load is always sent; the next rebuild is due in hours
        assert widget.timeline_meta["n"] == 4
        run_pipeline(pipeline, indices=range(4, 8), progress=False)
        assert widget.refresh().n_rows == 4
        assert widget.timeline_meta["n"] == 4
        widget._timeline_due = 0.0
        assert widget.refresh().changed is False
        assert widget.timeline_meta["n"] == 8
    finally:
        widget.close()
