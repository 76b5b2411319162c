"""Profiling results: per stage, per index and for a whole run.

These objects are read from a run store (see
:class:`~physicsnemo_curator.core.pipeline_store.PipelineStore`); they never
write to it. Times are nanoseconds and memory is bytes.
"""

from __future__ import annotations

import csv
import dataclasses
import io
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any, TextIO


@dataclasses.dataclass
class StageMetrics:
    """The own time of one pipeline stage for one index."""

    name: str
    wall_time_ns: int
    cpu_time_ns: int | None = None


@dataclasses.dataclass
class IndexMetrics:
    """Everything measured for one index.

    ``peak_memory_bytes`` is the tracemalloc peak above the index's starting
    point (``None`` with ``track_memory=False``); ``native_peak_rss_bytes`` is
    the process's peak resident set size during the index (Linux only);
    ``gpu_memory_bytes`` is the CUDA peak above the starting allocation
    (``None`` without ``track_gpu``, torch or CUDA).
    """

    index: int
    stages: list[StageMetrics]
    wall_time_ns: int
    peak_memory_bytes: int | None = None
    gpu_memory_bytes: int | None = None
    cpu_time_ns: int | None = None
    native_peak_rss_bytes: int | None = None
    status: str = "completed"
    worker_id: int | None = None
    started_at: float | None = None
    error_type: str | None = None
    error_message: str | None = None

    def stage_times(self) -> dict[str, int]:
        """Return ``{stage name: wall ns}``; a repeated name gets a ``#2``, ``#3`` suffix."""
        out: dict[str, int] = {}
        for name, stage in zip(_unique_names([s.name for s in self.stages]), self.stages):
            out[name] = stage.wall_time_ns
        return out

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def __repr__(self) -> str:
        stages = ", ".join(f"{s.name}={_ms(s.wall_time_ns)}" for s in self.stages)
        return f"IndexMetrics(index={self.index}, status={self.status}, wall={_ms(self.wall_time_ns)}, stages=[{stages}])"

    def _repr_html_(self) -> str:
        from physicsnemo_curator.core import _html

        return _html.index_metrics_html(self)

    def _repr_mimebundle_(self, include: Any = None, exclude: Any = None) -> dict[str, str]:
        return {"text/plain": repr(self), "text/html": self._repr_html_()}


def _unique_names(names: Sequence[str]) -> list[str]:
    seen: dict[str, int] = {}
    out = []
    for name in names:
        seen[name] = seen.get(name, 0) + 1
        out.append(name if seen[name] == 1 else f"{name}#{seen[name]}")
    return out


def _ms(ns: int | None) -> str:
    return "-" if ns is None else f"{ns / 1e6:.2f} ms"


def _mb(value: int | None) -> str:
    return "-" if value is None else f"{value / 1e6:.1f} MB"


class PipelineMetrics:
    """Metrics of every recorded index of a run.

    Parameters
    ----------
    indices : sequence of IndexMetrics
        One entry per recorded index, in index order.
    """

    def __init__(self, indices: Sequence[IndexMetrics]) -> None:
        self.indices = list(indices)

    def __len__(self) -> int:
        return len(self.indices)

    def __iter__(self):  # noqa: ANN204
        return iter(self.indices)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, PipelineMetrics) and self.indices == other.indices

    @property
    def completed(self) -> list[IndexMetrics]:
        return [m for m in self.indices if m.status == "completed"]

    @property
    def total_wall_time_ns(self) -> int:
        """Sum of the wall times of all recorded indices."""
        return sum(m.wall_time_ns or 0 for m in self.indices)

    @property
    def mean_index_time_ns(self) -> float:
        return self.total_wall_time_ns / len(self.indices) if self.indices else 0.0

    @property
    def total_peak_memory_bytes(self) -> int:
        """Largest Python peak over all indices (0 when memory was not tracked)."""
        return max((m.peak_memory_bytes or 0 for m in self.indices), default=0)

    @property
    def peak_native_rss_bytes(self) -> int | None:
        values = [m.native_peak_rss_bytes for m in self.indices if m.native_peak_rss_bytes is not None]
        return max(values) if values else None

    @property
    def peak_gpu_memory_bytes(self) -> int | None:
        values = [m.gpu_memory_bytes for m in self.indices if m.gpu_memory_bytes is not None]
        return max(values) if values else None

    def stage_names(self) -> list[str]:
        longest = max(self.indices, key=lambda m: len(m.stages), default=None)
        return _unique_names([s.name for s in longest.stages]) if longest else []

    def stage_totals(self) -> dict[str, dict[str, float]]:
        """Return ``{stage: {"total_ns", "mean_ns", "max_ns"}}`` over completed indices."""
        names = self.stage_names()
        columns: dict[str, list[int]] = {name: [] for name in names}
        for m in self.indices:
            for name, stage in zip(names, m.stages):
                columns[name].append(stage.wall_time_ns)
        return {
            name: {
                "total_ns": float(sum(values)),
                "mean_ns": sum(values) / len(values) if values else 0.0,
                "max_ns": float(max(values, default=0)),
            }
            for name, values in columns.items()
        }

    def summary(self) -> dict[str, Any]:
        """Return the run's figures as a plain dict.

        Keys: ``num_indices``, ``num_completed``, ``num_failed``,
        ``total_wall_time_ns``, ``mean_index_time_ns``,
        ``total_peak_memory_bytes``, ``peak_native_rss_bytes``,
        ``peak_gpu_memory_bytes``, ``stages`` (per-stage totals) and
        ``indices`` (one dict per index).
        """
        return {
            "num_indices": len(self.indices),
            "num_completed": len(self.completed),
            "num_failed": len(self.indices) - len(self.completed),
            "total_wall_time_ns": self.total_wall_time_ns,
            "mean_index_time_ns": self.mean_index_time_ns,
            "total_peak_memory_bytes": self.total_peak_memory_bytes,
            "peak_native_rss_bytes": self.peak_native_rss_bytes,
            "peak_gpu_memory_bytes": self.peak_gpu_memory_bytes,
            "stages": self.stage_totals(),
            "indices": [m.to_dict() for m in self.indices],
        }

    def to_json(self, path: str | Path) -> Path:
        """Write :meth:`summary` as JSON to ``path`` and return the path."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(self.summary(), indent=2))
        return path

    def to_csv(self, path: str | Path) -> Path:
        """Write one row per index, with one ``<stage>_ns`` column per stage, to ``path``."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        names = self.stage_names()
        header = [
            "index", "status", "wall_time_ns", "cpu_time_ns", "peak_memory_bytes",
            "native_peak_rss_bytes", "gpu_memory_bytes", "worker_id", "started_at",
        ] + [f"{name}_ns" for name in names] + [f"{name}_cpu_ns" for name in names]
        with path.open("w", newline="") as handle:
            writer = csv.writer(handle)
            writer.writerow(header)
            for m in self.indices:
                walls = [s.wall_time_ns for s in m.stages] + [None] * (len(names) - len(m.stages))
                cpus = [s.cpu_time_ns for s in m.stages] + [None] * (len(names) - len(m.stages))
                writer.writerow(
                    [m.index, m.status, m.wall_time_ns, m.cpu_time_ns, m.peak_memory_bytes,
                     m.native_peak_rss_bytes, m.gpu_memory_bytes, m.worker_id, m.started_at]
                    + walls + cpus
                )
        return path

    def to_text(self) -> str:
        """Return the console report as a string."""
        out = io.StringIO()
        self._write_text(out)
        return out.getvalue()

    def to_console(self, file: TextIO | None = None) -> None:
        """Print a report: totals, per-stage breakdown and the slowest indices."""
        self._write_text(file or sys.stdout)

    def _write_text(self, out: TextIO) -> None:
        n = len(self.indices)
        failed = n - len(self.completed)
        out.write(f"Pipeline metrics: {n} indices ({n - failed} completed, {failed} failed)\n")
        out.write(f"  total wall time   {_ms(self.total_wall_time_ns)}\n")
        out.write(f"  mean per index    {_ms(int(self.mean_index_time_ns))}\n")
        out.write(f"  peak Python mem   {_mb(self.total_peak_memory_bytes)}\n")
        out.write(f"  peak native RSS   {_mb(self.peak_native_rss_bytes)}\n")
        if self.peak_gpu_memory_bytes is not None:
            out.write(f"  peak GPU mem      {_mb(self.peak_gpu_memory_bytes)}\n")
        totals = self.stage_totals()
        if totals:
            grand = sum(t["total_ns"] for t in totals.values()) or 1.0
            width = max(len(name) for name in totals)
            out.write(f"  {'stage'.ljust(width)}  {'total':>12}  {'mean':>12}  {'max':>12}  share\n")
            for name, t in totals.items():
                out.write(
                    f"  {name.ljust(width)}  {_ms(int(t['total_ns'])):>12}  {_ms(int(t['mean_ns'])):>12}  "
                    f"{_ms(int(t['max_ns'])):>12}  {100 * t['total_ns'] / grand:5.1f}%\n"
                )
        slowest = sorted(self.indices, key=lambda m: m.wall_time_ns or 0, reverse=True)[:5]
        if slowest:
            out.write("  slowest: " + ", ".join(f"{m.index} ({_ms(m.wall_time_ns)})" for m in slowest) + "\n")

    def __repr__(self) -> str:
        return (
            f"PipelineMetrics({len(self.indices)} indices, total {_ms(self.total_wall_time_ns)}, "
            f"mean {_ms(int(self.mean_index_time_ns))}, peak Python memory {_mb(self.total_peak_memory_bytes)})"
        )

    def _repr_html_(self) -> str:
        from physicsnemo_curator.core import _html

        return _html.metrics_html(self)

    def _repr_mimebundle_(self, include: Any = None, exclude: Any = None) -> dict[str, str]:
        return {"text/plain": self.to_text(), "text/html": self._repr_html_()}
