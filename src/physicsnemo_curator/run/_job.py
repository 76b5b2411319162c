"""A run in progress, as the backends see it: the work to hand out and where results go."""

from __future__ import annotations

import logging
import pickle
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
    """Everything a backend needs to run: the pipeline, the work, and the result callback."""

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

    @property
    def pipeline_bytes(self) -> bytes:
        if self._pipeline_bytes is None:
            self._pipeline_bytes = pickle.dumps(self.pipeline)
        return self._pipeline_bytes

    def chunks(self, n_workers: int) -> list[Chunk]:
        """Split the work into chunks, honouring the source's and sink's partitions."""
        groups = partition_groups(self.pipeline, self.indices)
        if groups is not None:
            return [Chunk(list(g), ordered=True) for g in groups if g]
        n = len(self.indices)
        size = max(1, min(64, n // max(1, n_workers * 8)))
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


def worker_died_record(index: int, pid: int | None, exitcode: int | None, run_id: int | None, worker_id: int | None) -> tuple[IndexRecord, BaseException]:
    """Build the failure record of an index whose worker process ended under it."""
    from physicsnemo_curator.core.errors import WorkerDiedError

    how = "exited"
    if exitcode is not None and exitcode < 0:
        import signal

        try:
            how = f"was killed by signal {signal.Signals(-exitcode).name}"
        except ValueError:
            how = f"was killed by signal {-exitcode}"
    elif exitcode is not None:
        how = f"exited with code {exitcode}"
    error = WorkerDiedError(f"Worker process {pid} {how} while running index {index}.")
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
