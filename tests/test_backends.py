"""The four backends give the same results and the same records, with real worker processes.

Process pool, loky and Dask (its own local cluster, and a user's
``distributed.LocalCluster`` Client) are compared with the sequential run.
Dask workers that cannot open the store send their records to the driver.
"""

from __future__ import annotations

import os
import shutil
import socket
import sqlite3
import sys
from pathlib import Path

import pytest
from _backend_components import MarkFilter, NullSink, RangeSource, ShardFilter, TextSink, ran_indices

from physicsnemo_curator import Pipeline, gather_pipeline, list_backends, run_pipeline
from physicsnemo_curator.core.errors import PartitionError
from physicsnemo_curator.run import _worker
from physicsnemo_curator.run._job import partition_groups

N = 24
FAIL = 11


def _ro(path: Path) -> sqlite3.Connection:
    return sqlite3.connect(f"file:{path}?mode=ro", uri=True)


def _pipeline(tmp: Path, name: str, n: int = N, **mark: object) -> Pipeline:
    for sub in ("marks", "shards"):
        (tmp / name / sub).mkdir(parents=True, exist_ok=True)
    (tmp / "out").mkdir(exist_ok=True)
    return Pipeline(
        source=RangeSource(n),
        filters=[MarkFilter(str(tmp / name / "marks"), **mark), ShardFilter(str(tmp / name / "shards"))],
        sink=TextSink(str(tmp / "out")),
        db_file=tmp / name / "run.db",
        track_memory=False,
    )


def _recorded(db: Path) -> dict[str, object]:
    with _ro(db) as conn:
        run_id = conn.execute("SELECT max(run_id) FROM runs").fetchone()[0]
        return {
            "indices": sorted(conn.execute("SELECT idx, status, error_type FROM indices").fetchall()),
            "stages": conn.execute("SELECT position, name, kind FROM stages ORDER BY position").fetchall(),
            "stage_rows": sorted(conn.execute("SELECT idx, position FROM stage_times").fetchall()),
            "outputs": sorted(conn.execute("SELECT idx, path FROM outputs").fetchall()),
            "pids": [
                row[0] for row in conn.execute("SELECT pid FROM workers WHERE run_id=? ORDER BY worker_id", (run_id,))
            ],
            "unattributed": conn.execute("SELECT count(*) FROM indices WHERE worker_id IS NULL").fetchone()[0],
            "status": conn.execute("SELECT status FROM runs WHERE run_id=?", (run_id,)).fetchone()[0],
        }


@pytest.fixture(scope="module")
def dask_client():
    distributed = pytest.importorskip("distributed")
    cluster = distributed.LocalCluster(
        n_workers=2, threads_per_worker=1, processes=True, host="127.0.0.1", dashboard_address=None
    )
    client = distributed.Client(cluster, set_as_default=False)
    try:
        yield client
    finally:
        client.close()
        cluster.close()


def _run(tmp: Path, name: str, backend: str, n_jobs: int = 2, **options: object) -> tuple[list, dict, Path]:
    pipeline = _pipeline(tmp, name, delay=0.03, fail_index=FAIL)
    results = run_pipeline(pipeline, n_jobs=n_jobs, backend=backend, on_error="continue", progress=False, **options)
    merged = gather_pipeline(pipeline)
    return results, merged, pipeline.db_path


def _compare_with_sequential(tmp: Path, name: str, backend: str, **options: object) -> dict:
    expected, expected_merged, expected_db = _run(tmp, "sequential", "sequential", n_jobs=1)
    results, merged, db = _run(tmp, name, backend, **options)

    assert results == expected
    assert results[FAIL] is None
    assert all(r is not None for i, r in enumerate(results) if i != FAIL)
    want, got = _recorded(expected_db), _recorded(db)
    for key in ("indices", "stages", "stage_rows", "outputs"):
        assert got[key] == want[key], key
    assert got["unattributed"] == 0
    assert got["status"] == "finished"

    # The stateful filter's per-worker shards merge to the same total as the single-process run.
    assert Path(merged["ShardFilter"][0]).read_text() == Path(expected_merged["ShardFilter"][0]).read_text()
    assert sorted(ran_indices(tmp / name / "marks")) == list(range(N))
    return got


def test_process_pool_matches_sequential(tmp_path):
    got = _compare_with_sequential(tmp_path, "pool", "process_pool")
    assert len(set(got["pids"])) == 2
    assert os.getpid() not in got["pids"]


def test_loky_matches_sequential(tmp_path):
    pytest.importorskip("loky")
    got = _compare_with_sequential(tmp_path, "loky", "loky")
    assert len(set(got["pids"])) == 2
    assert os.getpid() not in got["pids"]


def test_dask_local_cluster_matches_sequential(tmp_path):
    distributed = pytest.importorskip("distributed")
    with pytest.raises(ValueError):
        distributed.default_client()
    got = _compare_with_sequential(tmp_path, "dask", "dask")
    assert len(set(got["pids"])) == 2
    assert os.getpid() not in got["pids"]


def test_dask_client_matches_sequential(tmp_path, dask_client):
    worker_pids = set(dask_client.run(os.getpid).values())
    got = _compare_with_sequential(tmp_path, "dask_client", "dask", client=dask_client)
    assert set(got["pids"]) == worker_pids
    assert len(worker_pids) == 2


def test_dask_uses_the_current_client(tmp_path, dask_client):
    distributed = pytest.importorskip("distributed")
    worker_pids = set(dask_client.run(os.getpid).values())
    with distributed.Client(dask_client.scheduler.address) as current:
        assert distributed.default_client() is current
        pipeline = _pipeline(tmp_path, "current")
        run_pipeline(pipeline, n_jobs=2, backend="dask", progress=False)
    assert set(_recorded(pipeline.db_path)["pids"]) <= worker_pids


def test_dask_forced_remote_mode_records_everything(tmp_path, dask_client):
    worker_pids = set(dask_client.run(os.getpid).values())
    pipeline = _pipeline(tmp_path, "remote", log_index=7, delay=0.02)
    results = run_pipeline(pipeline, n_jobs=2, backend="dask", client=dask_client, remote=True, progress=False)
    merged = gather_pipeline(pipeline)

    assert all(r is not None for r in results)
    got = _recorded(pipeline.db_path)
    assert [i for i, status, _ in got["indices"] if status == "completed"] == list(range(N))
    assert len(got["stage_rows"]) == N * 4
    assert got["unattributed"] == 0
    # The driver registered the workers from their results: their real pids, not its own.
    assert set(got["pids"]) == worker_pids
    with _ro(pipeline.db_path) as conn:
        log = conn.execute("SELECT idx, worker_id FROM logs WHERE message LIKE 'index 7%'").fetchall()
        ran_7 = conn.execute("SELECT worker_id FROM indices WHERE idx=7").fetchone()[0]
        flushed = conn.execute("SELECT count(*) FROM artifacts WHERE idx IS NULL AND worker_id IS NOT NULL").fetchone()[0]
        statuses = {row[0] for row in conn.execute("SELECT status FROM workers")}
    assert log == [(7, ran_7)]
    assert flushed >= 1
    assert statuses == {"stopped"}
    total, count = map(int, Path(merged["ShardFilter"][0]).read_text().split())
    assert (total, count) == (sum(i * i + 1 for i in range(N)), N)


def test_dask_unseen_store_goes_remote(tmp_path, dask_client, monkeypatch):
    """Workers whose working directory has no run store (another host, in effect) send their records back."""
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    driver_dir = tmp_path / "driver"
    driver_dir.mkdir()
    monkeypatch.chdir(driver_dir)
    original = dask_client.run(os.getcwd)
    dask_client.run(os.chdir, str(elsewhere))
    try:
        pipeline = _pipeline(tmp_path, "auto")
        pipeline.db_file = "run.db"
        results = run_pipeline(pipeline, n_jobs=2, backend="dask", client=dask_client, progress=False)
    finally:
        for address, cwd in original.items():
            dask_client.run(os.chdir, cwd, workers=[address])

    assert all(r is not None for r in results)
    assert not (elsewhere / "run.db").exists()
    got = _recorded(driver_dir / "run.db")
    assert [i for i, status, _ in got["indices"] if status == "completed"] == list(range(N))
    assert got["unattributed"] == 0
    assert len(set(got["pids"])) == 2


def test_store_reachable_checks_the_driver_run(tmp_path):
    pipeline = _pipeline(tmp_path, "reach", n=2)
    run_pipeline(pipeline, n_jobs=1, progress=False)
    db = pipeline.db_path
    with _ro(db) as conn:
        run_id, host, pid = conn.execute("SELECT run_id, host, pid FROM runs").fetchone()

    assert _worker.store_reachable(str(db), run_id, (host, pid))
    assert not _worker.store_reachable(str(db), run_id, (host, pid + 1))
    assert not _worker.store_reachable(str(db), run_id + 1, (host, pid))
    assert not _worker.store_reachable(str(tmp_path / "missing.db"), run_id, (host, pid))
    copy = tmp_path / "copy" / "run.db"
    copy.parent.mkdir()
    shutil.copy(db, copy)
    assert not _worker.store_reachable(str(copy), run_id, ("another-host", pid))
    assert socket.gethostname() == host


@pytest.mark.parametrize("backend", ["process_pool", "loky", "dask"])
def test_results_follow_the_requested_order(tmp_path, backend, dask_client):
    order = [17, 3, 9, 0, 21, 5, 12, 8, 1, 20]
    pipeline = _pipeline(tmp_path, backend, delay=0.01)
    options = {"client": dask_client} if backend == "dask" else {}
    results = run_pipeline(pipeline, n_jobs=2, backend=backend, indices=order, progress=False, **options)
    assert results == [[str(tmp_path / "out" / f"{i:06d}.txt")] for i in order]


@pytest.mark.parametrize("backend", ["process_pool", "loky"])
def test_partition_groups_run_in_order_on_one_worker(tmp_path, backend):
    groups = [[7, 2, 5], [0, 1], [6, 4, 3]]
    (tmp_path / "marks").mkdir()
    pipeline = Pipeline(
        source=RangeSource(8, groups=groups),
        filters=[MarkFilter(str(tmp_path / "marks"), delay=0.02)],
        sink=NullSink(),
        db_file=tmp_path / "run.db",
        track_memory=False,
    )
    run_pipeline(pipeline, n_jobs=2, backend=backend, progress=False)
    with _ro(pipeline.db_path) as conn:
        rows = dict(((idx, (worker, seq)) for idx, worker, seq in conn.execute("SELECT idx, worker_id, seq FROM indices")))
    for group in groups:
        assert len({rows[i][0] for i in group}) == 1, group
        assert [rows[i][1] for i in group] == sorted(rows[i][1] for i in group), group


def test_conflicting_partitions_show_both_groups(tmp_path):
    class GroupedSink(NullSink):
        def partition_indices(self, indices):
            return [[0, 1, 2, 3]]

    pipeline = Pipeline(source=RangeSource(4, groups=[[0, 1], [2, 3]]), sink=GroupedSink(), track_metrics=False)
    with pytest.raises(PartitionError, match=r"\[0, 1, 2, 3\].*\[\[0, 1\], \[2, 3\]\]"):
        partition_groups(pipeline, range(4))


def test_n_jobs_minus_one_uses_every_cpu(tmp_path):
    pipeline = _pipeline(tmp_path, "all_cpus", n=8)
    run_pipeline(pipeline, n_jobs=-1, backend="process_pool", progress=False)
    got = _recorded(pipeline.db_path)
    assert len(set(got["pids"])) == (os.cpu_count() or 1)


def test_n_jobs_one_runs_in_the_driver(tmp_path):
    pipeline = _pipeline(tmp_path, "one", n=3)
    run_pipeline(pipeline, n_jobs=1, backend="loky", progress=False)
    assert set(_recorded(pipeline.db_path)["pids"]) == {os.getpid()}


@pytest.mark.parametrize(("backend", "module", "extra"), [("dask", "distributed", "dask"), ("loky", "loky", "loky")])
def test_missing_backend_package_names_the_extra(tmp_path, monkeypatch, backend, module, extra):
    monkeypatch.setitem(sys.modules, module, None)
    assert not next(b for b in list_backends() if b.name == backend).available
    pipeline = _pipeline(tmp_path, f"missing_{backend}", n=2)
    with pytest.raises(ImportError, match=rf'pip install "physicsnemo-curator\[{extra}\]"'):
        run_pipeline(pipeline, n_jobs=2, backend=backend, progress=False)


@pytest.mark.parametrize(("name", "module"), [("dask", "physicsnemo_curator.run.dask"), ("loky", "physicsnemo_curator.run.loky")])
def test_backend_itself_names_the_extra(tmp_path, monkeypatch, name, module):
    import importlib

    backend_module = importlib.import_module(module)
    backend = backend_module.DaskBackend() if name == "dask" else backend_module.LokyBackend()
    monkeypatch.setitem(sys.modules, "distributed" if name == "dask" else "loky", None)
    with pytest.raises(ImportError, match=rf'physicsnemo-curator\[{name}\]') as info:
        backend.run(None)
    assert info.value.__cause__ is not None


def test_metrics_off_runs_on_every_backend(tmp_path, dask_client):
    for backend in ("process_pool", "loky", "dask"):
        out = tmp_path / backend
        (out / "marks").mkdir(parents=True)
        pipeline = Pipeline(
            source=RangeSource(10),
            filters=[MarkFilter(str(out / "marks"))],
            sink=TextSink(str(out)),
            track_metrics=False,
        )
        options = {"client": dask_client} if backend == "dask" else {}
        results = run_pipeline(pipeline, n_jobs=2, backend=backend, progress=False, **options)
        assert results == [[str(out / f"{i:06d}.txt")] for i in range(10)], backend
        assert ran_indices(out / "marks") == list(range(10))
        assert not list(out.glob("*.db"))


@pytest.mark.parametrize("backend", ["process_pool", "loky", "dask"])
def test_first_error_stops_the_run_with_its_exception(tmp_path, backend, dask_client):
    pipeline = _pipeline(tmp_path, backend, n=60, fail_index=5, delay=0.01)
    options = {"client": dask_client} if backend == "dask" else {}
    with pytest.raises(ValueError, match="index 5 is bad"):
        run_pipeline(pipeline, n_jobs=2, backend=backend, on_error="raise", progress=False, **options)

    with _ro(pipeline.db_path) as conn:
        run_status = conn.execute("SELECT status FROM runs").fetchone()[0]
        error = conn.execute("SELECT status, error_type FROM indices WHERE idx=5").fetchone()
        workers = {row[0] for row in conn.execute("SELECT status FROM workers")}
    assert run_status == "failed"
    assert error == ("error", "ValueError")
    assert workers <= {"stopped", "dead"}


def test_unknown_backend_option_is_rejected(tmp_path):
    pipeline = _pipeline(tmp_path, "typo", n=4)
    with pytest.raises(TypeError, match=r"no option 'clinet'.*Did you mean 'client'\?"):
        run_pipeline(pipeline, n_jobs=2, backend="dask", clinet=None, progress=False)
    with pytest.raises(TypeError, match=r"process_pool backend has no option 'timeout'"):
        run_pipeline(pipeline, n_jobs=2, backend="process_pool", timeout=3, progress=False)


def test_invalid_chunk_size_is_rejected(tmp_path):
    pipeline = _pipeline(tmp_path, "chunk", n=4)
    with pytest.raises(ValueError, match=r"chunk_size=0 is not valid"):
        run_pipeline(pipeline, n_jobs=2, backend="process_pool", chunk_size=0, progress=False)


def test_chunk_size_sets_indices_per_message(tmp_path):
    pipeline = _pipeline(tmp_path, "chunk7", n=20, delay=0.01)
    run_pipeline(pipeline, n_jobs=2, backend="process_pool", chunk_size=7, progress=False)
    with _ro(pipeline.db_path) as conn:
        workers = [row[0] for row in conn.execute("SELECT worker_id FROM indices ORDER BY idx")]
    # Each chunk of 7 consecutive indices runs on one worker, and both workers get chunks.
    for start in range(0, 20, 7):
        assert len(set(workers[start : start + 7])) == 1, start
    assert len(set(workers)) == 2
