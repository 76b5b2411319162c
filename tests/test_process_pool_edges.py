"""process_pool edge cases: workers ended by SystemExit, and a driver killed with SIGKILL."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import textwrap
import time
from pathlib import Path

from physicsnemo_curator import Filter, Pipeline, run_pipeline
from physicsnemo_curator.core.pipeline_store import PipelineStore
from pipeline_parts import NullSink, RangeSource

TESTS_DIR = Path(__file__).resolve().parent


class ExitOnThree(Filter[int]):
    name = "exit_on_three"

    def __call__(self, items):
        for item in items:
            if item == 3:
                raise SystemExit(4)
            yield item


def test_system_exit_fails_only_that_index(tmp_path):
    pipeline = Pipeline(source=RangeSource(8), filters=[ExitOnThree()], sink=NullSink(), db_dir=tmp_path)
    results = run_pipeline(pipeline, n_jobs=2, backend="process_pool", on_error="continue", progress=False, chunk_size=2)

    assert results[3] is None
    assert [r is None for i, r in enumerate(results) if i != 3] == [False] * 7
    with PipelineStore.from_db(pipeline.db_path) as store:
        error = store.error(3)
    assert error["type"] == "WorkerDiedError"
    assert "exited with code 4" in error["message"]


DRIVER = """
import sys
sys.path.insert(0, {tests!r})
from physicsnemo_curator import Pipeline, run_pipeline
from pipeline_parts import NullSink, RangeSource
pipeline = Pipeline(source=RangeSource(400, sleep=0.05), sink=NullSink(), db_file={db!r})
run_pipeline(pipeline, n_jobs=2, backend="process_pool", progress=False)
"""


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    stat = Path(f"/proc/{pid}/stat")
    return not (stat.exists() and stat.read_text().split()[2] == "Z")


def test_workers_end_when_driver_killed(tmp_path):
    db = tmp_path / "run.db"
    driver = subprocess.Popen([sys.executable, "-c", textwrap.dedent(DRIVER.format(tests=str(TESTS_DIR), db=str(db)))])
    try:
        pids: list[int] = []
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and len(pids) < 2:
            time.sleep(0.2)
            if db.exists():
                try:
                    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
                    pids = [row[0] for row in conn.execute("SELECT pid FROM workers WHERE pid != ?", (driver.pid,))]
                    conn.close()
                except sqlite3.Error:
                    pids = []
        assert len(pids) == 2, "the workers never registered"

        os.kill(driver.pid, signal.SIGKILL)
        driver.wait(10)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and any(_alive(p) for p in pids):
            time.sleep(0.2)
        survivors = [p for p in pids if _alive(p)]
    finally:
        if driver.poll() is None:
            driver.kill()
    for pid in survivors:
        os.kill(pid, signal.SIGKILL)
    assert survivors == []


def test_killed_driver_shows_abandoned(tmp_path):
    from physicsnemo_curator.monitor.payloads import run_state

    db = tmp_path / "run.db"
    driver = subprocess.Popen([sys.executable, "-c", textwrap.dedent(DRIVER.format(tests=str(TESTS_DIR), db=str(db)))])
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            time.sleep(0.2)
            if db.exists():
                with PipelineStore.from_db(db) as store:
                    if store.summary()["completed"] > 0:
                        break
        with PipelineStore.from_db(db) as store:
            assert store.summary()["status"] == "running"
            assert run_state(store.runs()) == "live"
        os.kill(driver.pid, signal.SIGKILL)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and Path(f"/proc/{driver.pid}/stat").read_text().rpartition(")")[2].split()[0] != "Z":
            time.sleep(0.05)
        # Not yet reaped: a zombie driver counts as gone too.
        with PipelineStore.from_db(db) as store:
            assert store.summary()["status"] == "abandoned"
            assert run_state(store.runs()) == "abandoned"
        driver.wait(10)
    finally:
        if driver.poll() is None:
            driver.kill()

    deadline = time.monotonic() + 10
    states: list[str] = []
    while time.monotonic() < deadline:
        with PipelineStore.from_db(db) as store:
            states = [w["state"] for w in store.workers()]
        if states and all(state == "dead" for state in states):
            break
        time.sleep(0.2)
    assert states == ["dead", "dead"]
