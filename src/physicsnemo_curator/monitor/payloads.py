"""Payloads for the views: plain dicts of numbers and strings, and binary buffers for series.

Every function here is pure: it takes what :class:`~physicsnemo_curator.monitor.RunMonitor`
keeps (an :class:`~physicsnemo_curator.monitor.IndexTable`, the ``meta``,
``runs``, ``workers`` and ``stages`` rows) and the current time, and returns
data that a notebook widget or a Panel component sends to the browser as is.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np

from physicsnemo_curator.core.execute import HEARTBEAT_SECONDS
from physicsnemo_curator.core.pipeline_store import STALE_HEARTBEATS, process_gone, run_abandoned
from physicsnemo_curator.monitor._reader import STATUS_NAMES
from physicsnemo_curator.monitor._table import IndexTable, LogHistogram

STALE_AFTER_SECONDS = STALE_HEARTBEATS * HEARTBEAT_SECONDS
"""A busy or idle worker whose last heartbeat is older than this many seconds is shown as stale."""

EXACT_STATS_LIMIT = 100_000
"""Up to this many values, statistics are exact; above it, median and p95 come from log-binned histograms."""

TIMELINE_MAX_POINTS = 200_000
"""Timeline points sent to the browser at most; larger runs are thinned (every failure is kept)."""

TIMELINE_COLUMNS = (("idx", "<f8"), ("wall_s", "<f4"), ("memory", "<f4"), ("status", "u1"))
"""Layout of the timeline buffer: each column in turn, ``n`` little-endian values each."""


def format_duration(seconds: float | None) -> str:
    """Return ``seconds`` as ``"12.3 s"``, ``"4.5 min"`` or ``"1.2 h"``; ``"-"`` for unknown."""
    if seconds is None or not math.isfinite(seconds) or seconds < 0:
        return "-"
    if seconds < 60:
        return f"{seconds:.1f} s"
    if seconds < 3600:
        return f"{seconds / 60:.1f} min"
    return f"{seconds / 3600:.1f} h"


def run_state(runs: Sequence[dict[str, Any]]) -> str:
    """Return ``"live"``, ``"finished"``, ``"failed"``, ``"interrupted"``, ``"abandoned"`` or ``"idle"`` (no run yet).

    ``"abandoned"`` is a run still marked running whose driver process on
    this host is gone (killed with SIGKILL, say).
    """
    if not runs:
        return "idle"
    status = runs[-1].get("status") or "running"
    if status == "running" and run_abandoned(runs[-1]):
        return "abandoned"
    return "live" if status == "running" else str(status)


def worker_table(workers: Sequence[dict[str, Any]], now: float, stale_after: float = STALE_AFTER_SECONDS) -> list[dict[str, Any]]:
    """Return the workers with a heartbeat ``state``: busy, idle, stale, dead or stopped.

    A busy or idle worker whose process on this host has ended is dead. One
    whose last heartbeat is older than ``stale_after`` seconds is stale: it
    may be stuck, or run on another host and have died without being marked.
    """
    out = []
    for row in workers:
        status = row.get("status") or "idle"
        beat = row.get("heartbeat_at")
        age = None if beat is None else max(0.0, now - beat)
        if status in ("dead", "stopped"):
            state = status
        elif process_gone(row.get("host"), row.get("pid")):
            state = "dead"
        elif age is not None and age > stale_after:
            state = "stale"
        else:
            state = "busy" if status == "busy" else "idle"
        out.append(
            {
                "worker_id": row.get("worker_id"),
                "pid": row.get("pid"),
                "host": row.get("host"),
                "state": state,
                "current_index": row.get("current_index") if state in ("busy", "stale") else None,
                "n_done": row.get("n_done") or 0,
                "heartbeat_age_s": age,
                "exit_reason": row.get("exit_reason"),
            }
        )
    return out


def progress_payload(
    table: IndexTable,
    meta: dict[str, Any],
    runs: Sequence[dict[str, Any]],
    workers: Sequence[dict[str, Any]],
    now: float,
    stale_after: float = STALE_AFTER_SECONDS,
) -> dict[str, Any]:
    """Return counts, rate, elapsed time, ETA and worker states of the run.

    ``completed``, ``failed`` and ``remaining`` count indices of the whole
    source (``meta["total"]``). ``rate`` (indices per second), ``elapsed_s``
    and ``eta_s`` refer to the latest ``run_pipeline`` call: its recorded
    indices over its duration, and its requested indices still to do.
    """
    completed = int(table.status_counts[0])
    failed = int(table.status_counts[1] + table.status_counts[2])
    total = _int_or_none(meta.get("total"))
    remaining = None if total is None else max(0, total - completed - failed)
    state = run_state(runs)

    elapsed = rate = eta = None
    run_done = 0
    requested = None
    if runs:
        run = runs[-1]
        started = run.get("started_at")
        end = run.get("finished_at") if state != "live" else None
        end = now if end is None and state == "live" else end
        if started is not None and end is not None:
            elapsed = max(0.0, end - started)
        run_done = table.run_counts.get(int(run["run_id"]), 0)
        requested = _int_or_none(run.get("requested"))
        if elapsed and run_done:
            rate = run_done / elapsed
        if state == "live" and rate and requested is not None:
            eta = max(0, requested - run_done) / rate
        elif state != "live":
            eta = 0.0 if state == "finished" else None

    table_rows = worker_table(workers, now, stale_after)
    states = {name: 0 for name in ("busy", "idle", "stale", "dead", "stopped")}
    for row in table_rows:
        states[row["state"]] += 1
    return {
        "state": state,
        "total": total,
        "completed": completed,
        "failed": failed,
        "remaining": remaining,
        "run_done": run_done,
        "run_requested": requested,
        "elapsed_s": elapsed,
        "rate_per_s": rate,
        "eta_s": eta,
        "elapsed_text": format_duration(elapsed),
        "eta_text": format_duration(eta),
        "workers": table_rows,
        "worker_states": states,
    }


def _int_or_none(value: Any) -> int | None:
    try:
        return None if value is None else int(value)
    except (TypeError, ValueError):
        return None


def memory_column(table: IndexTable) -> np.ndarray:
    """Return each index's peak memory in bytes: tracemalloc's peak, else the native RSS peak; NaN when neither."""
    peak = table.column("peak_mem").astype(np.float64)
    rss = table.column("rss_peak").astype(np.float64)
    memory = np.where(peak >= 0, peak, rss)
    memory[memory < 0] = np.nan
    return memory


def timeline_payload(table: IndexTable, max_points: int = TIMELINE_MAX_POINTS) -> tuple[dict[str, Any], bytes]:
    """Return ``(meta, buffer)``: wall time, memory and status per index as one binary buffer.

    The buffer contains the columns of :data:`TIMELINE_COLUMNS` one after the
    other (``n`` values each, little-endian): index as float64, wall time in
    seconds and memory in bytes as float32 (NaN: not measured), and status
    as uint8 (0 completed, 1 error, 2 other). ``meta`` gives ``n``, the
    byte ``offsets`` of each column, ``total_points`` before thinning, and
    the ranges for the axes.
    """
    n_all = table.n
    rows = np.arange(n_all)
    if n_all > max_points:
        status = table.column("status")
        failures = np.flatnonzero(status != 0)
        others = np.flatnonzero(status == 0)
        room = max(0, max_points - failures.size)
        step = max(1, math.ceil(others.size / max(room, 1)))
        rows = np.union1d(failures[:max_points], others[::step][:room])
    idx = table.column("idx")[rows].astype("<f8")
    wall = table.column("wall_ns")[rows].astype(np.float64)
    wall_s = np.where(wall >= 0, wall / 1e9, np.nan).astype("<f4")
    memory = memory_column(table)[rows].astype("<f4")
    status = table.column("status")[rows].astype("u1")

    buffer = b"".join(column.tobytes() for column in (idx, wall_s, memory, status))
    offsets = {}
    position = 0
    for (name, dtype), column in zip(TIMELINE_COLUMNS, (idx, wall_s, memory, status), strict=True):
        offsets[name] = position
        position += column.nbytes
    meta = {
        "n": int(rows.size),
        "total_points": int(n_all),
        "offsets": offsets,
        "dtypes": dict(TIMELINE_COLUMNS),
        "idx_range": _range(idx),
        "wall_range": _range(wall_s),
        "memory_range": _range(memory),
        "status_names": list(STATUS_NAMES),
    }
    return meta, buffer


def decode_timeline(meta: dict[str, Any], buffer: bytes) -> dict[str, np.ndarray]:
    """Inverse of :func:`timeline_payload`, for tests and Python consumers."""
    n = meta["n"]
    return {
        name: np.frombuffer(buffer, dtype=dtype, count=n, offset=meta["offsets"][name])
        for name, dtype in TIMELINE_COLUMNS
    }


def _range(values: np.ndarray) -> list[float] | None:
    finite = values[np.isfinite(values)]
    if not finite.size:
        return None
    return [float(finite.min()), float(finite.max())]


def stage_statistics(
    table: IndexTable, stages: Sequence[dict[str, Any]], exact_limit: int = EXACT_STATS_LIMIT
) -> list[dict[str, Any]]:
    """Return per-stage own wall time statistics in seconds: count, mean, median, p95, max, total.

    Exact up to ``exact_limit`` recorded values per stage. Above it, mean,
    max and total stay exact, while median and p95 come from log-binned
    histograms (within 2.3 %) and ``"approximate"`` is ``True``.
    """
    matrix = table.stage_matrix()
    out = []
    for position in range(table.n_stages):
        hist = table.stage_hists[position]
        name = stages[position]["name"] if position < len(stages) else f"stage {position}"
        kind = stages[position].get("kind", "filter") if position < len(stages) else "filter"
        if hist.count <= exact_limit:
            column = matrix[:, position]
            stats = _exact_stats(column[np.isfinite(column)])
        else:
            stats = _hist_stats(hist, table.max_stage(position))
        out.append({"position": position, "name": name, "kind": kind, **stats})
    return out


def wall_statistics(table: IndexTable, exact_limit: int = EXACT_STATS_LIMIT) -> dict[str, Any]:
    """Return wall time statistics of whole indices in seconds, as :func:`stage_statistics` does per stage."""
    if table.wall_hist.count <= exact_limit:
        wall = table.column("wall_ns")
        return _exact_stats(wall[wall >= 0].astype(np.float64))
    return _hist_stats(table.wall_hist, table.max_wall())


def _exact_stats(values_ns: np.ndarray) -> dict[str, Any]:
    if not values_ns.size:
        return {"count": 0, "mean": None, "median": None, "p95": None, "max": None, "total": 0.0, "approximate": False}
    values = values_ns / 1e9
    median, p95 = np.percentile(values, [50, 95])
    return {
        "count": int(values.size),
        "mean": float(values.mean()),
        "median": float(median),
        "p95": float(p95),
        "max": float(values.max()),
        "total": float(values.sum()),
        "approximate": False,
    }


def _hist_stats(hist: LogHistogram, maximum: float) -> dict[str, Any]:
    return {
        "count": hist.count,
        "mean": hist.total / hist.count / 1e9,
        "median": hist.quantile(0.5) / 1e9,
        "p95": hist.quantile(0.95) / 1e9,
        "max": maximum / 1e9,
        "total": hist.total / 1e9,
        "approximate": True,
    }


def stage_payload(
    table: IndexTable,
    stages: Sequence[dict[str, Any]],
    max_bars: int = 200,
    exact_limit: int = EXACT_STATS_LIMIT,
) -> dict[str, Any]:
    """Return what the stage bars draw: per-index stacks, or per-stage totals for many indices.

    With at most ``max_bars`` indices, ``mode`` is ``"per_index"`` and
    ``indices``/``values`` hold each index's own time per stage in seconds
    (``values[i][s]``, ``None`` where missing), sorted by index. Beyond
    that, ``mode`` is ``"totals"`` and ``values`` is empty; the bars come
    from ``stats`` (total and mean per stage).
    """
    names = [s["name"] for s in stages]
    names += [f"stage {p}" for p in range(len(names), table.n_stages)]
    stats = stage_statistics(table, stages, exact_limit)
    payload: dict[str, Any] = {"stages": names, "stats": stats, "n_indices": table.n}
    if table.n <= max_bars:
        order = np.argsort(table.column("idx"), kind="stable")
        matrix = table.stage_matrix()[order] / 1e9
        payload["mode"] = "per_index"
        payload["indices"] = table.column("idx")[order].tolist()
        payload["values"] = [[None if not math.isfinite(v) else float(v) for v in row] for row in matrix.tolist()]
    else:
        payload["mode"] = "totals"
        payload["indices"] = []
        payload["values"] = []
    return payload


def histogram_payload(table: IndexTable, field: str = "memory", bins: int = 30) -> dict[str, Any]:
    """Return a histogram of a per-index measure: ``"memory"``, ``"peak_mem"``, ``"rss_peak"``, ``"gpu_mem"`` or ``"wall_ns"``.

    Returns ``{"field", "edges", "counts", "count", "unit"}``; unmeasured
    values are left out, and ``count`` is 0 when nothing was measured
    (for example GPU memory without CUDA).
    """
    if field == "memory":
        values = memory_column(table)
    elif field in ("peak_mem", "rss_peak", "gpu_mem", "wall_ns"):
        values = table.column(field).astype(np.float64)
        values[values < 0] = np.nan
    else:
        raise ValueError(
            f"Unknown histogram field {field!r}; use 'memory', 'peak_mem', 'rss_peak', 'gpu_mem' or 'wall_ns'."
        )
    values = values[np.isfinite(values)]
    unit = "ns" if field == "wall_ns" else "bytes"
    if not values.size:
        return {"field": field, "edges": [], "counts": [], "count": 0, "unit": unit}
    counts, edges = np.histogram(values, bins=bins)
    return {"field": field, "edges": edges.tolist(), "counts": counts.tolist(), "count": int(values.size), "unit": unit}


def slowest_indices(table: IndexTable, n: int = 10) -> list[dict[str, Any]]:
    """Return the ``n`` indices with the longest wall time, slowest first."""
    wall = table.column("wall_ns")
    measured = np.flatnonzero(wall >= 0)
    if not measured.size:
        return []
    k = min(n, measured.size)
    top = measured[np.argpartition(-wall[measured], k - 1)[:k]]
    top = top[np.argsort(-wall[top], kind="stable")]
    memory = memory_column(table)
    status = table.column("status")
    return [
        {
            "index": int(table.column("idx")[row]),
            "wall_s": float(wall[row]) / 1e9,
            "memory_bytes": None if not math.isfinite(memory[row]) else int(memory[row]),
            "status": STATUS_NAMES[min(int(status[row]), 2)],
            "worker_id": None if table.column("worker_id")[row] < 0 else int(table.column("worker_id")[row]),
        }
        for row in top.tolist()
    ]


def error_log(table: IndexTable, limit: int = 10) -> list[dict[str, Any]]:
    """Return the ``limit`` most recent failures, newest first, as ``{"index", "error_type", "error_message"}``."""
    out = []
    for index, (error_type, message) in reversed(table.errors.items()):
        out.append({"index": index, "error_type": error_type, "error_message": message})
        if len(out) >= limit:
            break
    return out
