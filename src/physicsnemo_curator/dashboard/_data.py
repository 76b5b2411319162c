"""The dashboard's view of one run store, shared by every browser session.

:class:`DashboardData` wraps a :class:`~physicsnemo_curator.dashboard._model.StoreModel`
(read-only connection, incremental reads) behind a lock, polls it at most
once per ``min_gap`` seconds however many sessions ask, and caches the
payloads of the current data version so that sessions share the work.
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

from physicsnemo_curator.dashboard._cli import IndexQuery
from physicsnemo_curator.dashboard._model import StoreModel
from physicsnemo_curator.monitor import OPEN, artifacts_payload, filter_classes, payloads, read_error_detail, read_outputs

logger = logging.getLogger(__name__)

PAGE_SIZES = (20, 50, 100)

TIMELINE_POINTS = 50_000
"""Timeline points sent to each browser session at most; larger runs are thinned (every failure is kept)."""

SLOWEST_KEPT = 50
"""Slowest indices tracked between polls (the page shows 10)."""


class _RowView:
    """A subset of an :class:`IndexTable`'s rows that the payload functions accept in its place."""

    def __init__(self, table: Any, rows: np.ndarray) -> None:
        self.table = table
        self.rows = rows
        self.n = int(rows.size)

    def column(self, name: str) -> np.ndarray:
        return self.table.column(name)[self.rows]


class _LogBins:
    """Counts of a per-index byte measure in fixed power-of-two bins (4 per octave), updated per new row."""

    EDGES = 2.0 ** np.arange(0, 50.25, 0.25)

    def __init__(self) -> None:
        self.counts = np.zeros(self.EDGES.size - 1, dtype=np.int64)

    def add(self, values: np.ndarray) -> None:
        values = values[values > 0]
        if values.size:
            bins = np.clip(np.searchsorted(self.EDGES, values, side="right") - 1, 0, self.counts.size - 1)
            self.counts += np.bincount(bins, minlength=self.counts.size)

    def payload(self, field: str) -> dict[str, Any]:
        used = np.flatnonzero(self.counts)
        if not used.size:
            return {"field": field, "edges": [], "counts": [], "count": 0, "unit": "bytes"}
        low, high = int(used[0]), int(used[-1]) + 1
        return {
            "field": field,
            "edges": self.EDGES[low : high + 1].tolist(),
            "counts": self.counts[low:high].tolist(),
            "count": int(self.counts.sum()),
            "unit": "bytes",
        }


class _IncrementalViews:
    """The views whose cost must follow the new rows, not the run: timeline, histograms, slowest indices.

    After a poll that only added rows, each view is updated from those rows.
    A reload or a replaced row (a rerun index) rebuilds them from the table.
    """

    def __init__(self, max_points: int) -> None:
        self.max_points = max_points
        self.shown = np.empty(0, dtype=np.int64)
        self.top = np.empty(0, dtype=np.int64)
        self.bins = {"memory": _LogBins(), "gpu_mem": _LogBins()}
        self.seen = 0

    def update(self, table: Any, touched: np.ndarray, reloaded: bool) -> None:
        appended = not reloaded and table.n - self.seen == touched.size and bool(np.all(touched >= self.seen))
        if appended:
            rows = touched
        else:
            rows = np.arange(table.n)
            self.shown = np.empty(0, dtype=np.int64)
            self.top = np.empty(0, dtype=np.int64)
            self.bins = {"memory": _LogBins(), "gpu_mem": _LogBins()}
        self.seen = table.n
        if not rows.size:
            return
        view = _RowView(table, rows)
        self.bins["memory"].add(payloads.memory_column(view))
        self.bins["gpu_mem"].add(view.column("gpu_mem").astype(np.float64))
        candidates = np.concatenate([self.top, rows])
        wall = table.column("wall_ns")[candidates]
        keep = min(SLOWEST_KEPT, candidates.size)
        self.top = candidates[np.argpartition(-wall, keep - 1)[:keep]] if keep else candidates
        self.shown = np.concatenate([self.shown, rows])
        if self.shown.size > self.max_points:
            # Thinning to half the budget leaves room for many polls before the next thinning.
            self.shown = self._thin(table, self.shown, self.max_points // 2)

    def _thin(self, table: Any, rows: np.ndarray, target: int) -> np.ndarray:
        # Every failure is kept; the others are taken at an even stride, as the monitor's own thinning does.
        status = table.column("status")[rows]
        failures = rows[status != 0]
        others = rows[status == 0]
        room = max(0, target - failures.size)
        step = max(1, -(-others.size // max(room, 1)))
        return np.union1d(failures[: self.max_points], others[::step][:room])

    def timeline(self, table: Any) -> tuple[dict[str, Any], bytes]:
        meta, buffer = payloads.timeline_payload(_RowView(table, self.shown), self.max_points)
        meta["total_points"] = int(table.n)
        return meta, buffer

    def slowest(self, table: Any, n: int) -> list[dict[str, Any]]:
        return payloads.slowest_indices(_RowView(table, self.top), n)


class DashboardData:
    """Shared, lock-protected access to one run store for the dashboard.

    Parameters
    ----------
    path : str or Path
        The run store file. It may not exist yet, and the page then shows that it is waiting.
    min_gap : float
        Polls closer together than this many seconds reuse the last result.
    clock : callable
        Returns the current Unix time.
    """

    def __init__(self, path: str | os.PathLike[str], min_gap: float = 0.25, clock: Callable[[], float] = time.time) -> None:
        self.path = Path(path)
        self.monitor = StoreModel(self.path, clock=clock)
        self.min_gap = min_gap
        self.version = 0
        self.polls = 0
        self.last_poll_seconds = 0.0
        self.last_rows = 0
        self._lock = threading.RLock()
        self._last_poll = -1e9
        self._cache: dict[str, tuple[int, Any]] = {}
        self._views = _IncrementalViews(TIMELINE_POINTS)

    # -- polling ----------------------------------------------------------

    def poll(self, force: bool = False) -> int:
        """Read what changed in the store (at most once per ``min_gap``); return the data version."""
        with self._lock:
            now = time.monotonic()
            if not force and now - self._last_poll < self.min_gap:
                return self.version
            self._last_poll = now
            started = time.perf_counter()
            changed = self.monitor.poll()
            self.polls += 1
            if changed:
                self._views.update(self.monitor.table, self.monitor.last_rows, self.monitor.reloaded)
                self.version += 1
                self.last_rows = int(self.monitor.last_rows.size)
                self.last_poll_seconds = time.perf_counter() - started
                logger.debug("Poll of %s read %d rows in %.4f s", self.path, self.last_rows, self.last_poll_seconds)
            return self.version

    def close(self) -> None:
        with self._lock:
            self.monitor.close()

    @property
    def state(self) -> str:
        return self.monitor.state

    @property
    def is_open(self) -> bool:
        return self.monitor.reader.state == OPEN

    @property
    def live(self) -> bool:
        return self.monitor.state == "live"

    def _cached(self, key: str, build: Callable[[], Any]) -> Any:
        with self._lock:
            hit = self._cache.get(key)
            if hit is not None and hit[0] == self.version:
                return hit[1]
            value = build()
            self._cache[key] = (self.version, value)
            return value

    # -- payloads (cached per data version) --------------------------------

    def header(self) -> dict[str, Any]:
        """Return the run's name, path and state (never cached: a run's driver can die without writing)."""
        with self._lock:
            return self.monitor.header()

    def progress(self) -> dict[str, Any]:
        """Return the progress payload at the current time (never cached: elapsed time moves)."""
        with self._lock:
            return self.monitor.progress()

    def timeline(self) -> tuple[dict[str, Any], bytes]:
        return self._cached("timeline", lambda: self._views.timeline(self.monitor.table))

    def stage_bars(self) -> dict[str, Any]:
        return self._cached("stage_bars", lambda: payloads.stage_payload(self.monitor.table, self.monitor.stages))

    def histogram(self, field: str) -> dict[str, Any]:
        return self._cached(f"hist:{field}", lambda: self._views.bins[field].payload(field))

    def slowest(self, n: int = 10) -> list[dict[str, Any]]:
        return self._cached(f"slowest:{n}", lambda: self._views.slowest(self.monitor.table, n))

    def errors(self, n: int = 10) -> list[dict[str, Any]]:
        return self._cached(f"errors:{n}", lambda: payloads.error_log(self.monitor.table, n))

    def stages(self) -> list[dict[str, Any]]:
        return list(self.monitor.stages)

    def stage_stats(self) -> list[dict[str, Any]]:
        return self._cached("stage_stats", lambda: payloads.stage_statistics(self.monitor.table, self.monitor.stages))

    def meta(self) -> dict[str, Any]:
        return dict(self.monitor.meta)

    def filter_classes(self) -> dict[int, type]:
        return self._cached("filter_classes", lambda: filter_classes(self.monitor.meta))

    def recent_outputs(self, n: int = 20) -> list[dict[str, Any]]:
        return self._cached(f"outputs:{n}", lambda: self._read(lambda conn: read_outputs(conn, None, limit=n), []))

    def artifacts(self, index: int | None) -> dict[str, Any]:
        key = f"artifacts:{index}"
        return self._cached(key, lambda: self._read(lambda conn: artifacts_payload(conn, index, meta=self.monitor.meta),
                                                     {"index": index, "outputs": [], "groups": []}))

    def artifact_paths(self, position: int, index: int | None) -> list[str]:
        """Return every artifact path of the filter at ``position`` (of ``index``, or of the whole run)."""
        def read(conn: sqlite3.Connection) -> list[str]:
            if index is None:
                rows = conn.execute("SELECT DISTINCT path FROM artifacts WHERE position = ? ORDER BY rowid", (position,))
            else:
                rows = conn.execute(
                    "SELECT path FROM artifacts WHERE position = ? AND idx = ? ORDER BY rowid", (position, index)
                )
            return [r[0] for r in rows]

        return self._cached(f"paths:{position}:{index}", lambda: self._read(read, []))

    def index_detail(self, index: int) -> dict[str, Any] | None:
        """Return the stored row of ``index`` with its stage times and error, or ``None``."""
        def read(conn: sqlite3.Connection) -> dict[str, Any] | None:
            row = conn.execute(
                "SELECT idx, status, worker_id, started_at, wall_ns, cpu_ns, peak_mem, rss_peak, gpu_mem "
                "FROM indices WHERE idx = ?",
                (index,),
            ).fetchone()
            if row is None:
                return None
            keys = ("index", "status", "worker_id", "started_at", "wall_ns", "cpu_ns", "peak_mem", "rss_peak", "gpu_mem")
            out = dict(zip(keys, row))
            names = {s["position"]: s["name"] for s in self.monitor.stages}
            out["stages"] = [
                {"position": p, "name": names.get(p, f"stage {p}"), "wall_ns": w}
                for p, w in conn.execute("SELECT position, wall_ns FROM stage_times WHERE idx = ? ORDER BY position", (index,))
            ]
            out["error"] = read_error_detail(conn, index)
            return out

        return self._cached(f"detail:{index}", lambda: self._read(read, None))

    def query(self, query: IndexQuery, page: int, page_size: int) -> tuple[int, list[dict[str, Any]]]:
        """Return ``(matching count, rows of page)`` for an index query, ordered by index."""
        where, params = query.sql()

        known = self._count_in_memory(query)

        def read(conn: sqlite3.Connection) -> tuple[int, list[dict[str, Any]]]:
            if known is not None:
                total = known
            else:
                total = conn.execute(f"SELECT count(*) FROM indices WHERE {where}", params).fetchone()[0]  # noqa: S608
            rows = conn.execute(
                f"SELECT idx, status, wall_ns, peak_mem, rss_peak, worker_id, error_type, error_message "  # noqa: S608
                f"FROM indices WHERE {where} ORDER BY idx LIMIT ? OFFSET ?",
                (*params, page_size, page * page_size),
            ).fetchall()
            keys = ("index", "status", "wall_ns", "peak_mem", "rss_peak", "worker_id", "error_type", "error_message")
            return int(total), [dict(zip(keys, r)) for r in rows]

        return self._cached(f"query:{query}:{page}:{page_size}", lambda: self._read(read, (0, [])))

    def _count_in_memory(self, query: IndexQuery) -> int | None:
        # Counting a whole run in SQL scans every row, and the in-memory table already has these counts.
        table = self.monitor.table
        if query.kind == "all":
            return int(table.n)
        if query.kind == "status":
            return int(table.status_counts[1 if query.status == "error" else 0])
        return None

    def _read(self, reader: Callable[[sqlite3.Connection], Any], default: Any) -> Any:
        with self._lock:
            conn = self.monitor.reader.conn
            if conn is None:
                return default
            try:
                return reader(conn)
            except sqlite3.Error as exc:
                logger.warning("Reading %s for the dashboard failed: %s", self.path, exc)
                return default
