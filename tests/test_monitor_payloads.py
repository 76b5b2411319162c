"""The monitor payload layer on real SQLite stores: cursors, incremental reads, payload values."""

from __future__ import annotations

import hashlib
import json
import sqlite3
from pathlib import Path

import numpy as np
import pytest

from physicsnemo_curator.core.base import Filter
from physicsnemo_curator.core.record import IndexRecord
from physicsnemo_curator.core.store import StoreWriter
from physicsnemo_curator.monitor import (
    INVALID,
    WAITING,
    IndexTable,
    LogHistogram,
    RunMonitor,
    StoreReader,
    artifacts_payload,
    decode_timeline,
    error_log,
    format_duration,
    has_dashboard_panel,
    histogram_payload,
    parquet_preview,
    read_indices_after,
    read_stage_times_after,
    slowest_indices,
    stage_statistics,
    timeline_payload,
    wall_statistics,
    worker_table,
)

STAGES = [("source", "source"), ("double", "filter"), ("sink", "sink")]


class FakeClock:
    def __init__(self, now: float = 1_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


class PanelFilter(Filter):
    """A filter with its own dashboard view, found through the stored configuration."""

    name = "panelled"

    @classmethod
    def dashboard_panel(cls, artifact_paths, selected_index=None):
        return {"paths": list(artifact_paths), "index": selected_index}




def make_store(path: Path, total: int = 100, filters: list[dict] | None = None) -> StoreWriter:
    writer = StoreWriter(path)
    config = {"source": {"type": "x:Src", "params": {}}, "filters": filters or [], "sink": None}
    writer.ensure_meta(hashlib.sha256(b"x").hexdigest(), json.dumps(config), "TestSource", total, STAGES)
    return writer


def record(index: int, run_id: int, worker_id: int | None, wall_ms: float, status: str = "completed", **extra) -> IndexRecord:
    wall = int(wall_ms * 1e6)
    rec = IndexRecord(
        index=index,
        status=status,
        run_id=run_id,
        worker_id=worker_id,
        started_at=1_000_000.0 + index,
        wall_ns=wall,
        cpu_ns=wall // 2,
        peak_mem=1000 * (index + 1),
        rss_peak=5000 * (index + 1),
        stages=[(0, wall // 4, 1), (1, wall // 2, 1), (2, wall - wall // 4 - wall // 2, 1)],
    )
    if status == "error":
        rec.error_type = "ValueError"
        rec.error_message = f"index {index} is broken <b>bold</b>"
        rec.traceback = "Traceback ..."
    for key, value in extra.items():
        setattr(rec, key, value)
    return rec


def put(writer: StoreWriter, rec: IndexRecord) -> None:
    writer.record(rec)
    assert writer.flush()


@pytest.fixture
def store(tmp_path):
    path = tmp_path / "run.db"
    writer = make_store(path)
    run_id = writer.start_run("sequential", 1, 100)
    worker = writer.register_worker(run_id, "sequential")
    yield path, writer, run_id, worker
    writer.close()


@pytest.fixture
def monitor(store):
    clock = FakeClock()
    with RunMonitor(store[0], clock=clock) as mon:
        mon.fake_clock = clock
        yield mon


def test_waiting_then_open_when_the_file_appears(tmp_path):
    path = tmp_path / "later.db"
    with RunMonitor(path) as mon:
        first = mon.poll()
        assert mon.state == WAITING
        assert "does not exist yet" in mon.message
        assert str(path) in mon.message
        assert not first.changed
        assert mon.poll().changed is False

        writer = make_store(path)
        run_id = writer.start_run("sequential", 1, 3)
        put(writer, record(0, run_id, None, 5.0))
        result = mon.poll()
        assert result.changed and result.reload
        assert mon.state == "live"
        assert mon.table.n == 1
        writer.close()


def test_text_file_is_reported_not_raised(tmp_path):
    path = tmp_path / "notes.db"
    path.write_text("these are my notes, not a database\n" * 10)
    with RunMonitor(path) as mon:
        result = mon.poll()
        assert result.changed
        assert mon.state == INVALID
        assert "not an SQLite database" in mon.message
        assert mon.poll().changed is False
    assert path.read_text().startswith("these are my notes")


def test_foreign_sqlite_database_is_reported(tmp_path):
    path = tmp_path / "other.db"
    conn = sqlite3.connect(path)
    conn.execute("CREATE TABLE people (name TEXT)")
    conn.commit()
    conn.close()
    before = path.read_bytes()
    with RunMonitor(path) as mon:
        mon.poll()
        assert mon.state == INVALID
        assert "not a physicsnemo-curator run store" in mon.message
    assert path.read_bytes() == before


def test_second_poll_returns_only_the_new_rows(store, monitor):
    path, writer, run_id, worker = store
    for i in range(5):
        put(writer, record(i, run_id, worker, 10.0 + i))
    first = monitor.poll()
    assert first.changed and first.reload
    assert sorted(monitor.table.column("idx")[first.rows].tolist()) == [0, 1, 2, 3, 4]

    for i in range(5, 8):
        put(writer, record(i, run_id, worker, 20.0))
    statements: list[str] = []
    monitor.reader.conn.set_trace_callback(statements.append)
    second = monitor.poll()
    assert second.changed and not second.reload
    assert second.n_rows == 3
    assert sorted(monitor.table.column("idx")[second.rows].tolist()) == [5, 6, 7]
    assert monitor.table.n == 8
    index_reads = [s for s in statements if "FROM indices WHERE seq >" in s]
    assert index_reads and all("seq > 5" in s for s in index_reads)

    statements.clear()
    idle = monitor.poll()
    assert not idle.changed
    assert statements == ["PRAGMA data_version"]


def test_read_functions_respect_the_cursor(store):
    path, writer, run_id, worker = store
    for i in range(4):
        put(writer, record(i, run_id, worker, 1.0))
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        everything = read_indices_after(conn, 0)
        assert everything.idx.tolist() == [0, 1, 2, 3]
        later = read_indices_after(conn, int(everything.seq[1]))
        assert later.idx.tolist() == [2, 3]
        s_idx, s_pos, s_wall, _ = read_stage_times_after(conn, int(everything.seq[2]))
        assert sorted(set(s_idx.tolist())) == [3]
        assert s_pos.tolist() == [0, 1, 2]
        assert int(s_wall.sum()) == int(1.0 * 1e6)
    finally:
        conn.close()


def test_rerun_index_replaces_its_row_and_error(store, monitor):
    path, writer, run_id, worker = store
    put(writer, record(0, run_id, worker, 5.0))
    put(writer, record(1, run_id, worker, 7.0, status="error"))
    monitor.poll()
    progress = monitor.progress()
    assert (progress["completed"], progress["failed"]) == (1, 1)
    assert [e["index"] for e in error_log(monitor.table)] == [1]

    second_run = writer.start_run("sequential", 1, 1)
    put(writer, record(1, second_run, worker, 9.0, replace=True))
    result = monitor.poll()
    assert result.n_rows == 1
    assert monitor.table.n == 2
    progress = monitor.progress()
    assert (progress["completed"], progress["failed"]) == (2, 0)
    assert error_log(monitor.table) == []
    assert monitor.table.run_counts == {run_id: 1, second_run: 1}
    walls = dict(zip(monitor.table.column("idx").tolist(), monitor.table.column("wall_ns").tolist(), strict=True))
    assert walls[1] == 9_000_000


def test_reset_bumps_generation_and_reloads(store, monitor):
    path, writer, run_id, worker = store
    for i in range(6):
        put(writer, record(i, run_id, worker, 3.0))
    monitor.poll()
    assert monitor.table.n == 6
    writer.reset([0, 1])
    result = monitor.poll()
    assert result.reload
    assert sorted(monitor.table.column("idx").tolist()) == [2, 3, 4, 5]
    assert monitor.progress()["completed"] == 4


def test_replaced_file_is_reopened(tmp_path):
    path = tmp_path / "run.db"
    writer = make_store(path)
    run_id = writer.start_run("sequential", 1, 3)
    for i in range(3):
        put(writer, record(i, run_id, None, 1.0))
    writer.close()
    with RunMonitor(path) as mon:
        mon.poll()
        assert mon.table.n == 3
        path.unlink()
        assert mon.poll().changed
        assert mon.state == WAITING
        writer = make_store(path)
        run_id = writer.start_run("sequential", 1, 3)
        put(writer, record(7, run_id, None, 1.0))
        result = mon.poll()
        assert result.reload
        assert mon.table.column("idx").tolist() == [7]
        writer.close()


def test_progress_rate_eta_and_states_follow_the_clock(store, monitor):
    path, writer, run_id, worker = store
    conn = writer.conn
    clock = monitor.fake_clock
    conn.execute("UPDATE runs SET started_at = ? WHERE run_id = ?", (clock.now - 10.0, run_id))
    conn.execute("UPDATE workers SET heartbeat_at = ?, status = 'busy', current_index = 20", (clock.now - 1.0,))
    for i in range(20):
        put(writer, record(i, run_id, worker, 2.0))
    monitor.poll()
    progress = monitor.progress()
    assert progress["state"] == "live"
    assert progress["completed"] == 20
    assert progress["remaining"] == 80
    assert progress["elapsed_s"] == pytest.approx(10.0)
    assert progress["rate_per_s"] == pytest.approx(2.0)
    assert progress["eta_s"] == pytest.approx(40.0)
    assert progress["worker_states"]["busy"] == 1
    assert progress["workers"][0]["current_index"] == 20

    clock.now += 30.0
    progress = monitor.progress()
    assert progress["worker_states"]["stale"] == 1
    assert progress["elapsed_s"] == pytest.approx(40.0)

    writer.finish_run(run_id, "finished")
    monitor.poll()
    progress = monitor.progress()
    assert progress["state"] == "finished"
    assert progress["eta_s"] == 0.0
    assert progress["worker_states"]["stopped"] == 1


def test_worker_table_states():
    now = 100.0
    rows = [
        {"worker_id": 1, "status": "busy", "heartbeat_at": 99.0, "current_index": 4},
        {"worker_id": 2, "status": "idle", "heartbeat_at": 98.0},
        {"worker_id": 3, "status": "busy", "heartbeat_at": 50.0, "current_index": 9},
        {"worker_id": 4, "status": "dead", "heartbeat_at": 50.0, "exit_reason": "SIGKILL"},
    ]
    table = worker_table(rows, now, stale_after=10.0)
    assert [w["state"] for w in table] == ["busy", "idle", "stale", "dead"]
    assert table[2]["current_index"] == 9
    assert table[2]["heartbeat_age_s"] == pytest.approx(50.0)


def test_timeline_buffer_holds_the_recorded_values(store, monitor):
    path, writer, run_id, worker = store
    put(writer, record(3, run_id, worker, 30.0))
    put(writer, record(1, run_id, worker, 10.0, status="error"))
    put(writer, record(2, run_id, worker, 20.0, peak_mem=None))
    monitor.poll()
    meta, buffer = monitor.timeline()
    assert meta["n"] == 3
    columns = decode_timeline(meta, buffer)
    by_index = {int(i): k for k, i in enumerate(columns["idx"])}
    assert columns["wall_s"][by_index[3]] == pytest.approx(0.030)
    assert columns["status"][by_index[1]] == 1
    assert columns["status"][by_index[3]] == 0
    assert columns["memory"][by_index[3]] == pytest.approx(4000)
    assert columns["memory"][by_index[2]] == pytest.approx(15000)  # rss_peak when peak_mem is missing
    assert len(buffer) == 3 * (8 + 4 + 4 + 1)
    assert meta["wall_range"] == [pytest.approx(0.010), pytest.approx(0.030)]


def test_timeline_thinning_keeps_every_failure():
    table = IndexTable(3)
    batch = _synthetic_batch(10_000, failures=[17, 5003, 9999])
    table.apply(batch)
    meta, buffer = timeline_payload(table, max_points=1000)
    assert meta["total_points"] == 10_000
    assert meta["n"] <= 1000
    columns = decode_timeline(meta, buffer)
    assert sorted(columns["idx"][columns["status"] == 1].astype(int).tolist()) == [17, 5003, 9999]


def test_stage_statistics_match_numpy(store, monitor):
    path, writer, run_id, worker = store
    rng = np.random.default_rng(4)
    walls = rng.uniform(1.0, 50.0, 40)
    for i, wall in enumerate(walls):
        put(writer, record(i, run_id, worker, float(wall)))
    monitor.poll()
    stats = stage_statistics(monitor.table, monitor.stages)
    assert [s["name"] for s in stats] == ["source", "double", "sink"]
    double = np.array([int(int(w * 1e6) // 2) for w in walls]) / 1e9
    assert stats[1]["mean"] == pytest.approx(double.mean())
    assert stats[1]["median"] == pytest.approx(np.median(double))
    assert stats[1]["p95"] == pytest.approx(np.percentile(double, 95))
    assert stats[1]["max"] == pytest.approx(double.max())
    assert stats[1]["approximate"] is False

    approx = stage_statistics(monitor.table, monitor.stages, exact_limit=0)
    assert approx[1]["approximate"] is True
    assert approx[1]["mean"] == pytest.approx(double.mean())
    assert approx[1]["max"] == pytest.approx(double.max())
    assert approx[1]["median"] == pytest.approx(np.median(double), rel=0.05)
    assert approx[1]["p95"] == pytest.approx(np.percentile(double, 95), rel=0.05)
    whole = wall_statistics(monitor.table)
    assert whole["count"] == 40


def test_stage_bars_per_index_then_totals(store, monitor):
    path, writer, run_id, worker = store
    for i in (2, 0, 1):
        put(writer, record(i, run_id, worker, 8.0))
    monitor.poll()
    bars = monitor.stage_bars(max_bars=5)
    assert bars["mode"] == "per_index"
    assert bars["indices"] == [0, 1, 2]
    assert bars["values"][0] == [pytest.approx(0.002), pytest.approx(0.004), pytest.approx(0.002)]
    assert monitor.stage_bars(max_bars=2)["mode"] == "totals"


def test_log_histogram_quantiles_and_removal():
    hist = LogHistogram()
    values = np.linspace(1e3, 1e6, 1001)
    hist.add(values)
    assert hist.quantile(0.5) == pytest.approx(np.median(values), rel=0.025)
    hist.remove(values[500:])
    assert hist.count == 500
    assert hist.quantile(0.5) == pytest.approx(np.median(values[:500]), rel=0.025)
    assert hist.max_stale


def test_histograms_slowest_and_errors(store, monitor):
    path, writer, run_id, worker = store
    for i in range(10):
        put(writer, record(i, run_id, worker, float(i + 1), status="error" if i in (4, 6) else "completed"))
    monitor.poll()
    slow = slowest_indices(monitor.table, 3)
    assert [s["index"] for s in slow] == [9, 8, 7]
    assert slow[0]["wall_s"] == pytest.approx(0.010)
    hist = histogram_payload(monitor.table, "peak_mem", bins=5)
    assert sum(hist["counts"]) == 10
    assert hist["edges"][0] == 1000
    assert hist["edges"][-1] == 10_000
    assert histogram_payload(monitor.table, "gpu_mem")["count"] == 0
    with pytest.raises(ValueError, match="Unknown histogram field 'cpu'"):
        histogram_payload(monitor.table, "cpu")
    errors = error_log(monitor.table)
    assert [e["index"] for e in errors] == [6, 4]
    assert errors[0]["error_message"] == "index 6 is broken <b>bold</b>"


def test_logs_are_read_incrementally(store, monitor):
    path, writer, run_id, worker = store
    put(writer, record(0, run_id, worker, 1.0, logs=[(1.0, 30, "user", "first warning")]))
    assert [row["message"] for row in monitor.poll().new_logs] == ["first warning"]
    put(writer, record(1, run_id, worker, 1.0, logs=[(2.0, 30, "user", "second warning")]))
    assert [row["message"] for row in monitor.poll().new_logs] == ["second warning"]
    assert len(monitor.logs) == 2


def test_artifacts_and_parquet_preview(tmp_path):
    pa = pytest.importorskip("pyarrow")
    pq = pytest.importorskip("pyarrow.parquet")
    table = pa.table({"x": list(range(30)), "name": [f"<i>{i}</i>" for i in range(30)], "v": [0.5] * 30})
    parquet = tmp_path / "stats_0.parquet"
    pq.write_table(table, parquet)
    text_file = tmp_path / "notes.txt"
    text_file.write_text("hello")

    path = tmp_path / "run.db"
    filters = [{"type": f"{__name__}:PanelFilter", "params": {}}]
    writer = make_store(path, filters=filters)
    run_id = writer.start_run("sequential", 1, 2)
    put(writer, record(0, run_id, None, 1.0, outputs=[str(tmp_path / "out0.bin")], artifacts=[(1, str(parquet)), (1, str(text_file))]))
    writer.record_flush_artifacts(None, [(1, str(tmp_path / "merged.parquet"))])
    writer.close()

    with RunMonitor(path) as mon:
        mon.poll()
        payload = mon.artifacts(0)
        assert payload["outputs"] == [{"index": 0, "path": str(tmp_path / "out0.bin"), "exists": False}]
        (group,) = payload["groups"]
        assert group["stage"] == "double"
        assert group["has_panel"] is True
        files = {Path(f["path"]).name: f for f in group["files"]}
        preview = files["stats_0.parquet"]["preview"]
        assert preview["num_rows"] == 30
        assert len(preview["rows"]) == 20
        assert preview["columns"] == [{"name": "x", "type": "int64"}, {"name": "name", "type": "string"}, {"name": "v", "type": "double"}]
        assert preview["rows"][3] == [3, "<i>3</i>", 0.5]
        assert files["notes.txt"]["preview"] is None

        everything = artifacts_payload(mon.reader.conn, None)
        paths = [Path(f["path"]).name for f in everything["groups"][0]["files"]]
        assert paths[0] == "merged.parquet"
        assert set(paths) == {"merged.parquet", "stats_0.parquet", "notes.txt"}


def test_parquet_preview_of_a_broken_file(tmp_path):
    pytest.importorskip("pyarrow")
    broken = tmp_path / "broken.parquet"
    broken.write_bytes(b"not parquet at all")
    preview = parquet_preview(broken)
    assert preview["error"].startswith(f"Cannot preview {broken}")
    assert preview["rows"] == []


def test_has_dashboard_panel():
    assert has_dashboard_panel(PanelFilter)
    assert not has_dashboard_panel(Filter)


def test_store_reader_never_writes(tmp_path):
    path = tmp_path / "run.db"
    writer = make_store(path)
    run_id = writer.start_run("sequential", 1, 2)
    put(writer, record(0, run_id, None, 1.0))
    writer.close()
    before = path.read_bytes()
    with StoreReader(path) as reader:
        assert reader.check()
        with pytest.raises(sqlite3.OperationalError, match="readonly"):
            reader.conn.execute("DELETE FROM indices")
    assert path.read_bytes() == before


def test_format_duration():
    assert format_duration(5.25) == "5.2 s" or format_duration(5.25) == "5.3 s"
    assert format_duration(90) == "1.5 min"
    assert format_duration(7200) == "2.0 h"
    assert format_duration(None) == "-"


def _synthetic_batch(n: int, failures: list[int]):
    from physicsnemo_curator.monitor import IndexBatch

    idx = np.arange(n, dtype=np.int64)
    status = np.zeros(n, dtype=np.uint8)
    status[failures] = 1
    minus = np.full(n, -1, dtype=np.int64)
    return IndexBatch(
        seq=idx + 1,
        idx=idx,
        status=status,
        run_id=np.ones(n, dtype=np.int64),
        worker_id=minus.copy(),
        started_at=np.zeros(n),
        wall_ns=idx * 1000 + 1,
        cpu_ns=minus.copy(),
        peak_mem=minus.copy(),
        rss_peak=minus.copy(),
        gpu_mem=minus.copy(),
        errors={i: ("E", "m") for i in failures},
    )


def test_unreadable_path_is_reported(tmp_path):
    # A path through a regular file fails with NotADirectoryError, whatever the user's permissions.
    blocker = tmp_path / "file.txt"
    blocker.write_text("x")
    with RunMonitor(blocker / "run.db") as mon:
        assert mon.poll().changed
        assert mon.state == INVALID
        assert "cannot be read" in mon.message
        assert "Not a directory" in mon.message
        assert mon.poll().changed is False
