"""The run store: transactions, concurrency, bad files, read-only access, indexed writes, import cost."""

from __future__ import annotations

import hashlib
import multiprocessing
import sqlite3
import subprocess
import sys
import warnings

import pytest

from physicsnemo_curator import Pipeline, run_pipeline
from physicsnemo_curator.core import store as store_module
from physicsnemo_curator.core.errors import CuratorWarning, NotAStoreError, SchemaVersionError
from physicsnemo_curator.core.pipeline_store import PipelineStore
from physicsnemo_curator.core.record import IndexRecord
from physicsnemo_curator.core.schema import SCHEMA_VERSION
from physicsnemo_curator.core.store import StoreWriter, open_writable
from pipeline_parts import NullSink, RangeSource, SleepFilter


def test_connections_and_commits_per_index(tmp_path, monkeypatch):
    opened = []
    real_connect = sqlite3.connect

    def counting_connect(*args, **kwargs):
        conn = real_connect(*args, **kwargs)
        opened.append(args[0])
        return conn

    monkeypatch.setattr(store_module.sqlite3, "connect", counting_connect)
    commits = []
    real_writer_init = StoreWriter.__init__

    def traced_init(self, path):
        real_writer_init(self, path)
        self.conn.set_trace_callback(lambda sql: commits.append(sql) if sql.strip().upper() == "COMMIT" else None)

    monkeypatch.setattr(StoreWriter, "__init__", traced_init)

    def run(n):
        opened.clear()
        commits.clear()
        pipeline = Pipeline(source=RangeSource(n), filters=[SleepFilter()], sink=NullSink(), db_dir=tmp_path / str(n))
        pipeline.resume = True
        pipeline._prepare_store()
        before_open, before_commits = len(opened), len(commits)
        run_pipeline(pipeline, progress=False, resume=True)
        return len(opened) - before_open, len(commits) - before_commits

    small_open, small_commits = run(10)
    large_open, large_commits = run(1000)

    assert large_open == small_open, "connections must not grow with the number of indices"
    assert large_commits <= 1000 + small_commits, "at most one commit per index"
    assert small_open <= 2


def test_index_written_in_one_transaction(tmp_path):
    writer = StoreWriter(tmp_path / "run.db")
    statements = []
    writer.conn.set_trace_callback(statements.append)
    record = IndexRecord(index=5, wall_ns=10, stages=[(0, 3, 1), (1, 7, 2)], outputs=["a", "b"], artifacts=[(1, "c")], logs=[(1.0, 30, "x", "m")])
    writer.record(record)
    writer.flush()

    begins = [s for s in statements if s.startswith("BEGIN")]
    ends = [s for s in statements if s == "COMMIT"]
    assert len(begins) == 1
    assert len(ends) == 1
    body = statements[statements.index(begins[0]) + 1 : statements.index("COMMIT")]
    assert any("INSERT OR REPLACE INTO indices" in s for s in body)
    assert any("stage_times" in s for s in body)
    assert any("INSERT INTO outputs" in s for s in body)


def _writer_process(path, start, count):
    writer = StoreWriter(path)
    for index in range(start, start + count):
        writer.record(IndexRecord(index=index, wall_ns=index, stages=[(0, 1, 1), (1, 2, 2), (2, 3, 3)], outputs=[f"out/{index}"]))
    writer.flush()
    writer.close()


def _reader_process(path, stop, problems, polls):
    conn = store_module.open_readonly(path)
    while not stop.is_set():
        conn.execute("BEGIN")
        orphans = conn.execute(
            "SELECT count(*) FROM stage_times s LEFT JOIN indices i ON i.idx = s.idx WHERE i.idx IS NULL"
        ).fetchone()[0]
        partial = conn.execute(
            "SELECT count(*) FROM indices i WHERE (SELECT count(*) FROM stage_times s WHERE s.idx = i.idx) != 3"
        ).fetchone()[0]
        conn.execute("COMMIT")
        if orphans or partial:
            problems.value += 1
        polls.value += 1
    conn.close()


def test_two_writers_and_reader(tmp_path):
    path = tmp_path / "shared.db"
    open_writable(path).close()
    ctx = multiprocessing.get_context("fork")
    stop = ctx.Event()
    problems = ctx.Value("i", 0)
    polls = ctx.Value("i", 0)
    reader = ctx.Process(target=_reader_process, args=(path, stop, problems, polls))
    reader.start()
    writers = [ctx.Process(target=_writer_process, args=(path, start, 1000)) for start in (0, 1000)]
    for w in writers:
        w.start()
    for w in writers:
        w.join(60)
    stop.set()
    reader.join(30)

    assert [w.exitcode for w in writers] == [0, 0]
    assert reader.exitcode == 0
    assert problems.value == 0
    assert polls.value > 0
    conn = sqlite3.connect(path)
    assert conn.execute("SELECT count(*), count(DISTINCT idx) FROM indices").fetchone() == (2000, 2000)
    assert conn.execute("SELECT count(*) FROM stage_times").fetchone()[0] == 6000
    conn.close()


def test_parent_directory_created(tmp_path):
    path = tmp_path / "a" / "b" / "run.db"
    open_writable(path).close()
    assert path.exists()


@pytest.mark.parametrize("content", [b"this is not a database at all" * 10, b"SQLite format 3\x00" + b"\x00" * 40])
def test_bad_file_moved_aside(tmp_path, content):
    path = tmp_path / "run.db"
    path.write_bytes(content)
    with pytest.warns(CuratorWarning, match="moved to") as caught:
        conn = open_writable(path)
    conn.close()

    aside = list(tmp_path.glob("run.db.corrupt-*"))
    assert len(aside) == 1
    assert aside[0].read_bytes() == content
    message = str(caught[0].message)
    assert str(path) in message
    assert str(aside[0]) in message
    assert sqlite3.connect(path).execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION


def test_truncated_store_moved_aside(tmp_path):
    pipeline = Pipeline(source=RangeSource(200), sink=NullSink(), db_file=tmp_path / "run.db")
    run_pipeline(pipeline, progress=False)
    data = (tmp_path / "run.db").read_bytes()
    (tmp_path / "run.db").write_bytes(data[: len(data) // 2])

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        run_pipeline(Pipeline(source=RangeSource(3), sink=NullSink(), db_file=tmp_path / "run.db"), progress=False)
    assert list(tmp_path.glob("run.db.corrupt-*")), [str(w.message) for w in caught]
    assert any("moved to" in str(w.message) for w in caught)


def test_newer_schema_rejected(tmp_path):
    path = tmp_path / "future.db"
    open_writable(path).close()
    conn = sqlite3.connect(path)
    conn.execute(f"PRAGMA user_version={SCHEMA_VERSION + 3}")
    conn.close()

    with pytest.raises(SchemaVersionError, match=f"version {SCHEMA_VERSION + 3}.*up to version {SCHEMA_VERSION}"):
        open_writable(path)
    with pytest.raises(SchemaVersionError):
        PipelineStore.from_db(path)
    assert path.exists()


def test_foreign_sqlite_rejected_not_moved(tmp_path):
    path = tmp_path / "other.db"
    conn = sqlite3.connect(path)
    conn.execute("CREATE TABLE customers (id INTEGER)")
    conn.commit()
    conn.close()

    with pytest.raises(NotAStoreError, match="not a physicsnemo-curator run store"):
        open_writable(path)
    with pytest.raises(NotAStoreError):
        PipelineStore.from_db(path)
    assert sqlite3.connect(path).execute("SELECT count(*) FROM customers").fetchone() == (0,)


def test_from_db_missing_path(tmp_path):
    with pytest.raises(FileNotFoundError, match="missing.db"):
        PipelineStore.from_db(tmp_path / "missing.db")


def test_reading_leaves_file_unchanged(tmp_path):
    pipeline = Pipeline(source=RangeSource(20, fail_on=[4]), filters=[SleepFilter()], sink=NullSink(), db_dir=tmp_path)
    run_pipeline(pipeline, on_error="continue", progress=False)
    digest = hashlib.sha256(pipeline.db_path.read_bytes()).hexdigest()

    with PipelineStore.from_db(pipeline.db_path) as store:
        store.summary(total=20)
        store.metrics()
        store.all_filter_artifacts()
        store.workers()
        store.runs()
        store.logs()
        store.error(4)
        store.output_paths_for_index(3)
        with pytest.raises(PermissionError, match="read-only"):
            store.reset()

    assert hashlib.sha256(pipeline.db_path.read_bytes()).hexdigest() == digest


def test_write_failure_not_marked_completed(tmp_path):
    from physicsnemo_curator.core.errors import StoreWriteError

    blocker = None

    class LockAfterTwo(RangeSource):
        def __getitem__(self, index):
            if index == 2:
                blocker.execute("BEGIN IMMEDIATE")
            yield index

    pipeline = Pipeline(source=LockAfterTwo(5), sink=NullSink(), db_file=tmp_path / "run.db")
    pipeline._prepare_store()
    blocker = sqlite3.connect(tmp_path / "run.db", isolation_level=None)
    original = store_module.BUSY_RETRY_SECONDS
    store_module.BUSY_RETRY_SECONDS = 0.2
    try:
        with pytest.warns(CuratorWarning, match="Could not record index 2"):
            results = run_pipeline(pipeline, progress=False, on_error="continue")
        assert results[2:] == [None, None, None]
        blocker.execute("ROLLBACK")
        pipeline.source = LockAfterTwo(5)
        with pytest.warns(CuratorWarning, match="Could not record index 2"):
            with pytest.raises(StoreWriteError, match="Index 2 ran but could not be recorded"):
                run_pipeline(pipeline, progress=False)
    finally:
        store_module.BUSY_RETRY_SECONDS = original
        if blocker.in_transaction:
            blocker.execute("ROLLBACK")
        blocker.close()

    completed = PipelineStore.from_db(tmp_path / "run.db").completed_indices()
    assert completed == [0, 1]


def test_write_statements_use_indexes(tmp_path):
    conn = open_writable(tmp_path / "plans.db")
    statements = [
        ("INSERT OR REPLACE INTO indices (idx, status) VALUES (?, ?)", (1, "completed")),
        ("DELETE FROM stage_times WHERE idx=?", (1,)),
        ("DELETE FROM outputs WHERE idx=?", (1,)),
        ("DELETE FROM artifacts WHERE idx=?", (1,)),
        ("UPDATE workers SET n_done = n_done + ? WHERE worker_id=?", (1, 1)),
        ("SELECT idx FROM outputs WHERE path=? LIMIT 1", ("x",)),
        ("SELECT status FROM indices WHERE idx=?", (1,)),
    ]
    for sql, params in statements:
        plan = " | ".join(row[3] for row in conn.execute("EXPLAIN QUERY PLAN " + sql, params))
        assert "SCAN" not in plan, f"{sql} scans a table: {plan}"
    conn.close()


def test_import_loads_no_heavy_packages():
    code = (
        "import sys, physicsnemo_curator\n"
        "heavy = ['pandas', 'pyarrow', 'panel', 'torch', 'IPython', 'dask', 'distributed', 'bokeh', 'numpy']\n"
        "print(','.join(m for m in heavy if m in sys.modules))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""


def test_directory_db_file_rejected(tmp_path):
    from physicsnemo_curator.core.errors import StoreError

    results = tmp_path / "results"
    results.mkdir()
    (results / "important.h5").write_text("data")

    with pytest.raises(StoreError, match="is a directory"):
        run_pipeline(Pipeline(source=RangeSource(2), sink=NullSink(), db_file=results), progress=False)
    assert (results / "important.h5").read_text() == "data"
    assert not list(tmp_path.glob("*.corrupt-*"))


def test_foreign_sqlite_left_untouched(tmp_path):
    path = tmp_path / "other.db"
    conn = sqlite3.connect(path)
    conn.execute("CREATE TABLE customers (id INTEGER)")
    conn.commit()
    conn.close()
    before = path.read_bytes()

    with pytest.raises(NotAStoreError):
        open_writable(path)
    assert path.read_bytes() == before


def test_store_of_other_pipeline_rejected(tmp_path):
    from physicsnemo_curator.core.errors import StoreError

    first = Pipeline(source=RangeSource(5), sink=NullSink(), db_file=tmp_path / "mix.db")
    run_pipeline(first, progress=False)
    other = Pipeline(source=RangeSource(8), filters=[SleepFilter()], sink=NullSink(), db_file=tmp_path / "mix.db", resume=True)

    with pytest.raises(StoreError, match="records another pipeline"):
        run_pipeline(other, progress=False)
    assert PipelineStore.from_db(tmp_path / "mix.db").completed_indices() == [0, 1, 2, 3, 4]


def test_unwritable_store_named_in_error(tmp_path):
    import shutil
    import subprocess

    from physicsnemo_curator.core.errors import StoreError

    blocker = tmp_path / "a-file"
    blocker.write_text("x")
    with pytest.raises(StoreError, match="Cannot create the directory"):
        open_writable(blocker / "run.db")

    run_pipeline(Pipeline(source=RangeSource(2), sink=NullSink(), db_file=tmp_path / "frozen.db"), progress=False)
    chattr = shutil.which("chattr")
    if chattr is None or subprocess.run([chattr, "+i", str(tmp_path / "frozen.db")], capture_output=True).returncode != 0:
        pytest.skip("chattr +i is not available here to make the store read-only")
    try:
        with pytest.raises(StoreError, match="frozen.db"):
            open_writable(tmp_path / "frozen.db")
    finally:
        subprocess.run([chattr, "-i", str(tmp_path / "frozen.db")], check=True)
