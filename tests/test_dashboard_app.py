"""The dashboard's data access, tabs and filter widgets, driven from Python without a browser."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence

import pytest

pytest.importorskip("panel")
pytest.importorskip("panel_material_ui")

from physicsnemo_curator.core.base import Filter
from physicsnemo_curator.dashboard import DashboardApp
from physicsnemo_curator.dashboard._cli import parse_index_query
from physicsnemo_curator.dashboard._data import DashboardData
from physicsnemo_curator.dashboard._html import esc, table
from physicsnemo_curator.dashboard._synthetic import write_store
from physicsnemo_curator.dashboard.widgets import WidgetRegistry

MARKUP = '<img src=x onerror="window.__xss=1"><script>window.__xss=2</script>`;window.__xss=3;//${alert(1)}'


class BrokenFilter(Filter):
    name = "Broken<b>filter</b>"

    @classmethod
    def dashboard_panel(cls, artifact_paths: Sequence[str], selected_index: int | None = None):  # noqa: ANN206
        raise ValueError(f"cannot draw {MARKUP}")


class TableFilter(Filter):
    name = "TableFilter"
    calls: list[tuple[list[str], int | None]] = []

    @classmethod
    def dashboard_panel(cls, artifact_paths: Sequence[str], selected_index: int | None = None):  # noqa: ANN206
        import panel as pn

        cls.calls.append((list(artifact_paths), selected_index))
        return pn.pane.Str(f"{len(artifact_paths)} paths for {selected_index}")

    @classmethod
    def dashboard_layout_hints(cls) -> dict:
        return {"min_height": 123}


def _config(*filters: type) -> dict:
    return {
        "source": {"type": "synthetic:Source", "params": {"path": MARKUP}},
        "filters": [{"type": f"{cls.__module__}:{cls.__qualname__}", "params": {"note": MARKUP}} for cls in filters],
        "sink": {"type": "synthetic:Sink", "params": {}},
    }


@pytest.fixture
def store(tmp_path):
    stages = (("source", "source"), (BrokenFilter.name, "filter"), (TableFilter.name, "filter"), ("sink", "sink"))
    return write_store(
        tmp_path / "run.db",
        60,
        total=100,
        error_every=6,
        stages=stages,
        config=_config(BrokenFilter, TableFilter),
        source_name="Source" + MARKUP,
        host="node" + MARKUP,
        error_message="failed " + MARKUP,
        output_pattern=str(tmp_path / "out" / ("{idx}" + "_x.npz")),
        artifact_paths={1: [str(tmp_path / "broken_{idx}.bin")], 2: [str(tmp_path / "table_{idx}.bin")]},
        running=True,
    )


def _digest(path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _html_of(*panes) -> str:
    return "".join(str(getattr(p, "object", "")) for p in panes)


def test_data_polls_incrementally(tmp_path):
    db = write_store(tmp_path / "inc.db", 100, running=True)
    data = DashboardData(db, min_gap=0)
    assert data.poll() == 1
    assert data.last_rows == 100
    assert data.poll() == 1
    write_store(db, 25, start=100, running=True)
    assert data.poll() == 2
    assert data.last_rows == 25
    assert data.progress()["completed"] == 125
    data.close()


def test_data_poll_gap_shares_one_read(tmp_path):
    db = write_store(tmp_path / "gap.db", 10)
    data = DashboardData(db, min_gap=60)
    data.poll()
    write_store(db, 5, start=10)
    data.poll()
    assert data.polls == 1
    data.poll(force=True)
    assert data.polls == 2
    assert data.progress()["completed"] == 15
    data.close()


def test_query_pages_and_statuses(store):
    data = DashboardData(store)
    data.poll()
    total, rows = data.query(parse_index_query("all"), page=1, page_size=20)
    assert total == 60
    assert [r["index"] for r in rows] == list(range(20, 40))
    total, rows = data.query(parse_index_query("error"), page=0, page_size=50)
    assert total == 10
    assert all(r["status"] == "error" for r in rows)
    assert rows[0]["error_message"] == "failed " + MARKUP
    total, rows = data.query(parse_index_query("5-9"), page=0, page_size=20)
    assert [r["index"] for r in rows] == [5, 6, 7, 8, 9]
    total, rows = data.query(parse_index_query("3,70,1"), page=0, page_size=20)
    assert [r["index"] for r in rows] == [1, 3]
    data.close()


def test_index_detail_and_artifacts(store, tmp_path):
    data = DashboardData(store)
    data.poll()
    detail = data.index_detail(5)
    assert detail["status"] == "error"
    assert detail["error"]["error_message"] == "failed " + MARKUP
    ok = data.index_detail(4)
    assert [s["name"] for s in ok["stages"]] == ["source", BrokenFilter.name, TableFilter.name, "sink"]
    assert data.index_detail(999) is None
    assert data.artifact_paths(2, 4) == [str(tmp_path / "table_4.bin")]
    assert len(data.artifact_paths(2, None)) == 50
    data.close()


def test_html_escapes_markup():
    text = esc(MARKUP)
    assert "<" not in text
    assert ">" not in text
    assert "`" not in text
    assert "$" not in text
    assert "{" not in text
    markup = table(("a",), [(MARKUP,)])
    assert "<img" not in markup
    assert "<script" not in markup
    assert "&lt;img src=x onerror=&quot;" in markup


def test_session_shows_counts_and_escapes_everything(store):
    before = _digest(store)
    app = DashboardApp(store)
    session = app.session()
    overview = session.overview
    cards = overview.cards.object
    assert 'data-testid="completed">50<' in cards
    assert 'data-testid="failed">10<' in cards
    assert 'data-testid="remaining">40<' in cards
    assert "live" in cards

    pieces = _html_of(overview.workers, overview.structure, overview.outputs, overview.errors, session.run_label,
                      session.pipeline.cards, session.pipeline.rows, session.performance.slowest)
    assert "node&lt;img" in pieces
    assert "Broken&lt;b&gt;filter&lt;/b&gt;" in pieces
    assert "failed &lt;img" in pieces
    assert "Source&lt;img" in pieces
    assert "&lt;script&gt;" in pieces
    for bad in ("<img", "<script", "<b>filter"):
        assert bad not in pieces
    assert "PhysicsNeMo Curator" == session.page.title
    assert _digest(store) == before
    app.data.close()


def test_overview_recent_outputs_and_errors(store):
    app = DashboardApp(store)
    session = app.session()
    outputs = session.overview.outputs.object
    assert outputs.count("<tr>") == 1 + 20
    assert "58_x.npz" in outputs
    assert "59_x.npz" not in outputs
    errors = session.overview.errors.object
    assert errors.count("<tr>") == 1 + 10
    assert ">59<" in errors
    assert ">5<" in errors
    app.data.close()


def test_pipeline_query_box_and_pages(store):
    session = DashboardApp(store).session()
    tab = session.pipeline
    assert tab.rows.object.count("<tr>") == 1 + 20
    assert "Page 1 of 3 (60 indices)" in tab.page_label.object
    tab.next_button.clicks += 1
    assert "Page 2 of 3" in tab.page_label.object
    tab.page_size.value = 50
    assert tab.rows.object.count("<tr>") == 1 + 50
    assert "Page 1 of 2" in tab.page_label.object
    tab.query_input.value = "10-"
    assert "Accepted forms" in tab.query_error.object
    tab.query_input.value = "error"
    assert tab.query_error.object == ""
    assert "Page 1 of 1 (10 indices)" in tab.page_label.object
    tab.query_input.value = "10-12"
    assert tab.rows.object.count("<tr>") == 1 + 3


def test_timeline_click_selects_index_in_pipeline_tab(store):
    session = DashboardApp(store).session()
    session.performance.timeline.selected_index = 7
    assert session.pipeline.selected.value == 7
    shown = _html_of(*session.pipeline.detail.objects)
    assert 'data-testid="selected-index">Index 7<' in shown
    session.pipeline.selected.value = 11
    assert session.performance.timeline.selected_index == 11
    assert session.performance.stage_bars.selected_index == 11


def test_timeline_and_stage_payloads_reach_components(store):
    session = DashboardApp(store).session()
    timeline = session.performance.timeline
    assert timeline.timeline_meta["n"] == 60
    assert len(timeline.timeline) > 60 * 8
    assert session.performance.stage_bars.stages["n_indices"] == 60
    assert timeline.store_state["state"] == "live"


def test_broken_widget_shows_error_card_and_rest_works(store):
    registry = WidgetRegistry(load_entry_points=False)
    TableFilter.calls.clear()
    session = DashboardApp(store, registry=registry).session()
    session.pipeline.selected.value = 4
    objects = session.pipeline.detail.objects
    text = _html_of(*objects)
    assert "The dashboard panel of filter Broken&lt;b&gt;filter&lt;/b&gt; failed" in text
    assert "ValueError: cannot draw &lt;img" in text
    assert "<img" not in text
    assert TableFilter.calls[-1] == ([str(store.parent / "table_4.bin")], 4)
    rendered = [o for o in objects if getattr(o, "object", None) == "1 paths for 4"]
    assert rendered
    assert rendered[0].min_height == 123
    assert 'data-testid="selected-index">Index 4<' in text


def test_registry_finds_builtins_and_rejects_plain_filters():
    registry = WidgetRegistry()
    names = set(registry.widgets) | set(registry.problems)
    assert {"mean", "atomic_stats"} <= names
    for name, cls in registry.widgets.items():
        assert cls.dashboard_panel.__func__ is not Filter.dashboard_panel.__func__, name
    with pytest.raises(TypeError, match="does not override dashboard_panel"):
        registry.register("plain", Filter)
    registry.register("table", TableFilter)
    assert registry.find("TableFilter") is TableFilter
    assert registry.find("unknown") is None
    assert registry.find("x", configured=BrokenFilter) is BrokenFilter


def test_registry_loads_entry_points(monkeypatch):
    from importlib.metadata import EntryPoint

    import physicsnemo_curator.dashboard.widgets as widgets

    declared = [
        EntryPoint("table", f"{__name__}:TableFilter", widgets.ENTRY_POINT_GROUP),
        EntryPoint("missing", "no_such_module_xyz:Nothing", widgets.ENTRY_POINT_GROUP),
    ]
    monkeypatch.setattr(widgets, "entry_points", lambda group: declared if group == widgets.ENTRY_POINT_GROUP else [])
    registry = WidgetRegistry()
    assert registry.widgets["table"] is TableFilter
    assert "no_such_module_xyz" in registry.problems["missing"]


def test_waiting_store_then_appears(tmp_path):
    db = tmp_path / "later.db"
    app = DashboardApp(db)
    session = app.session()
    assert "Waiting for run" in session.overview.message.object
    assert session.auto.value is True
    write_store(db, 3)
    session.refresh(force=True)
    assert session.overview.message.object == ""
    assert 'data-testid="completed">3<' in session.overview.cards.object


def test_refresh_updates_last_updated_and_counts(tmp_path):
    db = write_store(tmp_path / "live.db", 10, total=40, running=True)
    session = DashboardApp(db).session()
    assert session.auto.value is True
    assert "Updated" in session.updated.object
    write_store(db, 10, start=10, total=40, running=True)
    session.refresh_button.clicks += 1
    assert 'data-testid="completed">20<' in session.overview.cards.object


def test_finished_run_starts_without_auto_refresh(tmp_path):
    db = write_store(tmp_path / "done.db", 10)
    session = DashboardApp(db).session()
    assert session.auto.value is False
    assert "every 2 s" in session.auto.label


def test_component_cards_show_config_values(store):
    session = DashboardApp(store).session()
    cards = session.pipeline.cards.object
    assert cards.count('class="psnc-card"') == 4
    assert "test_dashboard_app:BrokenFilter" in cards
    assert json.dumps("x")[1:-1] in cards
    assert "&lt;img src=x" in cards
    assert "<img" not in cards


def test_interval_must_be_positive(tmp_path):
    with pytest.raises(ValueError, match="interval must be a positive number"):
        DashboardApp(tmp_path / "x.db", interval=0)


def test_bulk_reader_matches_row_reader(tmp_path):
    import numpy as np

    from physicsnemo_curator.core.store import open_readonly
    from physicsnemo_curator.dashboard._model import read_indices_bulk, read_stage_times_bulk
    from physicsnemo_curator.monitor import read_indices_after, read_stage_times_after

    db = write_store(tmp_path / "bulk.db", 300, error_every=7, with_gpu=True)
    write_store(db, 5, start=10, error_every=2)
    conn = open_readonly(db)
    try:
        bulk = read_indices_bulk(conn, 0, 10**9)
        rows = read_indices_after(conn, 0)
        for name in ("seq", "idx", "status", "run_id", "worker_id", "wall_ns", "peak_mem", "rss_peak", "gpu_mem"):
            assert np.array_equal(getattr(bulk, name), getattr(rows, name)), name
        assert bulk.errors == rows.errors
        tail = read_indices_bulk(conn, int(rows.seq[-3]), int(rows.seq[-1]))
        assert list(tail.seq) == list(rows.seq[-2:])
        expected = read_stage_times_after(conn, 0)
        got = read_stage_times_bulk(conn, 0, 10**9)
        assert sorted(zip(*[a.tolist() for a in got[:3]])) == sorted(zip(*[a.tolist() for a in expected[:3]]))
    finally:
        conn.close()


def test_refresh_reads_only_new_rows(tmp_path):
    db = write_store(tmp_path / "grow.db", 5000, running=True)
    data = DashboardData(db, min_gap=0)
    data.poll()
    assert data.last_rows == 5000
    write_store(db, 1000, start=5000, running=True)
    data.poll()
    assert data.last_rows == 1000
    assert data.monitor.table.n == 6000
    stats = {s["name"]: s["count"] for s in data.stage_stats()}
    assert stats["sink"] == 6000
    data.close()


def test_incremental_views_match_full_recompute(tmp_path):
    from physicsnemo_curator.dashboard import _data
    from physicsnemo_curator.monitor import decode_timeline, payloads

    db = write_store(tmp_path / "views.db", 400, error_every=9, running=True)
    data = DashboardData(db, min_gap=0)
    data._views = _data._IncrementalViews(max_points=150)
    data.poll()
    for start in (400, 700):
        write_store(db, 300, start=start, error_every=9, seed=start, running=True)
        data.poll()
        assert data.last_rows == 300
        table = data.monitor.table
        assert data.slowest(10) == payloads.slowest_indices(table, 10)
        assert data.histogram("memory")["count"] == table.n
        meta, buffer = data.timeline()
        points = decode_timeline(meta, buffer)
        assert meta["total_points"] == table.n
        assert meta["n"] <= 150
        failed = set(table.column("idx")[table.column("status") == 1].tolist())
        shown_failed = set(points["idx"][points["status"] == 1].astype(int).tolist())
        assert failed == shown_failed
    data.close()


def test_builtin_mean_widget_renders_through_registry(tmp_path):
    pa = pytest.importorskip("pyarrow")
    pq = pytest.importorskip("pyarrow.parquet")
    import panel as pn

    registry = WidgetRegistry()
    mean = registry.widgets.get("mean")
    if mean is None:
        pytest.skip(f"MeanFilter is not importable here: {registry.problems.get('mean')}")
    path = tmp_path / "means.parquet"
    pq.write_table(pa.table({"index": [0, 1, 2], "item": [0, 0, 0], "point_data/p": [1.0, 2.0, 3.0], "cell_data/q": [4.0, 5.0, 6.0]}), path)
    assert registry.find(mean.name) is mean
    view = registry.render(mean, mean.name, [str(path)], selected_index=1)
    assert isinstance(view, pn.layout.ListLike)
    assert view.min_height == mean.dashboard_layout_hints()["min_height"]


def test_preview_table_and_histogram_payloads():
    import numpy as np

    from physicsnemo_curator.dashboard._data import _LogBins
    from physicsnemo_curator.dashboard.tabs.pipeline import preview_table

    preview = {
        "path": "/x/" + MARKUP + ".parquet",
        "columns": [{"name": "a" + MARKUP, "type": "int64"}],
        "rows": [[i] for i in range(20)],
        "num_rows": 30,
        "error": None,
    }
    markup = preview_table(preview)
    assert markup.count("<tr>") == 21
    assert "first 20 of 30 rows" in markup
    assert "<img" not in markup
    assert "a&lt;img" in markup
    assert "Cannot preview" in preview_table({**preview, "error": "Cannot preview x"})

    bins = _LogBins()
    bins.add(np.array([1024.0, 1500.0, 2**20, np.nan, -1.0]))
    payload = bins.payload("memory")
    assert payload["count"] == 3
    assert len(payload["edges"]) == len(payload["counts"]) + 1
    assert payload["edges"][0] <= 1024 < payload["edges"][1]
    assert payload["edges"][-2] <= 2**20 < payload["edges"][-1]
    assert _LogBins().payload("gpu_mem")["count"] == 0


def test_first_load_on_two_connections_matches_one(tmp_path, monkeypatch):
    import numpy as np

    from physicsnemo_curator.dashboard import _model

    db = write_store(tmp_path / "two.db", 400, error_every=13)
    single = _model.StoreModel(db)
    single.poll()
    monkeypatch.setattr(_model, "PARALLEL_LOAD_ROWS", 10)
    double = _model.StoreModel(db)
    double.poll()
    assert double.table.n == single.table.n == 400
    assert np.array_equal(np.nan_to_num(double.table.stage_matrix(), nan=-1), np.nan_to_num(single.table.stage_matrix(), nan=-1))
    assert [h.count for h in double.table.stage_hists] == [h.count for h in single.table.stage_hists]
    single.close()
    double.close()


def test_auto_refresh_stops_after_run_idles(tmp_path):
    from physicsnemo_curator.dashboard.app import STOP_AFTER_IDLE_SECONDS

    db = write_store(tmp_path / "ending.db", 10, total=20, running=True)
    session = DashboardApp(db).session()
    assert session.auto.value is True
    write_store(db, 10, start=10, total=20, running=False)
    session.refresh(force=True)
    assert session.data.state == "finished"
    assert session.auto.value is True
    session.data.monitor.last_change -= STOP_AFTER_IDLE_SECONDS + 1
    session.refresh(force=True)
    assert session.auto.value is False
    session.auto.value = True
    session.refresh(force=True)
    assert session.auto.value is True


def test_header_turns_abandoned_without_store_change(tmp_path):
    import socket
    import sqlite3
    import subprocess

    driver = subprocess.Popen(["sleep", "60"])
    db = write_store(tmp_path / "live.db", 5, total=40, running=True, host=socket.gethostname())
    conn = sqlite3.connect(db)
    conn.execute("UPDATE runs SET pid=?", (driver.pid,))
    conn.commit()
    conn.close()
    try:
        session = DashboardApp(db).session()
        assert ">live<" in session.run_label.object
    finally:
        driver.kill()
        driver.wait(10)

    session.refresh_button.clicks += 1
    assert ">abandoned<" in session.run_label.object
