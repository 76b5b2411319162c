"""Crash safety: a worker killed with SIGKILL, and Ctrl-C of the driver.

Real worker processes are killed by pid; the interrupted driver is a real
subprocess that receives SIGINT. Every execution of an index leaves a
marker file, so the tests count what ran before and after a resume.
"""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import pytest
from _backend_components import MarkFilter, RangeSource, TextSink, ran_indices

from physicsnemo_curator import Pipeline, run_pipeline

TESTS = Path(__file__).resolve().parent
BACKENDS = ["process_pool", "loky", "dask"]


def _ro(path: Path) -> sqlite3.Connection:
    return sqlite3.connect(f"file:{path}?mode=ro", uri=True)


def _completed(db: Path) -> set[int]:
    if not db.exists():
        return set()
    try:
        with _ro(db) as conn:
            return {row[0] for row in conn.execute("SELECT idx FROM indices WHERE status='completed'")}
    except sqlite3.OperationalError:
        return set()


def _wait(condition, timeout: float = 60.0, what: str = "condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.02)
    raise AssertionError(f"Timed out after {timeout}s waiting for {what}")


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state not in ("Z", "X")


def _pipeline(root: Path, n: int, **mark: object) -> Pipeline:
    (root / "marks").mkdir(parents=True, exist_ok=True)
    (root / "out").mkdir(exist_ok=True)
    return Pipeline(
        source=RangeSource(n),
        filters=[MarkFilter(str(root / "marks"), **mark)],
        sink=TextSink(str(root / "out")),
        db_file=root / "run.db",
        track_memory=False,
    )


def _consistent(db: Path, n_stages: int) -> None:
    """Every recorded index is whole: its stage rows and outputs, and nothing for unrecorded ones."""
    with _ro(db) as conn:
        assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        status = dict(conn.execute("SELECT idx, status FROM indices").fetchall())
        stages: dict[int, int] = {}
        for idx, count in conn.execute("SELECT idx, count(*) FROM stage_times GROUP BY idx"):
            stages[idx] = count
        outputs: dict[int, int] = {}
        for idx, count in conn.execute("SELECT idx, count(*) FROM outputs GROUP BY idx"):
            outputs[idx] = count
    assert set(stages) <= set(status)
    assert set(outputs) <= set(status)
    for idx, state in status.items():
        if state == "completed":
            assert stages.get(idx) == n_stages, idx
            assert outputs.get(idx) == 1, idx


_DEATH = {
    "process_pool": "was killed by signal SIGKILL",
    "loky": "was killed by signal SIGKILL",
    # A Dask worker is the child of its nanny, so its exit status is not visible to the driver.
    "dask": "ended (Dask lost its worker)",
}


@pytest.mark.parametrize("backend", BACKENDS)
def test_sigkill_worker_loses_nothing(tmp_path, backend):
    pytest.importorskip({"loky": "loky", "dask": "distributed"}.get(backend, "sqlite3"))
    n, victim = 40, 20
    pipeline = _pipeline(tmp_path, n, pause_index=victim, pause_seconds=60, delay=0.01)
    db = pipeline.db_path
    outcome: dict[str, object] = {}

    def drive() -> None:
        try:
            outcome["results"] = run_pipeline(pipeline, n_jobs=2, backend=backend, on_error="continue", progress=False)
        except BaseException as exc:  # noqa: BLE001 - reported by the assertion below
            outcome["error"] = exc

    driver = threading.Thread(target=drive)
    driver.start()
    pid_file = tmp_path / "marks" / f"paused-{victim}.pid"
    pid = int(_wait(lambda: pid_file.exists() and pid_file.read_text(), what="the victim to pause"))
    _wait(lambda: len(_completed(db)) >= 10, what="ten indices to complete")
    completed_before = _completed(db)
    os.kill(pid, signal.SIGKILL)
    driver.join(timeout=120)
    assert not driver.is_alive(), "the run did not finish after its worker was killed"
    assert "error" not in outcome, outcome.get("error")

    # The run went on: every index but the victim completed, the victim failed with its worker's fate.
    results = outcome["results"]
    assert results[victim] is None
    assert all(results[i] == [str(tmp_path / "out" / f"{i:06d}.txt")] for i in range(n) if i != victim)
    with _ro(db) as conn:
        status = dict(conn.execute("SELECT idx, status FROM indices").fetchall())
        error_type, message, worker_id = conn.execute(
            "SELECT error_type, error_message, worker_id FROM indices WHERE idx=?", (victim,)
        ).fetchone()
        dead = conn.execute("SELECT worker_id, status, exit_reason FROM workers WHERE pid=?", (pid,)).fetchall()
        run_status = conn.execute("SELECT status FROM runs").fetchone()[0]
    assert status == {i: "error" if i == victim else "completed" for i in range(n)}
    assert error_type == "WorkerDiedError"
    assert message == f"Worker process {pid} {_DEATH[backend]} while running index {victim}."
    assert [(w, s) for w, s, _ in dead] == [(worker_id, "dead")]
    assert str(pid) in dead[0][2]
    assert run_status == "finished"
    _consistent(db, n_stages=3)

    # Nothing that had completed before the kill ran again.
    ran = ran_indices(tmp_path / "marks")
    assert completed_before and all(ran.count(i) == 1 for i in completed_before)

    # A resume executes exactly the index that was not completed.
    for marker in (tmp_path / "marks").glob("*.ran"):
        marker.unlink()
    again = run_pipeline(pipeline, n_jobs=2, backend=backend, resume=True, progress=False)
    assert ran_indices(tmp_path / "marks") == [victim]
    assert again == [[str(tmp_path / "out" / f"{i:06d}.txt")] for i in range(n)]
    assert _completed(db) == set(range(n))


_DRIVER = textwrap.dedent(
    """
    import sys
    from pathlib import Path

    from _backend_components import MarkFilter, RangeSource, TextSink
    from physicsnemo_curator import Pipeline, run_pipeline


    def main():
        backend, root, n = sys.argv[1], Path(sys.argv[2]), int(sys.argv[3])
        pipeline = Pipeline(
            source=RangeSource(n),
            filters=[MarkFilter(str(root / "marks"), delay=0.01)],
            sink=TextSink(str(root / "out")),
            db_file=root / "run.db",
            track_memory=False,
        )
        run_pipeline(pipeline, n_jobs=2, backend=backend, progress=False)


    if __name__ == "__main__":
        main()
    """
)


@pytest.mark.parametrize("backend", BACKENDS)
def test_ctrl_c_stops_and_resumes(tmp_path, backend):
    pytest.importorskip({"loky": "loky", "dask": "distributed"}.get(backend, "sqlite3"))
    n = 240
    pipeline = _pipeline(tmp_path, n, delay=0.01)
    db = pipeline.db_path
    script = tmp_path / "driver.py"
    script.write_text(_DRIVER)
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(TESTS), os.environ.get("PYTHONPATH", "")]))
    driver = subprocess.Popen(
        [sys.executable, str(script), backend, str(tmp_path), str(n)],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        _wait(lambda: len(_completed(db)) >= 20 or driver.poll() is not None, what="twenty indices to complete")
        assert driver.poll() is None, driver.communicate()[1]
        os.kill(driver.pid, signal.SIGINT)
        _, stderr = driver.communicate(timeout=60)
    finally:
        if driver.poll() is None:
            driver.kill()
            driver.wait()
    assert driver.returncode != 0
    assert "KeyboardInterrupt" in stderr, stderr[-2000:]

    with _ro(db) as conn:
        run_status = conn.execute("SELECT status FROM runs").fetchone()[0]
        workers = conn.execute("SELECT pid, status FROM workers").fetchall()
    assert run_status == "interrupted"
    assert len({pid for pid, _ in workers}) >= 2 and driver.pid not in {pid for pid, _ in workers}
    assert all(state in ("stopped", "dead") for _, state in workers), workers
    _wait(lambda: not any(_alive(pid) for pid, _ in workers), timeout=30, what="the workers to exit")
    _consistent(db, n_stages=3)
    completed = _completed(db)
    assert 20 <= len(completed) < n

    for marker in (tmp_path / "marks").glob("*.ran"):
        marker.unlink()
    results = run_pipeline(pipeline, n_jobs=2, backend=backend, resume=True, progress=False)
    assert ran_indices(tmp_path / "marks") == sorted(set(range(n)) - completed)
    assert results == [[str(tmp_path / "out" / f"{i:06d}.txt")] for i in range(n)]
    assert _completed(db) == set(range(n))
