"""Code that runs inside worker processes, shared by the parallel backends."""

from __future__ import annotations

import os
import pickle
import socket
import threading
from typing import Any

from physicsnemo_curator.core.execute import IndexRunner, RunContext
from physicsnemo_curator.core.store import close_writers

_runners: dict[tuple[int, str], IndexRunner] = {}
_lock = threading.Lock()


def portable_error(error: BaseException | None) -> BaseException | None:
    """Return ``error`` if it pickles, else a RuntimeError that keeps its type and message."""
    if error is None:
        return None
    try:
        pickle.loads(pickle.dumps(error))
        return error
    except Exception:  # noqa: BLE001 - anything that fails to round-trip is replaced
        return RuntimeError(f"{type(error).__name__}: {error}")


def runner_for(key: str, pipeline_bytes: bytes, context: RunContext | None) -> IndexRunner:
    """Return this process's runner for the run ``key``, opening it on first use."""
    slot = (os.getpid(), key)
    with _lock:
        runner = _runners.get(slot)
        if runner is None:
            runner = IndexRunner(pickle.loads(pipeline_bytes), context)
            runner.open(register=True)
            _runners[slot] = runner
        return runner


def run_chunk(key: str, pipeline_bytes: bytes, context: RunContext | None, indices: list[int], replace: set[int]) -> dict[str, Any]:
    """Run ``indices`` in order and return their results (records only in remote mode)."""
    runner = runner_for(key, pipeline_bytes, context)
    remote = context is not None and context.remote
    results = []
    for index in indices:
        paths, record, error = runner.run_index(index, replace=index in replace)
        results.append((index, paths, record if remote else None, portable_error(error)))
    unwritten = runner.commit()
    if unwritten:
        results = [(i, None if i in unwritten else p, r, unwritten.get(i, e)) for i, p, r, e in results]
    return {"pid": os.getpid(), "host": socket.gethostname(), "worker_id": runner.worker_id, "results": results}


def finish(key: str) -> dict[str, Any]:
    """Flush the filters of this process's runner for ``key`` and close it."""
    slot = (os.getpid(), key)
    with _lock:
        runner = _runners.pop(slot, None)
    if runner is None:
        return {"pid": os.getpid(), "flushed": []}
    flushed = runner.flush_filters()
    runner.close()
    if runner.context is not None and runner.context.db_path:
        close_writers(runner.context.db_path)
    return {"pid": os.getpid(), "host": socket.gethostname(), "worker_id": runner.worker_id, "flushed": flushed}
