"""One watcher of one run store: cheap polls, incremental reads, payloads on demand."""

from __future__ import annotations

import logging
import os
import sqlite3
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from physicsnemo_curator.monitor import payloads
from physicsnemo_curator.monitor._reader import (
    INVALID,
    OPEN,
    WAITING,
    StoreReader,
    read_indices_after,
    read_logs_after,
    read_meta,
    read_runs,
    read_stage_times_after,
    read_stages,
    read_workers,
)
from physicsnemo_curator.monitor._table import IndexTable
from physicsnemo_curator.monitor.artifacts import artifacts_payload

logger = logging.getLogger(__name__)

READ_CHUNK = 50_000
"""Index rows read per query; a first load of a large store reads in chunks of this size."""

KEPT_LOGS = 500


@dataclass
class Cursor:
    """How far a :class:`RunMonitor` has read: the store generation and the last ``seq`` per growing table."""

    generation: str | None = None
    index_seq: int = 0
    log_seq: int = 0


@dataclass
class PollResult:
    """What one :meth:`RunMonitor.poll` found.

    ``changed`` is ``False`` for an idle poll, and nothing else is then set.
    ``reload`` means everything was read again: first open, a reset of the
    store, or a replaced file. ``rows`` are the :class:`IndexTable` rows
    inserted or replaced by this poll, and ``new_logs`` the log rows read.
    """

    changed: bool = False
    reload: bool = False
    state: str = WAITING
    rows: np.ndarray = field(default_factory=lambda: np.empty(0, dtype=np.int64))
    new_logs: list[dict[str, Any]] = field(default_factory=list)

    @property
    def n_rows(self) -> int:
        return int(self.rows.size)


class RunMonitor:
    """Watch the run store at ``path`` and keep its content in memory, incrementally.

    Call :meth:`poll` as often as you like. An idle poll costs a ``stat``
    and one ``PRAGMA data_version``, and a poll after ``k`` new indices
    reads only those ``k`` rows and their stage times. A change of
    ``meta.generation`` (a reset), a replaced file or a changed stage list
    triggers a full reload. Build view data with :meth:`progress`,
    :meth:`timeline`, :meth:`stage_bars`, :meth:`artifacts` and the
    functions of :mod:`physicsnemo_curator.monitor.payloads` applied to
    :attr:`table`.

    Parameters
    ----------
    path : str or os.PathLike
        The run store's database file; it may not exist yet.
    clock : callable, optional
        Returns the current Unix time; tests pass a fake one.
    stale_after : float
        Seconds without a heartbeat after which a worker is shown as stale.

    Examples
    --------
    >>> with RunMonitor("pipeline.db") as monitor:  # doctest: +SKIP
    ...     monitor.poll()
    ...     monitor.progress()["completed"]
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        clock: Callable[[], float] = time.time,
        stale_after: float = payloads.STALE_AFTER_SECONDS,
    ) -> None:
        self.reader = StoreReader(path)
        self.clock = clock
        self.stale_after = stale_after
        self.cursor = Cursor()
        self.table = IndexTable()
        self.meta: dict[str, Any] = {}
        self.stages: list[dict[str, Any]] = []
        self.runs: list[dict[str, Any]] = []
        self.workers: list[dict[str, Any]] = []
        self.logs: deque[dict[str, Any]] = deque(maxlen=KEPT_LOGS)
        self.last_change = clock()
        self.polls = 0

    @property
    def path(self) -> str:
        return str(self.reader.path)

    @property
    def state(self) -> str:
        """``waiting``, ``invalid``, or the run's state: ``idle``, ``live``, ``finished``, ``failed``, ``interrupted``."""
        if self.reader.state != OPEN:
            return self.reader.state
        return payloads.run_state(self.runs)

    @property
    def message(self) -> str:
        """Why there is no data (waiting or invalid store); empty when the store is open."""
        return self.reader.message

    def __enter__(self) -> RunMonitor:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Close the store connection (a later :meth:`poll` reopens it)."""
        self.reader.close()

    # -- polling --------------------------------------------------------

    def poll(self) -> PollResult:
        """Read what changed in the store since the last poll."""
        self.polls += 1
        try:
            changed = self.reader.check()
        except sqlite3.Error as exc:
            logger.warning("Polling %s failed (%s); will retry on the next poll", self.path, exc)
            self.reader.close()
            return PollResult(changed=False, state=self.state)
        if not changed:
            return PollResult(changed=False, state=self.state)
        self.last_change = self.clock()
        if self.reader.state in (WAITING, INVALID):
            self._reset()
            return PollResult(changed=True, reload=True, state=self.reader.state)

        conn = self.reader.conn
        assert conn is not None
        try:
            conn.execute("BEGIN")
            try:
                result = self._read(conn)
            finally:
                conn.execute("COMMIT")
        except sqlite3.Error as exc:
            logger.warning("Reading %s failed (%s); will reload on the next poll", self.path, exc)
            self.reader.close()
            self._reset()
            return PollResult(changed=True, reload=True, state=self.state)
        result.state = self.state
        return result

    def _reset(self) -> None:
        self.cursor = Cursor()
        self.table = IndexTable()
        self.meta = {}
        self.stages = []
        self.runs = []
        self.workers = []
        self.logs.clear()

    def _read(self, conn: sqlite3.Connection) -> PollResult:
        meta = read_meta(conn)
        stages = read_stages(conn)
        reload = (
            self.reader.reopened
            or meta.get("generation") != self.cursor.generation
            or [(s["name"], s["kind"]) for s in stages] != [(s["name"], s["kind"]) for s in self.stages]
        )
        if reload:
            if self.table.n:
                logger.debug("Reloading %s (generation %s)", self.path, meta.get("generation"))
            self._reset()
            self.cursor.generation = meta.get("generation")
            self.table = IndexTable(len(stages))
        self.meta = meta
        self.stages = stages
        self.runs = read_runs(conn)
        self.workers = read_workers(conn)

        touched = []
        while True:
            batch = read_indices_after(conn, self.cursor.index_seq, limit=READ_CHUNK)
            if not len(batch):
                break
            upto = int(batch.seq[-1])
            stage_times = read_stage_times_after(conn, self.cursor.index_seq, upto)
            touched.append(self.table.apply(batch, stage_times))
            self.cursor.index_seq = upto
            if len(batch) < READ_CHUNK:
                break

        new_logs = read_logs_after(conn, self.cursor.log_seq)
        if new_logs:
            self.cursor.log_seq = new_logs[-1]["seq"]
            self.logs.extend(new_logs)
        rows = np.concatenate(touched) if touched else np.empty(0, dtype=np.int64)
        return PollResult(changed=True, reload=reload, rows=rows, new_logs=new_logs)

    def idle_for(self) -> float:
        """Seconds since a poll last found a change."""
        return self.clock() - self.last_change

    # -- payloads -------------------------------------------------------

    def header(self) -> dict[str, Any]:
        """Return the run's name, database path, state and a message (for waiting or invalid stores)."""
        name = os.path.basename(self.path)
        source = self.meta.get("source_name")
        digest = self.meta.get("config_hash")
        if source:
            name = f"{source} ({digest[:8]})" if digest else str(source)
        return {"name": name, "db_path": self.path, "state": self.state, "message": self.message}

    def progress(self) -> dict[str, Any]:
        """Return :func:`~physicsnemo_curator.monitor.payloads.progress_payload` at the current time."""
        return payloads.progress_payload(self.table, self.meta, self.runs, self.workers, self.clock(), self.stale_after)

    def timeline(self, max_points: int = payloads.TIMELINE_MAX_POINTS) -> tuple[dict[str, Any], bytes]:
        """Return :func:`~physicsnemo_curator.monitor.payloads.timeline_payload`."""
        return payloads.timeline_payload(self.table, max_points)

    def stage_bars(self, max_bars: int = 200) -> dict[str, Any]:
        """Return :func:`~physicsnemo_curator.monitor.payloads.stage_payload`."""
        return payloads.stage_payload(self.table, self.stages, max_bars)

    def artifacts(self, index: int | None = None, previews: bool = True) -> dict[str, Any]:
        """Return :func:`~physicsnemo_curator.monitor.artifacts.artifacts_payload` for ``index`` (or all)."""
        conn = self.reader.conn
        if conn is None:
            return {"index": index, "outputs": [], "groups": []}
        return artifacts_payload(conn, index, previews=previews, meta=self.meta)
