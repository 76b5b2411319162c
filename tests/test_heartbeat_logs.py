"""Heartbeats of busy workers, and logs captured in workers with their index and worker."""

from __future__ import annotations

import sqlite3
import threading
import time
from pathlib import Path

import pytest
from _backend_components import MarkFilter, NullSink, RangeSource

from physicsnemo_curator import Pipeline, run_pipeline
from physicsnemo_curator.core.execute import MAX_LOGS_PER_INDEX

HEARTBEAT = 0.2


def _ro(path: Path) -> sqlite3.Connection:
    return sqlite3.connect(f"file:{path}?mode=ro", uri=True)


def _pipeline(root: Path, n: int, **mark: object) -> Pipeline:
    (root / "marks").mkdir(parents=True, exist_ok=True)
    return Pipeline(
        source=RangeSource(n),
        filters=[MarkFilter(str(root / "marks"), **mark)],
        sink=NullSink(),
        db_file=root / "run.db",
        track_memory=False,
    )


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


def _options(backend: str, request: pytest.FixtureRequest) -> dict[str, object]:
    if backend == "loky":
        pytest.importorskip("loky")
    if backend.startswith("dask"):
        options: dict[str, object] = {"client": request.getfixturevalue("dask_client")}
        if backend == "dask-remote":
            options["remote"] = True
        return options
    return {}


@pytest.mark.parametrize("backend", ["process_pool", "loky", "dask"])
def test_heartbeat_advances_while_busy(tmp_path, backend, request):
    options = _options(backend, request)
    pipeline = _pipeline(tmp_path, 6, pause_index=3, pause_seconds=10 * HEARTBEAT)
    driver = threading.Thread(
        target=run_pipeline,
        args=(pipeline,),
        kwargs={"n_jobs": 2, "backend": backend, "progress": False, "heartbeat_seconds": HEARTBEAT, **options},
    )
    driver.start()
    try:
        pid_file = tmp_path / "marks" / "paused-3.pid"
        deadline = time.monotonic() + 60
        while not pid_file.exists() and time.monotonic() < deadline:
            time.sleep(0.02)
        pid = int(pid_file.read_text())

        def sample() -> tuple[float, str, int | None]:
            with _ro(pipeline.db_path) as conn:
                return conn.execute("SELECT heartbeat_at, status, current_index FROM workers WHERE pid=?", (pid,)).fetchone()

        time.sleep(2 * HEARTBEAT)
        first = sample()
        time.sleep(3 * HEARTBEAT)
        second = sample()
    finally:
        driver.join(timeout=60)
    assert not driver.is_alive()
    assert first[1:] == ("busy", 3)
    assert second[1:] == ("busy", 3)
    assert second[0] > first[0]


@pytest.mark.parametrize("backend", ["sequential", "process_pool", "loky", "dask", "dask-remote"])
def test_index_warning_stored_with_worker(tmp_path, backend, request):
    options = _options(backend, request)
    pipeline = _pipeline(tmp_path, 12, log_index=7, warn_count=3)
    run_pipeline(pipeline, n_jobs=1 if backend == "sequential" else 2, backend=backend.split("-")[0], progress=False, **options)

    with _ro(pipeline.db_path) as conn:
        ran_7 = conn.execute("SELECT worker_id FROM indices WHERE idx=7").fetchone()[0]
        rows = conn.execute("SELECT idx, worker_id, level, logger, message FROM logs ORDER BY seq").fetchall()
    assert ran_7 is not None
    assert rows[0] == (7, ran_7, 30, "psnc_tests.components", "index 7 looks odd")
    warned = [r for r in rows if r[3] == "py.warnings"]
    assert [r[:2] for r in warned] == [(7, ran_7)] * 3
    assert all("UserWarning: odd value number" in r[4] for r in warned)
    assert len(rows) == 4


@pytest.mark.parametrize("backend", ["process_pool", "dask-remote"])
def test_logs_capped_per_index(tmp_path, backend, request):
    options = _options(backend, request)
    pipeline = _pipeline(tmp_path, 10, log_index=7, warn_count=MAX_LOGS_PER_INDEX + 20)
    run_pipeline(pipeline, n_jobs=2, backend=backend.split("-")[0], progress=False, **options)

    with _ro(pipeline.db_path) as conn:
        rows = conn.execute("SELECT idx, message FROM logs ORDER BY seq").fetchall()
    assert len(rows) == MAX_LOGS_PER_INDEX + 1
    assert {idx for idx, _ in rows} == {7}
    assert rows[-1][1] == "21 more log records from this index were not stored"
