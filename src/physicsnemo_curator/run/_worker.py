"""Code that runs inside worker processes, shared by the parallel backends.

A worker keeps one :class:`~physicsnemo_curator.core.execute.IndexRunner`
per run, process and thread, opened on its first chunk and closed by
:func:`finish`. Before it opens one, it checks that it can write the run
store that the driver opened (same file, same run). A worker that cannot,
for example on another host of a Dask cluster, sends its records back with
its results, and the driver writes them.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import pickle
import socket
import sqlite3
import struct
import threading
from pathlib import Path
from typing import Any

from physicsnemo_curator.core.execute import IndexRunner, RunContext
from physicsnemo_curator.core.store import close_writers, open_readonly

logger = logging.getLogger(__name__)

IDLE = -1
"""The value of a worker's slot file while no index runs."""

_SLOT = struct.Struct("<q")

_runners: dict[tuple[int, int, str], IndexRunner] = {}
_contexts: dict[tuple[int, str], RunContext | None] = {}
_slot_files: dict[tuple[int, str], int] = {}
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


def store_reachable(db_path: str, run_id: int | None, driver: tuple[str, int]) -> bool:
    """Return whether this process can write the run store that the driver at ``driver`` (host, pid) opened.

    The file must exist, be writable with its directory (WAL needs its side
    files), and hold the driver's run: a same-named file on another host is
    a different store.
    """
    path = Path(db_path)
    if not path.is_file():
        return False
    if not os.access(path, os.R_OK | os.W_OK) or not os.access(path.parent, os.W_OK | os.X_OK):
        return False
    try:
        conn = open_readonly(path)
    except (OSError, sqlite3.Error, ValueError) as exc:
        logger.debug("Run store %s is not readable from this worker: %s", path, exc)
        return False
    except Exception as exc:  # noqa: BLE001 - NotAStoreError and the like: not the driver's store
        logger.debug("Run store %s is not usable from this worker: %s", path, exc)
        return False
    try:
        row = conn.execute("SELECT host, pid FROM runs WHERE run_id IS ?", (run_id,)).fetchone()
    except sqlite3.Error:
        row = None
    finally:
        conn.close()
    return row is not None and (row[0], row[1]) == tuple(driver)


def _context_for(key: str, context: RunContext | None, driver: tuple[str, int] | None) -> RunContext | None:
    if context is None or context.remote or driver is None or context.db_path is None:
        return context
    slot = (os.getpid(), key)
    with _lock:
        if slot in _contexts:
            return _contexts[slot]
    resolved = context
    if not store_reachable(context.db_path, context.run_id, driver):
        logger.info(
            "Worker %s on %s cannot write the run store %s, so its records go back to the driver",
            os.getpid(),
            socket.gethostname(),
            context.db_path,
        )
        resolved = dataclasses.replace(context, remote=True)
    with _lock:
        _contexts[slot] = resolved
    return resolved


def runner_for(key: str, pipeline_bytes: bytes | str, context: RunContext | None, driver: tuple[str, int] | None = None) -> IndexRunner:
    """Return this process's and thread's runner for the run ``key``, opening it on first use.

    Runners left over from an earlier run in a reused process are closed
    first, so their heartbeats stop.
    """
    pid = os.getpid()
    slot = (pid, threading.get_ident(), key)
    with _lock:
        runner = _runners.get(slot)
        stale = [s for s in _runners if s[0] == pid and s[2] != key]
        old = [_runners.pop(s) for s in stale]
    for leftover in old:
        _close_quietly(leftover)
    if runner is not None:
        return runner

    if isinstance(pipeline_bytes, str):
        with open(pipeline_bytes, "rb") as handle:
            pipeline_bytes = handle.read()
    runner = IndexRunner(pickle.loads(pipeline_bytes), _context_for(key, context, driver))
    runner.open(register=True)
    with _lock:
        _runners[slot] = runner
    return runner


def _close_quietly(runner: IndexRunner) -> None:
    try:
        runner.close()
    except Exception as exc:  # noqa: BLE001 - a stale runner must not fail the new run
        logger.warning("Closing a runner left from an earlier run failed: %s", exc)


def _slot_writer(key: str, slot_dir: str | None) -> Any:
    # NOTE: one slot per process, so in a Dask worker with several threads the
    # file names only the index started last, and a death may blame the wrong one.
    if slot_dir is None:
        return None
    slot = (os.getpid(), key)
    fd = _slot_files.get(slot)
    if fd is None:
        path = os.path.join(slot_dir, str(os.getpid()))
        try:
            fd = os.open(path, os.O_CREAT | os.O_WRONLY, 0o600)
            os.pwrite(fd, _SLOT.pack(IDLE), 0)
        except OSError as exc:
            # A worker on another host does not share the driver's directory.
            logger.debug("Slot file %s cannot be written, so a death of worker %s cannot be attributed: %s", path, os.getpid(), exc)
            return None
        _slot_files[slot] = fd
    return lambda index: os.pwrite(fd, _SLOT.pack(index), 0)


def process_alive(pid: int) -> bool:
    """Return whether process ``pid`` of this host is running (a zombie counts as dead)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii", errors="replace") as handle:
            state = handle.read().rsplit(")", 1)[1].split()[0]
    except FileNotFoundError:
        return not os.path.isdir("/proc/self")
    except (OSError, IndexError):
        return True
    return state not in ("Z", "X")


def dead_slots(slot_dir: str) -> dict[int, int | None]:
    """Return ``{pid: index it was running or None}`` for the slot files of dead workers, and remove those files."""
    out: dict[int, int | None] = {}
    for name in os.listdir(slot_dir):
        if not name.isdigit() or process_alive(int(name)):
            continue
        path = os.path.join(slot_dir, name)
        out[int(name)] = read_slot(path)
        try:
            os.unlink(path)
        except FileNotFoundError:
            pass
    return out


def read_slot(path: str | os.PathLike[str]) -> int | None:
    """Return the index recorded in a worker's slot file, or ``None`` when the worker is idle or the file is unreadable."""
    try:
        with open(path, "rb") as handle:
            data = handle.read(_SLOT.size)
    except OSError:
        return None
    if len(data) != _SLOT.size:
        return None
    value = _SLOT.unpack(data)[0]
    return None if value == IDLE else value


def _recorded_in_run(runner: IndexRunner, indices: list[int]) -> tuple[dict[int, list[str]], set[int]]:
    """Return the paths of the indices this run completed, and every index that has a row."""
    writer = runner.writer
    if writer is None or runner.context is None:
        return {}, set()
    writer.flush()
    wanted = json.dumps(indices)
    rows = writer.conn.execute(
        "SELECT idx, status, run_id FROM indices WHERE idx IN (SELECT value FROM json_each(?))", (wanted,)
    ).fetchall()
    out: dict[int, list[str]] = {
        idx: [] for idx, status, run_id in rows if status == "completed" and run_id == runner.context.run_id
    }
    if out:
        for index, path in writer.conn.execute(
            "SELECT idx, path FROM outputs WHERE idx IN (SELECT value FROM json_each(?)) ORDER BY rowid",
            (json.dumps(sorted(out)),),
        ):
            out[index].append(path)
    return out, {row[0] for row in rows}


def run_chunk(
    key: str,
    pipeline_bytes: bytes | str,
    context: RunContext | None,
    indices: list[int],
    replace: set[int],
    driver: tuple[str, int] | None = None,
    slot_dir: str | None = None,
    skip_recorded: bool = False,
) -> dict[str, Any]:
    """Run ``indices`` in order and return their results.

    Parameters
    ----------
    key : str
        Identifies the run, so a reused worker process opens a runner per run.
    pipeline_bytes : bytes or str
        The pickled pipeline, or the path of a local file that contains it
        (read once per process and run).
    context : RunContext or None
        The run's store and id; ``None`` with metrics off.
    indices : list of int
        Run in this order.
    replace : set of int
        Indices that already have a row in the store.
    driver : (host, pid), optional
        The driver process; when given, the worker checks that it can write
        the store and otherwise sends its records back.
    slot_dir : str, optional
        A directory where the worker keeps a file, named after its pid, that
        contains the index it is running, so the driver can tell exactly
        which index was running if the process dies.
    skip_recorded : bool
        Return indices that this run already completed instead of running
        them again (for schedulers that rerun a task after a worker died).

    Returns
    -------
    dict
        ``pid``, ``host``, ``worker_id``, ``remote`` and ``results``: one
        ``(index, paths, record, error)`` per index, where ``record`` is set
        only in remote mode. Local records are committed before this returns.
    """
    runner = runner_for(key, pipeline_bytes, context, driver)
    remote = runner.context is not None and runner.context.remote
    if driver is not None and driver[0] != socket.gethostname():
        # Pids in the slot directory are read as pids of the driver's host.
        slot_dir = None
    done: dict[int, list[str]] = {}
    if skip_recorded and not remote:
        done, rows = _recorded_in_run(runner, indices)
        replace = set(replace) | rows
    mark = _slot_writer(key, slot_dir)
    results = []
    for index in indices:
        if index in done:
            results.append((index, done[index], None, None))
            continue
        if mark is not None:
            mark(index)
        paths, record, error = runner.run_index(index, replace=index in replace)
        if mark is not None:
            mark(IDLE)
        results.append((index, paths, record if remote else None, portable_error(error)))
    unwritten = runner.commit()
    if unwritten:
        results = [(i, None if i in unwritten else p, r, unwritten.get(i, e)) for i, p, r, e in results]
    return {
        "pid": os.getpid(),
        "host": socket.gethostname(),
        "worker_id": runner.worker_id,
        "remote": remote,
        "results": results,
    }


def finish(key: str, hold: float = 0.0) -> dict[str, Any]:
    """Flush the filters of this process's runners for ``key`` and close them.

    ``hold`` keeps the process busy a moment afterwards, so that an executor
    without worker affinity hands the next finish call to another process.
    """
    pid = os.getpid()
    with _lock:
        runners = [_runners.pop(s) for s in list(_runners) if s[0] == pid and s[2] == key]
        _contexts.pop((pid, key), None)
        fd = _slot_files.pop((pid, key), None)
    if fd is not None:
        os.close(fd)
    flushed: list[tuple[int, str]] = []
    worker_ids = []
    remote = False
    for runner in runners:
        flushed.extend(runner.flush_filters())
        runner.close()
        worker_ids.append(runner.worker_id)
        remote = remote or (runner.context is not None and runner.context.remote)
        if runner.context is not None and runner.context.db_path and not runner.context.remote:
            close_writers(runner.context.db_path)
    if hold > 0:
        threading.Event().wait(hold)
    return {
        "pid": pid,
        "host": socket.gethostname(),
        "worker_ids": worker_ids,
        "had_runner": bool(runners),
        "remote": remote,
        "flushed": flushed,
    }


def abandon(key: str) -> int:
    """Close this process's runners for ``key`` without flushing (after an interrupted run)."""
    pid = os.getpid()
    with _lock:
        runners = [_runners.pop(s) for s in list(_runners) if s[0] == pid and s[2] == key]
        _contexts.pop((pid, key), None)
    for runner in runners:
        _close_quietly(runner)
    return len(runners)
