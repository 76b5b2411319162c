"""In-memory columns of every recorded index, updated incrementally from the store.

:class:`IndexTable` keeps one row per index (a rerun index replaces its
row), the per-stage wall times, status counts per run, the recent errors and
log-binned histograms. Applying a batch of ``k`` new rows costs ``O(k)``,
whatever the number of rows already kept.
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Any

import numpy as np

from physicsnemo_curator.monitor._reader import IndexBatch

_DENSE_LIMIT = 1 << 26
"""Indices in ``[0, _DENSE_LIMIT)`` are located through a dense array; others through a dict."""

_COLUMNS: dict[str, tuple[Any, Any]] = {
    "seq": (np.int64, 0),
    "idx": (np.int64, 0),
    "status": (np.uint8, 0),
    "run_id": (np.int64, -1),
    "worker_id": (np.int64, -1),
    "started_at": (np.float64, np.nan),
    "wall_ns": (np.int64, -1),
    "cpu_ns": (np.int64, -1),
    "peak_mem": (np.int64, -1),
    "rss_peak": (np.int64, -1),
    "gpu_mem": (np.int64, -1),
}

MAX_KEPT_ERRORS = 1000
"""Most recent failures kept in memory (type and message); older ones are only counted."""


class LogHistogram:
    """Counts of positive values in logarithmic bins, for quantiles that cost ``O(bins)``.

    With the default 100 bins per decade a quantile is within 2.3 % of the
    exact value. Values can be removed again (a rerun index replaces its
    old times). Mean and maximum are kept exactly.
    """

    def __init__(self, low: float = 1.0, decades: int = 14, per_decade: int = 100) -> None:
        self._log_low = np.log10(low)
        self._per_decade = per_decade
        self.counts = np.zeros(decades * per_decade + 1, dtype=np.int64)
        self.count = 0
        self.total = 0.0
        self.max = -np.inf
        self.max_stale = False

    def _bins(self, values: np.ndarray) -> np.ndarray:
        with np.errstate(divide="ignore", invalid="ignore"):
            raw = (np.log10(np.maximum(values, 1e-300)) - self._log_low) * self._per_decade
        return np.clip(np.floor(raw), 0, self.counts.shape[0] - 1).astype(np.int64)

    def add(self, values: np.ndarray) -> None:
        values = values[np.isfinite(values)]
        if not values.size:
            return
        np.add.at(self.counts, self._bins(values), 1)
        self.count += int(values.size)
        self.total += float(values.sum())
        self.max = max(self.max, float(values.max()))

    def remove(self, values: np.ndarray) -> None:
        values = values[np.isfinite(values)]
        if not values.size:
            return
        np.subtract.at(self.counts, self._bins(values), 1)
        self.count -= int(values.size)
        self.total -= float(values.sum())
        if float(values.max()) >= self.max:
            self.max_stale = True

    def quantile(self, q: float) -> float:
        """Return the ``q`` quantile (0..1) as the geometric centre of its bin; NaN when empty."""
        if self.count <= 0:
            return float("nan")
        rank = q * (self.count - 1)
        position = int(np.searchsorted(np.cumsum(self.counts), rank, side="right"))
        position = min(position, self.counts.shape[0] - 1)
        return float(10 ** (self._log_low + (position + 0.5) / self._per_decade))


class IndexTable:
    """Every recorded index of one run store, as growable NumPy columns.

    Columns (``seq``, ``idx``, ``status``, ``run_id``, ``worker_id``,
    ``started_at``, ``wall_ns``, ``cpu_ns``, ``peak_mem``, ``rss_peak``,
    ``gpu_mem``) are read through :meth:`column`; only the first :attr:`n`
    entries are valid. ``stage_wall`` contains the own wall time of each stage
    (NaN where not recorded), one row per index.

    Parameters
    ----------
    n_stages : int
        Number of pipeline stages (``source``, filters, ``sink``).
    """

    def __init__(self, n_stages: int = 0) -> None:
        self.n = 0
        self._capacity = 0
        self._columns = {name: np.empty(0, dtype=dtype) for name, (dtype, _) in _COLUMNS.items()}
        self.stage_wall = np.empty((0, n_stages), dtype=np.float64)
        self._dense = np.empty(0, dtype=np.int64)
        self._sparse: dict[int, int] = {}
        self.status_counts = np.zeros(3, dtype=np.int64)
        self.run_counts: dict[int, int] = {}
        self.errors: OrderedDict[int, tuple[str | None, str | None]] = OrderedDict()
        self.wall_hist = LogHistogram()
        self.stage_hists = [LogHistogram() for _ in range(n_stages)]
        self.max_seq = 0

    @property
    def n_stages(self) -> int:
        return int(self.stage_wall.shape[1])

    def column(self, name: str) -> np.ndarray:
        """Return a view of the first :attr:`n` values of column ``name``."""
        return self._columns[name][: self.n]

    def stage_matrix(self) -> np.ndarray:
        """Return a view of the ``(n, n_stages)`` stage wall times in nanoseconds (NaN: missing)."""
        return self.stage_wall[: self.n]

    # -- growth and lookup ----------------------------------------------

    def _reserve(self, needed: int) -> None:
        if needed <= self._capacity:
            return
        capacity = max(needed, 2 * self._capacity, 1024)
        for name, (dtype, fill) in _COLUMNS.items():
            grown = np.full(capacity, fill, dtype=dtype)
            grown[: self.n] = self._columns[name][: self.n]
            self._columns[name] = grown
        stages = np.full((capacity, self.n_stages), np.nan)
        stages[: self.n] = self.stage_wall[: self.n]
        self.stage_wall = stages
        self._capacity = capacity

    def _widen_stages(self, n_stages: int) -> None:
        if n_stages <= self.n_stages:
            return
        stages = np.full((self.stage_wall.shape[0], n_stages), np.nan)
        stages[:, : self.n_stages] = self.stage_wall
        self.stage_wall = stages
        self.stage_hists.extend(LogHistogram() for _ in range(n_stages - len(self.stage_hists)))

    def positions(self, idx: np.ndarray) -> np.ndarray:
        """Return the row of each index in ``idx``, ``-1`` where it is not held."""
        idx = np.asarray(idx, dtype=np.int64)
        out = np.full(idx.shape, -1, dtype=np.int64)
        dense = (idx >= 0) & (idx < self._dense.shape[0])
        out[dense] = self._dense[idx[dense]]
        if self._sparse:
            for i in np.flatnonzero(~dense):
                out[i] = self._sparse.get(int(idx[i]), -1)
        return out

    def _assign(self, idx: np.ndarray, rows: np.ndarray) -> None:
        dense = (idx >= 0) & (idx < _DENSE_LIMIT)
        if dense.any():
            top = int(idx[dense].max()) + 1
            if top > self._dense.shape[0]:
                grown = np.full(max(top, 2 * self._dense.shape[0]), -1, dtype=np.int64)
                grown[: self._dense.shape[0]] = self._dense
                self._dense = grown
            self._dense[idx[dense]] = rows[dense]
        for i in np.flatnonzero(~dense):
            self._sparse[int(idx[i])] = int(rows[i])

    # -- updates --------------------------------------------------------

    def apply(
        self,
        batch: IndexBatch,
        stage_times: tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray] | None = None,
    ) -> np.ndarray:
        """Insert or replace the rows of ``batch``; return the rows touched.

        ``stage_times`` is what :func:`~physicsnemo_curator.monitor.read_stage_times_after`
        returned for the same cursor.
        """
        k = len(batch)
        if k == 0:
            return np.empty(0, dtype=np.int64)
        rows = self.positions(batch.idx)
        old = rows >= 0
        if old.any():
            self._forget(rows[old])
        fresh = ~old
        n_fresh = int(fresh.sum())
        self._reserve(self.n + n_fresh)
        rows[fresh] = np.arange(self.n, self.n + n_fresh)
        self.n += n_fresh
        self._assign(batch.idx[fresh], rows[fresh])

        for name in _COLUMNS:
            self._columns[name][rows] = getattr(batch, name)
        self.stage_wall[rows] = np.nan

        np.add.at(self.status_counts, np.minimum(batch.status, 2), 1)
        runs, counts = np.unique(batch.run_id, return_counts=True)
        for run, count in zip(runs.tolist(), counts.tolist(), strict=True):
            self.run_counts[run] = self.run_counts.get(run, 0) + count
        wall = batch.wall_ns.astype(np.float64)
        self.wall_hist.add(wall[batch.wall_ns >= 0])
        for index, info in batch.errors.items():
            self.errors[index] = info
        while len(self.errors) > MAX_KEPT_ERRORS:
            self.errors.popitem(last=False)
        self.max_seq = max(self.max_seq, int(batch.seq.max()))

        if stage_times is not None and stage_times[0].size:
            s_idx, s_pos, s_wall, _ = stage_times
            self._widen_stages(int(s_pos.max()) + 1)
            s_rows = self.positions(s_idx)
            keep = (s_rows >= 0) & (s_wall >= 0)
            values = s_wall[keep].astype(np.float64)
            self.stage_wall[s_rows[keep], s_pos[keep]] = values
            for position in np.unique(s_pos[keep]).tolist():
                self.stage_hists[position].add(values[s_pos[keep] == position])
        return rows

    def _forget(self, rows: np.ndarray) -> None:
        status = self._columns["status"][rows]
        np.subtract.at(self.status_counts, np.minimum(status, 2), 1)
        for run in self._columns["run_id"][rows].tolist():
            self.run_counts[run] -= 1
        wall = self._columns["wall_ns"][rows]
        self.wall_hist.remove(wall[wall >= 0].astype(np.float64))
        stages = self.stage_wall[rows]
        for position in range(self.n_stages):
            self.stage_hists[position].remove(stages[:, position])
        for index in self._columns["idx"][rows].tolist():
            self.errors.pop(index, None)

    def max_wall(self) -> float:
        """Exact maximum wall time in ns (NaN when empty), recomputed only after a removal."""
        hist = self.wall_hist
        if hist.max_stale:
            wall = self.column("wall_ns")
            wall = wall[wall >= 0]
            hist.max = float(wall.max()) if wall.size else -np.inf
            hist.max_stale = False
        return hist.max if hist.count else float("nan")

    def max_stage(self, position: int) -> float:
        """Exact maximum own time of stage ``position`` in ns (NaN when empty)."""
        hist = self.stage_hists[position]
        if hist.max_stale:
            column = self.stage_matrix()[:, position]
            hist.max = float(np.nanmax(column)) if np.isfinite(column).any() else -np.inf
            hist.max_stale = False
        return hist.max if hist.count else float("nan")
