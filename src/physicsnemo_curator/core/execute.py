"""Execution of single indices with profiling, in whatever process runs them.

A worker keeps one :class:`IndexRunner` for the duration of a run; so does the
driver for the sequential backend and ``pipeline[i]``. The runner keeps the
pipeline, this process's store writer (``None`` when records travel back to
the driver), the worker's id, the memory probes and the log capture.
"""

from __future__ import annotations

import inspect
import logging
import os
import threading
import time
import traceback as _traceback
import warnings
from dataclasses import dataclass
from time import perf_counter_ns, process_time_ns
from typing import TYPE_CHECKING, Any

from physicsnemo_curator.core.profiling import GpuProbe, MemoryProbe, TimedIterator
from physicsnemo_curator.core.record import IndexRecord
from physicsnemo_curator.core.store import StoreWriter, dumps_exception

if TYPE_CHECKING:
    from physicsnemo_curator.core.pipeline import Pipeline

logger = logging.getLogger(__name__)

MAX_LOGS_PER_INDEX = 50
"""Log records kept per index; the rest are counted in one summary row."""

HEARTBEAT_SECONDS = 2.0

_running = threading.local()


_reset_warning_registries = getattr(warnings, "_filters_mutated", lambda: None)


def current_index() -> int | None:
    """Return the index that the pipeline is running in this thread, or ``None`` outside a run.

    Components can call it to label what they write (a filter is not passed
    the index, only the items).
    """
    return getattr(_running, "index", None)


class _LogCapture(logging.Handler):
    """Collects warnings and log records emitted while an index runs."""

    def __init__(self, level: int, forward_to_last_resort: bool) -> None:
        super().__init__(level)
        self.record: IndexRecord | None = None
        self.dropped = 0
        self._owner = threading.get_ident()
        # Adding a handler to a root logger that had none would silence
        # logging's last-resort output to stderr, so keep it going.
        self._forward = forward_to_last_resort

    def emit(self, log_record: logging.LogRecord) -> None:
        if self._forward and logging.lastResort is not None and log_record.levelno >= logging.lastResort.level:
            logging.lastResort.handle(log_record)
        if self.record is None or threading.get_ident() != self._owner:
            return
        if log_record.name.startswith("physicsnemo_curator"):
            return
        try:
            message = log_record.getMessage()
        except Exception:  # noqa: BLE001 - a bad format string must not fail the index
            message = str(log_record.msg)
        self.add(log_record.levelno, log_record.name, message, log_record.created)

    def add(self, level: int, name: str, message: str, created: float | None = None) -> None:
        record = self.record
        if record is None:
            return
        if len(record.logs) >= MAX_LOGS_PER_INDEX:
            self.dropped += 1
            return
        record.logs.append((created or time.time(), level, name, message))

    def finish(self) -> None:
        if self.record is not None and self.dropped:
            self.record.logs.append(
                (time.time(), logging.WARNING, "physicsnemo_curator", f"{self.dropped} more log records from this index were not stored")
            )
        self.record = None
        self.dropped = 0


@dataclass
class RunContext:
    """The run a worker takes part in: its store, run id, backend and recording mode."""

    db_path: str | None
    run_id: int | None
    backend: str
    remote: bool = False
    log_level: int = logging.WARNING
    heartbeat_seconds: float = HEARTBEAT_SECONDS


class _Heartbeat(threading.Thread):
    def __init__(self, db_path: str, worker_id: int, interval: float, runner: IndexRunner) -> None:
        super().__init__(name=f"psnc-heartbeat-{worker_id}", daemon=True)
        self._db_path = db_path
        self._worker_id = worker_id
        self._interval = interval
        self._runner = runner
        self._stop_event = threading.Event()

    def run(self) -> None:
        writer: StoreWriter | None = None
        try:
            writer = StoreWriter(self._db_path)
            while not self._stop_event.wait(self._interval):
                current = self._runner.current_index
                writer.heartbeat(self._worker_id, "idle" if current is None else "busy", current)
        except Exception as exc:  # noqa: BLE001 - heartbeats are best effort
            logger.warning("Heartbeat of worker %s stopped: %s", self._worker_id, exc)
        finally:
            if writer is not None:
                writer.conn.close()

    def stop(self) -> None:
        self._stop_event.set()


class IndexRunner:
    """Runs indices of one pipeline in the current process and records them."""

    def __init__(self, pipeline: Pipeline, context: RunContext | None) -> None:
        self.pipeline = pipeline
        self.context = context
        self.current_index: int | None = None
        self.writer: StoreWriter | None = None
        self.worker_id: int | None = None
        self._memory = MemoryProbe() if pipeline.track_metrics and pipeline.track_memory else None
        self._gpu = GpuProbe() if pipeline.track_metrics and pipeline.track_gpu else None
        self._heartbeat: _Heartbeat | None = None
        self._capture: _LogCapture | None = None
        self._original_showwarning: Any = None
        self._lazy = [inspect.isgeneratorfunction(type(pipeline.source).__getitem__)] + [
            inspect.isgeneratorfunction(type(flt).__call__) for flt in pipeline.filters
        ]

    # -- lifecycle ----------------------------------------------------

    def open(self, register: bool = True, worker_info: dict[str, Any] | None = None) -> IndexRunner:
        ctx = self.context
        if ctx is None or not self.pipeline.track_metrics:
            return self
        if not ctx.remote and ctx.db_path is not None:
            from physicsnemo_curator.core.store import writer_for

            self.writer = writer_for(ctx.db_path)
            if register:
                info = worker_info or {}
                self.worker_id = self.writer.register_worker(ctx.run_id, ctx.backend, info.get("pid"), info.get("host"))
                if ctx.heartbeat_seconds > 0:
                    self._heartbeat = _Heartbeat(ctx.db_path, self.worker_id, ctx.heartbeat_seconds, self)
                    self._heartbeat.start()
        root = logging.getLogger()
        self._capture = _LogCapture(ctx.log_level, forward_to_last_resort=not root.handlers)
        root.addHandler(self._capture)
        self._original_showwarning = warnings.showwarning
        warnings.showwarning = self._showwarning
        return self

    def _showwarning(self, message: Any, category: type[Warning], filename: str, lineno: int, file: Any = None, line: Any = None) -> None:
        capture = self._capture
        if capture is not None and capture.record is not None:
            capture.add(logging.WARNING, "py.warnings", f"{category.__name__}: {message} ({filename}:{lineno})")
        self._original_showwarning(message, category, filename, lineno, file, line)

    def close(self) -> None:
        if self._heartbeat is not None:
            self._heartbeat.stop()
            self._heartbeat.join(timeout=5)
            self._heartbeat = None
        if self._capture is not None:
            logging.getLogger().removeHandler(self._capture)
            self._capture = None
        if self._original_showwarning is not None:
            if warnings.showwarning == self._showwarning:
                warnings.showwarning = self._original_showwarning
            self._original_showwarning = None
        if self._memory is not None:
            self._memory.close()
        if self.writer is not None:
            self.writer.flush()
            if self.worker_id is not None:
                try:
                    self.writer.mark_worker(self.worker_id, "stopped")
                except Exception as exc:  # noqa: BLE001
                    logger.warning("Could not mark worker %s stopped: %s", self.worker_id, exc)

    def __enter__(self) -> IndexRunner:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- one index ----------------------------------------------------

    def _stream(self, index: int) -> tuple[list[TimedIterator], Any]:
        # Calling a generator function only builds the generator, so its call
        # is not timed: each clock read costs about 1.7 us on a VM.
        pipeline = self.pipeline
        if self._lazy[0]:
            timers = [TimedIterator(pipeline.source[index])]
        else:
            wall = perf_counter_ns()
            cpu = process_time_ns()
            produced = pipeline.source[index]
            timers = [TimedIterator(produced, perf_counter_ns() - wall, process_time_ns() - cpu)]
        for flt, lazy in zip(pipeline.filters, self._lazy[1:]):
            upstream = timers[-1]
            if lazy:
                timers.append(TimedIterator(flt(upstream), upstream.wall_ns, upstream.cpu_ns))
                continue
            wall = perf_counter_ns()
            cpu = process_time_ns()
            stream = flt(upstream)
            # A filter that is not a generator function does its work in the call itself.
            timers.append(TimedIterator(stream, upstream.wall_ns + perf_counter_ns() - wall, upstream.cpu_ns + process_time_ns() - cpu))
        return timers, timers[-1]

    def run_index(self, index: int, replace: bool = False) -> tuple[list[str] | None, IndexRecord | None, BaseException | None]:
        """Run ``index`` and record it; return ``(paths, record, exception)``.

        With metrics off nothing is measured and ``record`` is ``None``.
        With a local writer the record is committed before this returns; in
        remote mode the caller ships ``record`` to the driver.
        """
        pipeline = self.pipeline
        if not pipeline.track_metrics:
            _running.index = index
            try:
                return self._plain(index), None, None
            except Exception as exc:  # noqa: BLE001 - handed to the caller's on_error policy
                return None, None, exc
            finally:
                _running.index = None

        ctx = self.context
        record = IndexRecord(index=index, run_id=None if ctx is None else ctx.run_id, worker_id=self.worker_id, replace=replace)
        record.started_at = time.time()
        self.current_index = index
        _running.index = index
        if self._capture is not None:
            self._capture.record = record
            # Python shows a warning once per code location; invalidating the
            # registries lets each index capture its own (CPython private API).
            _reset_warning_registries()
        paths: list[str] | None = None
        error: BaseException | None = None
        if self._memory is not None:
            self._memory.start()
        if self._gpu is not None:
            self._gpu.start()

        wall0 = perf_counter_ns()
        cpu0 = process_time_ns()
        timers: list[TimedIterator] = []
        try:
            timers, stream = self._stream(index)
            if pipeline.sink is None:
                for _ in stream:
                    pass
                paths = []
            else:
                paths = _as_paths(pipeline.sink(stream, index), pipeline.sink)
        except Exception as exc:  # noqa: BLE001 - recorded, then handed to on_error
            error = exc
        wall = perf_counter_ns() - wall0
        cpu = process_time_ns() - cpu0

        record.wall_ns = wall
        record.cpu_ns = cpu
        if self._memory is not None:
            record.peak_mem, record.rss_peak = self._memory.stop()
        if self._gpu is not None:
            record.gpu_mem = self._gpu.stop()
        if len(timers) == len(pipeline.filters) + 1:
            previous_wall = previous_cpu = 0
            for position, timer in enumerate(timers):
                record.stages.append((position, timer.wall_ns - previous_wall, timer.cpu_ns - previous_cpu))
                previous_wall, previous_cpu = timer.wall_ns, timer.cpu_ns
            if pipeline.sink is not None:
                record.stages.append((len(timers), wall - previous_wall, cpu - previous_cpu))

        if error is None:
            record.outputs = paths or []
            try:
                for position, flt in enumerate(pipeline.filters, start=1):
                    for path in flt.artifacts():
                        record.artifacts.append((position, str(path)))
            except Exception as exc:  # noqa: BLE001
                error = exc
        if error is not None:
            paths = None
            record.status = "error"
            record.error_type = type(error).__name__
            record.error_message = str(error)
            record.traceback = "".join(_traceback.format_exception(error))
            record.exception = dumps_exception(error)
        if self._capture is not None:
            self._capture.finish()
        self.current_index = None
        _running.index = None

        if self.writer is not None:
            if not self.writer.record(record):
                if error is None:
                    paths = None
        return paths, record, error

    def _plain(self, index: int) -> list[str]:
        pipeline = self.pipeline
        stream: Any = pipeline.source[index]
        for flt in pipeline.filters:
            stream = flt(stream)
        if pipeline.sink is None:
            for _ in stream:
                pass
            return []
        return _as_paths(pipeline.sink(stream, index), pipeline.sink)

    def commit(self) -> dict[int, BaseException]:
        """Commit buffered records; return ``{index: error}`` for those that could not be written."""
        if self.writer is None or self.writer.flush():
            return {}
        from physicsnemo_curator.core.errors import StoreWriteError

        reason = self.writer._last_failure
        return {
            r.index: StoreWriteError(f"Index {r.index} ran but could not be recorded in {self.writer.path} ({reason}).")
            for r in self.writer.pending
        }

    def flush_filters(self) -> list[tuple[int, str]]:
        """Call every filter's :meth:`~physicsnemo_curator.core.base.Filter.flush` and record the paths."""
        written: list[tuple[int, str]] = []
        for position, flt in enumerate(self.pipeline.filters, start=1):
            for path in flt.flush():
                written.append((position, str(path)))
        if written and self.writer is not None:
            self.writer.record_flush_artifacts(self.worker_id, written)
        return written


def _as_paths(value: Any, sink: Any) -> list[str]:
    if value is None:
        return []
    if isinstance(value, (str, bytes)) or hasattr(value, "__fspath__"):
        return [os.fsdecode(value)]
    try:
        items = list(value)
    except TypeError:
        raise TypeError(
            f"Sink {type(sink).__name__} returned {value!r} ({type(value).__name__}); a sink must return the "
            f"paths it wrote: a list of str or Path, one path, or None."
        ) from None
    return [os.fsdecode(p) if isinstance(p, (str, bytes)) or hasattr(p, "__fspath__") else str(p) for p in items]
