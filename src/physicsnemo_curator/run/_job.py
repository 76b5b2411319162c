"""A run in progress, as the backends see it: the work to hand out and where results go."""

from __future__ import annotations

import difflib
import json
import logging
import pickle
import signal
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from physicsnemo_curator.core.errors import PartitionError
from physicsnemo_curator.core.execute import RunContext
from physicsnemo_curator.core.record import IndexRecord

if TYPE_CHECKING:
    from physicsnemo_curator.core.pipeline import Pipeline
    from physicsnemo_curator.core.store import StoreWriter

logger = logging.getLogger(__name__)

MAX_CHUNK = 64
"""Default upper bound of indices per chunk."""

CHUNKS_PER_WORKER = 8


class StopRun(Exception):
    """Raised inside the driver to stop a run at the first error (``on_error="raise"``)."""

    def __init__(self, error: BaseException) -> None:
        super().__init__(str(error))
        self.error = error


@dataclass
class Chunk:
    """Indices that one worker runs in order; ``ordered`` chunks come from a partition and are never split."""

    indices: list[int]
    ordered: bool = False


@dataclass
class Job:
    """Everything a backend needs to run: the pipeline, the work, and the result callback.

    Two backend options are taken here for every backend:
    ``heartbeat_seconds`` (the workers' heartbeat period) and ``chunk_size``
    (indices per chunk, instead of the backend's default).
    """

    pipeline: Pipeline
    indices: list[int]
    n_jobs: int
    on_error: str
    context: RunContext | None
    replace: set[int]
    writer: StoreWriter | None
    progress: Any
    results: dict[int, list[str] | None] = field(default_factory=dict)
    failed: list[int] = field(default_factory=list)
    unrecorded: list[int] = field(default_factory=list)
    options: dict[str, Any] = field(default_factory=dict)
    _pipeline_bytes: bytes | None = None
    _portable_bytes: bytes | None = None
    _remote_workers: dict[tuple[str, int], int] = field(default_factory=dict)

    def __post_init__(self) -> None:
        heartbeat = self.options.pop("heartbeat_seconds", None)
        if heartbeat is not None and self.context is not None:
            self.context.heartbeat_seconds = float(heartbeat)
        chunk_size = self.options.pop("chunk_size", None)
        if chunk_size is not None and (not isinstance(chunk_size, int) or chunk_size < 1):
            raise ValueError(f"chunk_size={chunk_size!r} is not valid; use a positive int (indices per task).")
        self.chunk_size: int | None = chunk_size

    @property
    def pipeline_bytes(self) -> bytes:
        """The pickled pipeline, for workers forked from this process."""
        if self._pipeline_bytes is None:
            self._pipeline_bytes = pickle.dumps(self.pipeline)
        return self._pipeline_bytes

    @property
    def portable_bytes(self) -> bytes:
        """The pipeline pickled for fresh interpreters: classes from ``__main__`` travel by value."""
        if self._portable_bytes is None:
            try:
                import cloudpickle
            except ImportError:
                return self.pipeline_bytes
            self._portable_bytes = cloudpickle.dumps(self.pipeline)
        return self._portable_bytes

    @property
    def run_id(self) -> int | None:
        return None if self.context is None else self.context.run_id

    def check_options(self, backend: str, allowed: Sequence[str]) -> None:
        """Raise TypeError for a backend option that ``backend`` does not take, with the closest valid name."""
        for name in self.options:
            if name in allowed:
                continue
            close = difflib.get_close_matches(name, allowed, n=1)
            hint = f" Did you mean {close[0]!r}?" if close else ""
            valid = ", ".join(sorted(allowed)) or "none"
            raise TypeError(f"The {backend} backend has no option {name!r} (its options: {valid}).{hint}")

    def replace_for(self, indices: Sequence[int]) -> set[int]:
        return {i for i in indices if i in self.replace}

    def chunks(self, n_workers: int, max_size: int = MAX_CHUNK) -> list[Chunk]:
        """Split the work into chunks, honouring the source's and sink's partitions.

        Without a ``chunk_size`` option, each worker gets at least
        :data:`CHUNKS_PER_WORKER` chunks (for balance), of at most
        ``max_size`` indices (what a dead worker can cost).
        """
        groups = partition_groups(self.pipeline, self.indices)
        if groups is not None:
            return [Chunk(list(g), ordered=True) for g in groups if g]
        n = len(self.indices)
        size = self.chunk_size or max(1, min(max_size, n // max(1, n_workers * CHUNKS_PER_WORKER)))
        return [Chunk(self.indices[i : i + size]) for i in range(0, n, size)]

    def deliver(self, index: int, paths: list[str] | None, record: IndexRecord | None, error: BaseException | None) -> None:
        """Take one index's result in the driver; write ``record`` when the worker could not."""
        if record is not None and self.writer is not None:
            if not self.writer.record(record) and error is None:
                self.unrecorded.append(index)
                paths = None
        if error is not None:
            self.failed.append(index)
            self.results[index] = None
        else:
            self.results[index] = paths
        if self.progress is not None:
            self.progress.update(len(self.results), len(self.failed))
        if error is not None and self.on_error == "raise":
            raise StopRun(error)

    def pending(self) -> list[int]:
        return [i for i in self.indices if i not in self.results]

    def accept(self, reply: dict[str, Any]) -> None:
        """Deliver every result of one chunk that a worker sent back (see ``_worker.run_chunk``).

        Records that travelled back (remote mode) are attributed to the
        worker, registered here on first sight, whose heartbeat advances
        with each reply.
        """
        worker_id = None
        if self.writer is not None and reply.get("remote"):
            worker_id = self.remote_worker(reply["host"], reply["pid"])
        stop: StopRun | None = None
        for index, paths, record, error in reply["results"]:
            if record is not None and worker_id is not None:
                record.worker_id = worker_id
            try:
                self.deliver(index, paths, record, error)
            except StopRun as exc:
                # Write the rest of the reply's records before stopping, since they ran.
                stop = stop or exc
        if stop is not None:
            raise stop

    def remote_worker(self, host: str, pid: int, heartbeat: bool = True) -> int | None:
        """Return the driver-side worker id of a worker that cannot write the store, registering it once."""
        if self.writer is None:
            return None
        key = (host, pid)
        worker_id = self._remote_workers.get(key)
        if worker_id is None:
            worker_id = self.writer.register_worker(self.run_id, self.context.backend if self.context else "", pid, host)
            self._remote_workers[key] = worker_id
        elif heartbeat:
            self.writer.heartbeat(worker_id, "idle", None)
        return worker_id

    def finish_remote_worker(self, reply: dict[str, Any]) -> None:
        """Record what a remote worker flushed at the end of its share, and mark it stopped."""
        if self.writer is None or not reply.get("remote"):
            return
        worker_id = self.remote_worker(reply["host"], reply["pid"], heartbeat=False)
        if worker_id is None:
            return
        if reply.get("flushed"):
            self.writer.record_flush_artifacts(worker_id, reply["flushed"])
        self.writer.mark_worker(worker_id, "stopped")

    def worker_ids_of(self, pid: int, host: str | None = None) -> list[int]:
        """Return the worker ids of this run that ran in process ``pid`` (registered by it or by the driver)."""
        if self.writer is None:
            return []
        self.writer.flush()
        ids = [
            row[0]
            for row in self.writer.conn.execute(
                "SELECT worker_id FROM workers WHERE run_id IS ? AND pid=? AND (? IS NULL OR host=?)",
                (self.run_id, pid, host, host),
            )
        ]
        return ids

    def mark_dead(self, pid: int, reason: str, host: str | None = None) -> None:
        """Mark every worker of this run that lived in process ``pid`` as dead."""
        for worker_id in self.worker_ids_of(pid, host):
            self.writer.mark_worker(worker_id, "dead", reason)

    def recover(self, indices: Sequence[int]) -> list[int]:
        """Deliver the indices of ``indices`` that this run recorded, and return the others in order.

        Backends call it after a worker was lost with a chunk in flight. What
        the worker committed is kept, and the rest must run again.
        """
        todo = [i for i in indices if i not in self.results]
        if not todo or self.writer is None:
            return todo
        self.writer.flush()
        conn = self.writer.conn
        recorded = {
            idx: (status, message, blob)
            for idx, status, message, blob in conn.execute(
                "SELECT idx, status, error_message, exception FROM indices "
                "WHERE run_id IS ? AND idx IN (SELECT value FROM json_each(?))",
                (self.run_id, json.dumps(todo)),
            )
        }
        outputs: dict[int, list[str]] = {}
        if recorded:
            for idx, path in conn.execute(
                "SELECT idx, path FROM outputs WHERE idx IN (SELECT value FROM json_each(?)) ORDER BY rowid",
                (json.dumps(sorted(recorded)),),
            ):
                outputs.setdefault(idx, []).append(path)
        leftover = []
        for index in todo:
            if index not in recorded:
                leftover.append(index)
                continue
            status, message, blob = recorded[index]
            if status == "completed":
                self.deliver(index, outputs.get(index, []), None, None)
            else:
                self.deliver(index, None, None, _stored_error(index, message, blob))
        return leftover


def partition_groups(pipeline: Pipeline, indices: Sequence[int]) -> list[list[int]] | None:
    """Merge the index groups that the source and the sink declare.

    Two groups that share an index are joined; a joined group must keep
    both components' orders, else :class:`PartitionError` shows both.
    """
    declared = []
    for component in (pipeline.source, pipeline.sink):
        method = getattr(component, "partition_indices", None)
        if method is None:
            continue
        groups = method(list(indices))
        if groups:
            declared.append((type(component).__name__, [list(g) for g in groups]))
    if not declared:
        return None
    if len(declared) == 1:
        return _cover(declared[0][1], indices)

    (name_a, groups_a), (name_b, groups_b) = declared
    owner_a = {i: k for k, g in enumerate(groups_a) for i in g}
    merged: list[list[int]] = []
    used_a: set[int] = set()
    for group_b in groups_b:
        touched = sorted({owner_a[i] for i in group_b if i in owner_a})
        if len(touched) > 1:
            conflicting = [groups_a[k] for k in touched]
            raise PartitionError(
                f"{name_b} wants {group_b} processed in order by one worker, but {name_a} splits it "
                f"across groups {conflicting}. Make one component's groups unions of the other's."
            )
        if touched:
            group_a = groups_a[touched[0]]
            order_a = [i for i in group_a]
            common_a = [i for i in order_a if i in set(group_b)]
            common_b = [i for i in group_b if i in set(group_a)]
            if common_a != common_b:
                raise PartitionError(
                    f"{name_a} orders {group_a} and {name_b} orders {group_b} differently; "
                    f"the shared indices must come in the same order."
                )
            used_a.add(touched[0])
            merged.append(order_a if len(order_a) >= len(group_b) else group_b)
        else:
            merged.append(group_b)
    merged.extend(g for k, g in enumerate(groups_a) if k not in used_a)
    return _cover(merged, indices)


def _cover(groups: list[list[int]], indices: Sequence[int]) -> list[list[int]]:
    wanted = set(indices)
    seen: set[int] = set()
    out = []
    for group in groups:
        kept = [i for i in group if i in wanted and i not in seen]
        seen.update(kept)
        if kept:
            out.append(kept)
    out.extend([i] for i in indices if i not in seen)
    return out


def _stored_error(index: int, message: str | None, blob: bytes | None) -> BaseException:
    if blob is not None:
        try:
            error = pickle.loads(blob)
            if isinstance(error, BaseException):
                return error
        except Exception:  # noqa: BLE001 - the class may not import here
            pass
    return RuntimeError(f"Index {index} failed: {message}")


def exit_reason(exitcode: int | None) -> str:
    """Describe how a process ended, from its exit code (negative: the signal that killed it)."""
    if exitcode is None:
        return "ended"
    if exitcode < 0:
        try:
            return f"was killed by signal {signal.Signals(-exitcode).name}"
        except ValueError:
            return f"was killed by signal {-exitcode}"
    return f"exited with code {exitcode}"


def worker_died_record(
    index: int, pid: int | None, exitcode: int | None, run_id: int | None, worker_id: int | None, death: str | None = None
) -> tuple[IndexRecord, BaseException]:
    """Build the failure record of an index whose worker process ended under it."""
    from physicsnemo_curator.core.errors import WorkerDiedError

    if death is None:
        death = exit_reason(exitcode)
    error = WorkerDiedError(f"Worker process {pid} {death} while running index {index}.")
    record = IndexRecord(
        index=index,
        status="error",
        run_id=run_id,
        worker_id=worker_id,
        started_at=time.time(),
        error_type="WorkerDiedError",
        error_message=str(error),
        replace=True,
    )
    return record, error
