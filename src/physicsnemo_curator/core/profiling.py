"""Probes that measure one index: stage timers, Python, native and GPU memory.

Stages are generators, so a stage's work happens while the next stage pulls
from it. Each stage's output is wrapped in a :class:`TimedIterator`; a stage's
own time is its wrapper's time minus its upstream wrapper's time, and the
sink's own time is the sink call minus the last wrapper's time.
"""

from __future__ import annotations

import importlib
import logging
import os
import sys
import tracemalloc
from collections.abc import Iterable, Iterator
from time import perf_counter_ns, process_time_ns
from typing import Any

logger = logging.getLogger(__name__)


class TimedIterator:
    """Iterator wrapper that accumulates the wall and CPU time spent in ``next()``.

    CPU time is the process's (``process_time_ns``), so threads that a
    native library starts for the stage are counted.
    """

    __slots__ = ("_iterator", "wall_ns", "cpu_ns")

    def __init__(self, iterable: Iterable[Any], wall_ns: int = 0, cpu_ns: int = 0) -> None:
        self._iterator = iter(iterable)
        self.wall_ns = wall_ns
        self.cpu_ns = cpu_ns

    def __iter__(self) -> TimedIterator:
        return self

    def __next__(self) -> Any:
        wall = perf_counter_ns()
        cpu = process_time_ns()
        try:
            return next(self._iterator)
        finally:
            self.wall_ns += perf_counter_ns() - wall
            self.cpu_ns += process_time_ns() - cpu


class MemoryProbe:
    """Peak Python memory (tracemalloc) and peak native RSS of one index.

    tracemalloc is started on first use and stopped by :meth:`close` only if
    this probe started it. Native RSS uses Linux's ``/proc/self/clear_refs``
    to reset the high-water mark and reads ``VmHWM``; elsewhere, or when the
    kernel refuses, it reports ``None``.
    """

    def __init__(self) -> None:
        self._started_tracemalloc = False
        self._baseline = 0
        self._rss_supported = sys.platform.startswith("linux") and os.path.exists("/proc/self/clear_refs")

    def start(self) -> None:
        if not tracemalloc.is_tracing():
            tracemalloc.start()
            self._started_tracemalloc = True
        tracemalloc.reset_peak()
        self._baseline = tracemalloc.get_traced_memory()[0]
        if self._rss_supported:
            try:
                with open("/proc/self/clear_refs", "w") as handle:
                    handle.write("5")
            except OSError as exc:
                logger.debug("Cannot reset the RSS high-water mark: %s", exc)
                self._rss_supported = False

    def stop(self) -> tuple[int, int | None]:
        """Return ``(python peak bytes above the start, native peak RSS bytes or None)``."""
        peak = max(0, tracemalloc.get_traced_memory()[1] - self._baseline)
        return peak, (read_peak_rss() if self._rss_supported else None)

    def close(self) -> None:
        if self._started_tracemalloc and tracemalloc.is_tracing():
            tracemalloc.stop()
        self._started_tracemalloc = False


def read_peak_rss() -> int | None:
    """Return the process's peak resident set size (``VmHWM``) in bytes, or ``None``."""
    try:
        with open("/proc/self/status", "rb") as handle:
            for line in handle:
                if line.startswith(b"VmHWM:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        return None
    return None


class GpuProbe:
    """Peak CUDA memory of one index, above the allocation at its start.

    Without torch, or without CUDA, :meth:`stop` returns ``None``.
    """

    def __init__(self) -> None:
        self._cuda = None
        self._baseline = 0
        try:
            torch = importlib.import_module("torch")
        except ImportError:
            logger.debug("track_gpu is on but torch is not installed; GPU memory is recorded as None")
            return
        try:
            if torch.cuda.is_available():
                self._cuda = torch.cuda
        except Exception as exc:  # noqa: BLE001 - a broken CUDA setup must not fail the run
            logger.warning("track_gpu is on but CUDA could not be queried (%s); GPU memory is recorded as None", exc)

    def start(self) -> None:
        if self._cuda is None:
            return
        self._cuda.reset_peak_memory_stats()
        self._baseline = self._cuda.memory_allocated()

    def stop(self) -> int | None:
        if self._cuda is None:
            return None
        return max(0, int(self._cuda.max_memory_allocated()) - int(self._baseline))
