"""The dashboard's in-memory copy of a run store, read in bulk on open and incrementally after.

:class:`StoreModel` follows :class:`~physicsnemo_curator.monitor.RunMonitor`
(same :class:`~physicsnemo_curator.monitor.StoreReader`, same
:class:`~physicsnemo_curator.monitor.IndexTable`, same payload functions)
but reads index rows and stage times with one ``group_concat`` query per
batch, parsed by NumPy. On a 2-core VM, fetching a million indices row by row
took about 8 s and this takes about 1.5 s (see ``benchmarks/README.md``).
"""

from __future__ import annotations

import logging
import os
import sqlite3
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from physicsnemo_curator.core.errors import NotAStoreError, SchemaVersionError
from physicsnemo_curator.core.store import open_readonly
from physicsnemo_curator.monitor import (
    INVALID,
    OPEN,
    WAITING,
    IndexBatch,
    IndexTable,
    StoreReader,
    payloads,
    read_meta,
    read_runs,
    read_stages,
    read_workers,
)

logger = logging.getLogger(__name__)

# NULL becomes -1 so every column parses as numbers. started_at and cpu_ns are not read:
# no dashboard view uses them, and leaving them out saves a fifth of the load time.
_COLUMNS = (
    ("seq", "seq"),
    ("idx", "idx"),
    ("status", "CASE status WHEN 'completed' THEN 0 WHEN 'error' THEN 1 ELSE 2 END"),
    ("run_id", "ifnull(run_id, -1)"),
    ("worker_id", "ifnull(worker_id, -1)"),
    ("wall_ns", "ifnull(wall_ns, -1)"),
    ("peak_mem", "ifnull(peak_mem, -1)"),
    ("rss_peak", "ifnull(rss_peak, -1)"),
    ("gpu_mem", "ifnull(gpu_mem, -1)"),
)

PARALLEL_LOAD_ROWS = 50_000
"""A first load of more index rows than this reads stage times on a second connection at the same time."""

_INDEX_SQL = "SELECT count(*), " + ", ".join(f"group_concat({expr})" for _, expr in _COLUMNS) + " FROM indices WHERE seq > ? AND seq <= ?"


def _parse(text: str | None, count: int) -> np.ndarray:
    if not count:
        return np.empty(0, dtype=np.int64)
    values = np.fromstring(text, dtype=np.int64, sep=",")  # noqa: NPY201 - the text mode is not deprecated
    if values.shape[0] != count:
        raise sqlite3.DatabaseError(f"expected {count} values from the store, parsed {values.shape[0]}")
    return values


def read_indices_bulk(conn: sqlite3.Connection, after: int, upto: int) -> IndexBatch:
    """Return the index rows with ``after < seq <= upto`` as an :class:`IndexBatch`, in one query.

    ``started_at`` is NaN and ``cpu_ns`` is -1 in the batch: no dashboard view uses them.
    """
    row = conn.execute(_INDEX_SQL, (after, upto)).fetchone()
    count = int(row[0])
    columns = {name: _parse(text, count) for (name, _), text in zip(_COLUMNS, row[1:])}
    if count > 1 and not bool(np.all(np.diff(columns["seq"]) > 0)):
        order = np.argsort(columns["seq"], kind="stable")
        columns = {name: values[order] for name, values in columns.items()}
    columns["started_at"] = np.full(count, np.nan)
    columns["cpu_ns"] = np.full(count, -1, dtype=np.int64)
    columns["status"] = columns["status"].astype(np.uint8)
    errors: dict[int, tuple[str | None, str | None]] = {}
    if count and (columns["status"] == 1).any():
        for idx, error_type, message in conn.execute(
            "SELECT idx, error_type, error_message FROM indices WHERE seq > ? AND seq <= ? AND status = 'error' ORDER BY seq",
            (after, upto),
        ):
            errors[int(idx)] = (error_type, message)
    return IndexBatch(errors=errors, **columns)


def read_stage_times_bulk(conn: sqlite3.Connection, after: int, upto: int) -> tuple[np.ndarray, ...]:
    """Return ``(idx, position, wall_ns, cpu_ns)`` of the stages of indices with ``after < seq <= upto``.

    ``cpu_ns`` is returned empty: no dashboard view uses it.
    """
    parts = "count(*), group_concat(s.idx), group_concat(s.position), group_concat(ifnull(s.wall_ns, -1))"
    if after == 0:
        # A first load reads the whole table in key order, cheaper than the join.
        row = conn.execute(f"SELECT {parts} FROM stage_times AS s").fetchone()  # noqa: S608
    else:
        row = conn.execute(
            f"SELECT {parts} FROM indices AS i JOIN stage_times AS s ON s.idx = i.idx WHERE i.seq > ? AND i.seq <= ?",  # noqa: S608
            (after, upto),
        ).fetchone()
    count = int(row[0])
    return (*(_parse(text, count) for text in row[1:]), np.empty(0, dtype=np.int64))


class StoreModel:
    """Watch one run store and keep its indices in an :class:`IndexTable`, incrementally.

    Parameters
    ----------
    path : str or Path
        The run store; it may not exist yet.
    clock : callable
        Returns the current Unix time.
    """

    def __init__(self, path: str | os.PathLike[str], clock: Callable[[], float] = time.time) -> None:
        self.reader = StoreReader(path)
        self.clock = clock
        self.table = IndexTable()
        self.index_seq = 0
        self.generation: str | None = None
        self.meta: dict[str, Any] = {}
        self.stages: list[dict[str, Any]] = []
        self.runs: list[dict[str, Any]] = []
        self.workers: list[dict[str, Any]] = []
        self.last_change = clock()
        self.last_rows = np.empty(0, dtype=np.int64)
        self.reloaded = False

    @property
    def path(self) -> Path:
        return self.reader.path

    @property
    def state(self) -> str:
        """``waiting``, ``invalid``, or the run's state (``idle``, ``live``, ``finished``, ``failed``, ``interrupted``)."""
        if self.reader.state != OPEN:
            return self.reader.state
        return payloads.run_state(self.runs)

    @property
    def message(self) -> str:
        return self.reader.message

    def close(self) -> None:
        self.reader.close()

    def idle_for(self) -> float:
        """Return the seconds since a poll last found a change."""
        return self.clock() - self.last_change

    def poll(self) -> bool:
        """Read what changed; return ``True`` when something did."""
        try:
            changed = self.reader.check()
        except sqlite3.Error as exc:
            logger.warning("Polling %s failed (%s); retrying on the next poll", self.path, exc)
            self.reader.close()
            return False
        self.last_rows = np.empty(0, dtype=np.int64)
        self.reloaded = False
        if not changed:
            return False
        self.last_change = self.clock()
        if self.reader.state in (WAITING, INVALID):
            self._reset()
            return True
        conn = self.reader.conn
        assert conn is not None
        try:
            conn.execute("BEGIN")
            try:
                self._read(conn)
            finally:
                conn.execute("COMMIT")
        except sqlite3.Error as exc:
            logger.warning("Reading %s failed (%s); reloading on the next poll", self.path, exc)
            self.reader.close()
            self._reset()
        return True

    def _reset(self) -> None:
        self.table = IndexTable()
        self.index_seq = 0
        self.generation = None
        self.meta, self.stages, self.runs, self.workers = {}, [], [], []
        self.reloaded = True

    def _read(self, conn: sqlite3.Connection) -> None:
        meta = read_meta(conn)
        stages = read_stages(conn)
        if (
            self.reader.reopened
            or meta.get("generation") != self.generation
            or [(s["name"], s["kind"]) for s in stages] != [(s["name"], s["kind"]) for s in self.stages]
        ):
            self._reset()
            self.generation = meta.get("generation")
            self.table = IndexTable(len(stages))
        self.meta, self.stages = meta, stages
        self.runs = read_runs(conn)
        self.workers = read_workers(conn)

        upto = conn.execute("SELECT ifnull(max(seq), 0) FROM indices").fetchone()[0]
        if upto <= self.index_seq:
            return
        started = time.perf_counter()
        if self.index_seq == 0 and upto > PARALLEL_LOAD_ROWS:
            batch, stage_times = self._first_load(conn, upto)
        else:
            batch = read_indices_bulk(conn, self.index_seq, upto)
            stage_times = read_stage_times_bulk(conn, self.index_seq, upto)
        self.last_rows = self.table.apply(batch, stage_times)
        self.index_seq = upto
        logger.debug("Read %d index rows of %s in %.3f s", len(batch), self.path, time.perf_counter() - started)

    def _first_load(self, conn: sqlite3.Connection, upto: int) -> tuple[IndexBatch, tuple[np.ndarray, ...]]:
        """Read a large store's indices and stage times at once, on two connections.

        SQLite releases the GIL while it runs a query, so the two reads share
        the CPUs. The second connection's snapshot is the same or newer:
        stage rows of indices beyond ``upto`` are ignored by
        :meth:`IndexTable.apply` and read again by the next poll.
        """
        outcome: dict[str, Any] = {}

        def read_stages_elsewhere() -> None:
            try:
                other = open_readonly(self.path)
            except (OSError, sqlite3.Error, NotAStoreError, SchemaVersionError) as exc:
                outcome["error"] = exc
                return
            try:
                outcome["stages"] = read_stage_times_bulk(other, 0, upto)
            except sqlite3.Error as exc:
                outcome["error"] = exc
            finally:
                other.close()

        helper = threading.Thread(target=read_stages_elsewhere, name="psnc-dashboard-stages", daemon=True)
        helper.start()
        batch = read_indices_bulk(conn, 0, upto)
        helper.join()
        if "stages" in outcome:
            return batch, outcome["stages"]
        logger.debug("Reading stage times of %s on a second connection failed (%s); reading them here", self.path, outcome.get("error"))
        return batch, read_stage_times_bulk(conn, 0, upto)

    # -- payloads -----------------------------------------------------------

    def header(self) -> dict[str, Any]:
        """Return the run's name, database path, state and a message."""
        name = self.path.name
        source = self.meta.get("source_name")
        digest = self.meta.get("config_hash")
        if source:
            name = f"{source} ({digest[:8]})" if digest else str(source)
        return {"name": name, "db_path": str(self.path), "state": self.state, "message": self.message}

    def progress(self) -> dict[str, Any]:
        return payloads.progress_payload(self.table, self.meta, self.runs, self.workers, self.clock())
