"""Read-only access to a run store that may not exist yet, with cheap change detection.

:class:`StoreReader` keeps one read-only connection for as long as the store
is watched. Its :meth:`StoreReader.check` costs a ``stat`` and a
``PRAGMA data_version`` when nothing changed, whatever the size of the run.
The ``read_*`` functions take a connection (``reader.conn``) and return plain
Python values or NumPy columns; the ones named ``*_after`` read only the rows
after a cursor.
"""

from __future__ import annotations

import logging
import os
import sqlite3
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from physicsnemo_curator.core.errors import NotAStoreError, SchemaVersionError
from physicsnemo_curator.core.store import open_readonly

logger = logging.getLogger(__name__)

WAITING = "waiting"
INVALID = "invalid"
OPEN = "open"

STATUS_CODES = {"completed": 0, "error": 1}
"""Index status as stored in the ``status`` byte of :class:`IndexBatch`; anything else is 2."""

STATUS_NAMES = ("completed", "error", "other")

_INDEX_COLUMNS = (
    "seq",
    "idx",
    "status",
    "run_id",
    "worker_id",
    "started_at",
    "wall_ns",
    "cpu_ns",
    "peak_mem",
    "rss_peak",
    "gpu_mem",
)

# NULL becomes -1 so every column fits a numeric array; started_at stays a float.
_INDEX_SELECT = (
    "SELECT seq, idx, CASE status WHEN 'completed' THEN 0 WHEN 'error' THEN 1 ELSE 2 END, "
    "ifnull(run_id, -1), ifnull(worker_id, -1), ifnull(started_at, 'nan'), ifnull(wall_ns, -1), "
    "ifnull(cpu_ns, -1), ifnull(peak_mem, -1), ifnull(rss_peak, -1), ifnull(gpu_mem, -1) "
    "FROM indices WHERE seq > ? ORDER BY seq"
)


@dataclass
class IndexBatch:
    """Index rows as NumPy columns, one entry per row, in ``seq`` order.

    Integer columns use ``-1`` where the store has NULL (a metric that was
    not measured); ``started_at`` uses NaN. ``status`` contains
    :data:`STATUS_CODES`. ``errors`` maps the index of every failed row to
    ``(error_type, error_message)``.
    """

    seq: np.ndarray
    idx: np.ndarray
    status: np.ndarray
    run_id: np.ndarray
    worker_id: np.ndarray
    started_at: np.ndarray
    wall_ns: np.ndarray
    cpu_ns: np.ndarray
    peak_mem: np.ndarray
    rss_peak: np.ndarray
    gpu_mem: np.ndarray
    errors: dict[int, tuple[str | None, str | None]]

    def __len__(self) -> int:
        return int(self.idx.shape[0])

    @classmethod
    def empty(cls) -> IndexBatch:
        return _batch_from_rows([], {})


def _batch_from_rows(rows: list[tuple[Any, ...]], errors: dict[int, tuple[str | None, str | None]]) -> IndexBatch:
    if rows:
        # float64 represents integers exactly up to 2**53 (104 days in ns, 8 PiB in bytes).
        table = np.array(rows, dtype=np.float64)
    else:
        table = np.empty((0, len(_INDEX_COLUMNS)), dtype=np.float64)
    columns = {}
    for position, name in enumerate(_INDEX_COLUMNS):
        column = table[:, position]
        if name == "started_at":
            columns[name] = column.copy()
        elif name == "status":
            columns[name] = column.astype(np.uint8)
        else:
            columns[name] = column.astype(np.int64)
    return IndexBatch(errors=errors, **columns)


def read_indices_after(conn: sqlite3.Connection, seq: int, limit: int | None = None) -> IndexBatch:
    """Return the index rows written after ``seq`` (all rows for ``seq=0``).

    A rerun index (resume after an error) is written again with a larger
    ``seq``, so a reader that keeps rows by ``idx`` replaces its row.
    """
    sql = _INDEX_SELECT if limit is None else _INDEX_SELECT + f" LIMIT {int(limit)}"
    rows = conn.execute(sql, (seq,)).fetchall()
    errors: dict[int, tuple[str | None, str | None]] = {}
    if rows and any(row[2] == 1 for row in rows):
        for idx, error_type, message in conn.execute(
            "SELECT idx, error_type, error_message FROM indices WHERE seq > ? AND seq <= ? AND status = 'error' "
            "ORDER BY seq",
            (seq, rows[-1][0]),
        ):
            errors[int(idx)] = (error_type, message)
    return _batch_from_rows(rows, errors)


def read_stage_times_after(
    conn: sqlite3.Connection, seq: int, upto: int | None = None
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Return ``(idx, position, wall_ns, cpu_ns)`` for the stages of indices with ``seq < row seq <= upto``."""
    rows = conn.execute(
        "SELECT s.idx, s.position, ifnull(s.wall_ns, -1), ifnull(s.cpu_ns, -1) "
        "FROM indices AS i JOIN stage_times AS s ON s.idx = i.idx WHERE i.seq > ? AND i.seq <= ?",
        (seq, (1 << 62) if upto is None else upto),
    ).fetchall()
    if not rows:
        empty = np.empty(0, dtype=np.int64)
        return empty, empty, empty, empty
    table = np.array(rows, dtype=np.int64)
    return table[:, 0], table[:, 1], table[:, 2], table[:, 3]


def read_meta(conn: sqlite3.Connection) -> dict[str, str | None]:
    """Return the ``meta`` table as a dict (``config_hash``, ``source_name``, ``total``, ...)."""
    return {key: value for key, value in conn.execute("SELECT key, value FROM meta")}


def read_stages(conn: sqlite3.Connection) -> list[dict[str, Any]]:
    """Return the pipeline's stages in order as ``{"position", "name", "kind"}`` dicts."""
    return [
        {"position": position, "name": name, "kind": kind}
        for position, name, kind in conn.execute("SELECT position, name, kind FROM stages ORDER BY position")
    ]


def read_runs(conn: sqlite3.Connection) -> list[dict[str, Any]]:
    """Return every ``run_pipeline`` call recorded in the store, oldest first."""
    cursor = conn.execute(
        "SELECT run_id, started_at, finished_at, status, backend, n_jobs, requested, host, pid FROM runs ORDER BY run_id"
    )
    names = [d[0] for d in cursor.description]
    return [dict(zip(names, row, strict=True)) for row in cursor]


def read_workers(conn: sqlite3.Connection, run_id: int | None = None) -> list[dict[str, Any]]:
    """Return the worker rows (of one run when ``run_id`` is given), in registration order."""
    sql = (
        "SELECT worker_id, run_id, pid, host, backend, started_at, heartbeat_at, status, current_index, "
        "n_done, ended_at, exit_reason FROM workers"
    )
    params: tuple[Any, ...] = ()
    if run_id is not None:
        sql += " WHERE run_id = ?"
        params = (run_id,)
    cursor = conn.execute(sql + " ORDER BY worker_id", params)
    names = [d[0] for d in cursor.description]
    return [dict(zip(names, row, strict=True)) for row in cursor]


def read_logs_after(conn: sqlite3.Connection, seq: int, limit: int = 1000) -> list[dict[str, Any]]:
    """Return up to ``limit`` log rows written after ``seq``, oldest first."""
    cursor = conn.execute(
        "SELECT seq, ts, idx, worker_id, level, logger, message FROM logs WHERE seq > ? ORDER BY seq LIMIT ?",
        (seq, limit),
    )
    names = [d[0] for d in cursor.description]
    return [dict(zip(names, row, strict=True)) for row in cursor]


def read_error_detail(conn: sqlite3.Connection, index: int) -> dict[str, Any] | None:
    """Return the error type, message and traceback recorded for ``index``, or ``None``."""
    row = conn.execute(
        "SELECT idx, error_type, error_message, traceback, worker_id, started_at FROM indices "
        "WHERE idx = ? AND status = 'error'",
        (index,),
    ).fetchone()
    if row is None:
        return None
    keys = ("index", "error_type", "error_message", "traceback", "worker_id", "started_at")
    return dict(zip(keys, row, strict=True))


def read_outputs(conn: sqlite3.Connection, index: int | None = None, limit: int = 20) -> list[dict[str, Any]]:
    """Return output files: those of ``index``, or the ``limit`` most recent ones."""
    if index is None:
        rows = conn.execute("SELECT idx, path FROM outputs ORDER BY rowid DESC LIMIT ?", (limit,)).fetchall()
    else:
        rows = conn.execute("SELECT idx, path FROM outputs WHERE idx = ? ORDER BY rowid LIMIT ?", (index, limit)).fetchall()
    return [{"index": idx, "path": path} for idx, path in rows]


def read_artifacts(conn: sqlite3.Connection, index: int | None = None, limit: int = 200) -> list[dict[str, Any]]:
    """Return filter artifacts with their stage name: those of ``index``, or up to ``limit`` per filter.

    With ``index=None`` the files a worker wrote at its final flush (no
    index) come first within each filter, then the most recent per-index
    files.
    """
    stage_names = {s["position"]: s["name"] for s in read_stages(conn)}
    if index is not None:
        rows = conn.execute(
            "SELECT idx, position, worker_id, path FROM artifacts WHERE idx = ? ORDER BY position, rowid LIMIT ?",
            (index, limit),
        ).fetchall()
    else:
        rows = []
        for (position,) in conn.execute("SELECT DISTINCT position FROM artifacts ORDER BY position").fetchall():
            rows.extend(
                conn.execute(
                    "SELECT idx, position, worker_id, path FROM artifacts WHERE position = ? "
                    "ORDER BY idx IS NOT NULL, rowid DESC LIMIT ?",
                    (position, limit),
                ).fetchall()
            )
    return [
        {
            "index": idx,
            "position": position,
            "stage": stage_names.get(position, f"stage {position}"),
            "worker_id": worker_id,
            "path": path,
        }
        for idx, position, worker_id, path in rows
    ]


class StoreReader:
    """A read-only view of the run store at ``path`` that tolerates it not existing yet.

    ``state`` is :data:`WAITING` (no file yet, or a file still being
    created), :data:`INVALID` (a file that is not a run store, with the
    reason in ``message``) or :data:`OPEN`. Call :meth:`check` on every
    poll: it opens the store when it appears and returns whether anything
    was committed since the previous call. Use as a context manager, or call
    :meth:`close`.

    Parameters
    ----------
    path : str or os.PathLike
        The run store's database file.
    """

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        self.conn: sqlite3.Connection | None = None
        self.state = WAITING
        self.message = f"Waiting for run: {self.path} does not exist yet."
        self.reopened = False
        self._data_version: int | None = None
        self._file_id: tuple[int, int] | None = None
        self._invalid_stamp: tuple[int, float] | None = None

    def __enter__(self) -> StoreReader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Close the connection; a later :meth:`check` opens it again."""
        if self.conn is not None:
            self.conn.close()
            self.conn = None
        self._data_version = None
        self._file_id = None

    def check(self) -> bool:
        """Return ``True`` when the store changed since the last call (or was just opened).

        Sets :attr:`reopened` when the connection was (re)opened by this
        call, which means every cursor must start again from zero.
        """
        self.reopened = False
        try:
            stat = os.stat(self.path)
        except FileNotFoundError:
            if self.state != WAITING or self.conn is not None:
                self.close()
                self.state = WAITING
                self.message = f"Waiting for run: {self.path} does not exist yet."
                return True
            return False
        except OSError as exc:
            message = f"{self.path} cannot be read: {exc}. Check the path and its permissions."
            if self.state == INVALID and self.message == message:
                return False
            logger.info("Not watching %s: %s", self.path, exc)
            self.close()
            self.state = INVALID
            self.message = message
            self._invalid_stamp = None
            return True

        if self.conn is not None and self._file_id != (stat.st_dev, stat.st_ino):
            logger.debug("Run store %s was replaced; reopening it", self.path)
            self.close()
        if self.conn is None:
            return self._open(stat)

        version = self.conn.execute("PRAGMA data_version").fetchone()[0]
        if version != self._data_version:
            self._data_version = version
            return True
        return False

    def _open(self, stat: os.stat_result) -> bool:
        stamp = (stat.st_size, stat.st_mtime)
        if self.state == INVALID and stamp == self._invalid_stamp:
            return False
        if stat.st_size == 0:
            return self._set_waiting(f"Waiting for run: {self.path} is still being created.")

        try:
            conn = open_readonly(self.path)
        except FileNotFoundError:
            return self._set_waiting(f"Waiting for run: {self.path} does not exist yet.")
        except (NotAStoreError, SchemaVersionError) as exc:
            if _still_being_created(self.path):
                return self._set_waiting(f"Waiting for run: {self.path} is still being created.")
            self.state = INVALID
            self.message = str(exc)
            self._invalid_stamp = stamp
            logger.info("Not watching %s: %s", self.path, exc)
            return True
        except sqlite3.Error as exc:
            self.state = INVALID
            self.message = f"{self.path} cannot be read as a run store: {exc}"
            self._invalid_stamp = stamp
            return True

        try:
            if not conn.execute("SELECT count(*) FROM meta").fetchone()[0]:
                conn.close()
                return self._set_waiting(f"Waiting for run: {self.path} has no pipeline recorded yet.")
            self._data_version = conn.execute("PRAGMA data_version").fetchone()[0]
        except sqlite3.Error:
            conn.close()
            raise

        self.conn = conn
        self._file_id = (stat.st_dev, stat.st_ino)
        self.state = OPEN
        self.message = ""
        self.reopened = True
        self._invalid_stamp = None
        logger.debug("Opened run store %s for watching", self.path)
        return True

    def _set_waiting(self, message: str) -> bool:
        changed = self.state != WAITING or self.message != message
        self.state = WAITING
        self.message = message
        return changed


def _still_being_created(path: Path) -> bool:
    """True for an SQLite file with no tables yet: a writer is about to create the schema."""
    try:
        conn = sqlite3.connect(path.resolve().as_uri() + "?mode=ro", uri=True, timeout=1.0)
    except sqlite3.Error:
        return False
    try:
        return conn.execute("SELECT count(*) FROM sqlite_master").fetchone()[0] == 0
    except sqlite3.Error:
        return False
    finally:
        conn.close()
