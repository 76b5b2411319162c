"""The ``dask`` backend: chunks of indices on a ``dask.distributed`` cluster.

It uses the ``client=`` option, else the current Client, else a local
cluster of ``n_jobs`` single-threaded worker processes bound to 127.0.0.1
that lives for the run. Each worker checks once that it can write the run
store that the driver opened. Workers that cannot (on other hosts) send
their records back with their results. The driver writes those records,
registers those workers and advances their heartbeats as results arrive.

Workers on the driver's host keep the index they are running in a slot
file named after their pid. On the local cluster that this backend starts,
a task whose worker dies fails at once with ``KilledWorker``. The index that
the dead worker was running is then recorded as failed, what the store
already recorded for the lost chunk is kept, and the rest runs again.

A user's cluster may rerun a task whose worker died on another worker, so
chunks are idempotent (a rerun returns what the run already recorded). When
no slot file names the index, a chunk that keeps killing workers is split
into single indices, and an index that kills a worker on its own is
recorded as failed.
"""

from __future__ import annotations

import logging
import os
import shutil
import socket
import tempfile
import uuid
from collections import deque
from typing import Any

from physicsnemo_curator.run import _worker
from physicsnemo_curator.run._job import Chunk, Job, worker_died_record

logger = logging.getLogger(__name__)

DASK_MAX_CHUNK = 512
"""Maximum indices per task, larger than for local pools because each Dask task costs a scheduler round trip."""

_EXTRA_HINT = 'pip install "physicsnemo-curator[dask]"'


def _import_distributed() -> Any:
    try:
        import distributed
    except ImportError as exc:
        raise ImportError(f"The dask backend needs dask.distributed: {_EXTRA_HINT}") from exc
    return distributed


class DaskBackend:
    """Chunks of indices as Dask tasks, on a given, current or local cluster.

    Options: ``client`` (a ``distributed.Client`` to use), ``remote`` (force
    driver-side writes, set by ``run_pipeline(..., remote=True)``).
    """

    name = "dask"

    def __init__(self) -> None:
        self._blamed: dict[int, int] = {}

    def run(self, job: Job) -> None:
        distributed = _import_distributed()
        job.check_options(self.name, ("client",))
        client = job.options.get("client")
        owned: list[Any] = []
        if client is None:
            try:
                client = distributed.default_client()
            except ValueError:
                client = None
        if client is None:
            import dask

            # A task whose worker dies fails at once (KilledWorker) instead of
            # running again elsewhere, so the index it was running is recorded as failed.
            with dask.config.set({"distributed.scheduler.allowed-failures": 0}):
                cluster = distributed.LocalCluster(
                    n_workers=job.n_jobs,
                    threads_per_worker=1,
                    processes=True,
                    host="127.0.0.1",
                    dashboard_address=None,
                )
            owned.append(cluster)
            client = distributed.Client(cluster, set_as_default=False)
            owned.insert(0, client)
            logger.info("Started a local Dask cluster with %d worker processes for %s", job.n_jobs, job.pipeline.db_path)

        key = f"dask-{os.getpid()}-{uuid.uuid4().hex}"
        slot_dir = tempfile.mkdtemp(prefix="psnc-dask-")
        futures: list[Any] = []
        clean = False
        try:
            self._run(distributed, client, job, key, futures, slot_dir)
            clean = True
            self._finish(client, job, key)
        finally:
            if not clean:
                self._stop(client, key, futures, owned)
            shutil.rmtree(slot_dir, ignore_errors=True)
            for resource in owned:
                try:
                    resource.close()
                except Exception as exc:  # noqa: BLE001 - closing is best effort
                    logger.warning("Closing the local Dask cluster failed: %s", exc)

    def _run(self, distributed: Any, client: Any, job: Job, key: str, futures: list[Any], slot_dir: str) -> None:
        driver = (socket.gethostname(), os.getpid())
        n_workers = max(1, len(client.scheduler_info().get("workers", {})) or job.n_jobs)
        payload = client.scatter(job.portable_bytes, broadcast=True, hash=False)
        queue: deque[tuple[Chunk, bool]] = deque((chunk, False) for chunk in job.chunks(n_workers, DASK_MAX_CHUNK))
        while queue:
            submitted: dict[Any, tuple[Chunk, bool]] = {}
            while queue:
                chunk, alone = queue.popleft()
                future = client.submit(
                    _worker.run_chunk,
                    key,
                    payload,
                    job.context,
                    chunk.indices,
                    job.replace_for(chunk.indices),
                    driver,
                    slot_dir,
                    True,
                    pure=False,
                    key=f"psnc-chunk-{uuid.uuid4().hex}",
                )
                submitted[future] = (chunk, alone)
                futures.append(future)
            for future in distributed.as_completed(list(submitted), loop=client.loop):
                chunk, alone = submitted.pop(future)
                try:
                    reply = future.result()
                except distributed.KilledWorker as exc:
                    self._killed(job, chunk, alone, exc, queue, slot_dir)
                    continue
                self._reap(job, slot_dir)
                job.accept(reply)
            futures.clear()

    def _killed(self, job: Job, chunk: Chunk, alone: bool, exc: BaseException, queue: deque[tuple[Chunk, bool]], slot_dir: str) -> None:
        """Handle a chunk whose workers died: blame the index a dead local worker was running, requeue the rest."""
        self._reap(job, slot_dir)

        leftover = job.recover(chunk.indices)
        blamed = [i for i in leftover if i in self._blamed]
        for index in blamed:
            pid = self._blamed.pop(index)
            ids = job.worker_ids_of(pid)
            record, error = worker_died_record(
                index, pid, None, job.run_id, ids[0] if ids else None, "ended (Dask lost its worker)"
            )
            leftover.remove(index)
            job.deliver(index, None, record if job.writer is not None else None, error)
        if not leftover:
            return

        # A rerun overwrites what a lost worker may have committed after the store was read.
        job.replace.update(leftover)
        if blamed or (chunk.ordered and not alone):
            queue.append((Chunk(leftover, chunk.ordered), chunk.ordered))
            return
        if chunk.ordered:
            # Its indices run in order, so the first one not recorded is the one that killed the worker again.
            first = leftover.pop(0)
            record, error = worker_died_record(first, None, None, job.run_id, None, f"(a Dask worker) died twice while running it ({exc})")
            job.deliver(first, None, record if job.writer is not None else None, error)
            if leftover:
                queue.append((Chunk(leftover, True), False))
            return

        if not alone and len(leftover) > 1:
            logger.warning("A chunk of %d indices kept killing Dask workers, so its indices run one by one", len(leftover))
            queue.extend((Chunk([i]), True) for i in leftover)
            return
        for index in leftover:
            record, error = worker_died_record(
                index, None, None, job.run_id, None, f"(a Dask worker) died each time it ran it ({exc})"
            )
            job.deliver(index, None, record if job.writer is not None else None, error)

    def _reap(self, job: Job, slot_dir: str) -> None:
        """Mark local workers that died as dead, and note the index each was running."""
        # A user's cluster may rerun the task elsewhere, so the index is blamed
        # only if its task fails with KilledWorker and the store lacks it.
        for pid, index in _worker.dead_slots(slot_dir).items():
            job.mark_dead(pid, f"process {pid} ended and Dask lost its worker")
            if index is not None:
                self._blamed[index] = pid

    @staticmethod
    def _finish(client: Any, job: Job, key: str) -> None:
        """Flush and close the runner in every worker, and in remote mode record what the workers flushed."""
        workers = list(client.scheduler_info().get("workers", {}))
        futures = [
            client.submit(_worker.finish, key, workers=[address], allow_other_workers=False, pure=False, key=f"psnc-finish-{uuid.uuid4().hex}")
            for address in workers
        ]
        for reply in client.gather(futures):
            if reply["had_runner"]:
                job.finish_remote_worker(reply)

    @staticmethod
    def _stop(client: Any, key: str, futures: list[Any], owned: list[Any]) -> None:
        """Cancel the queued tasks after an interrupt or an error, and close the runners left in a user's workers."""
        try:
            if futures:
                client.cancel(futures)
            if not owned:
                import distributed

                for address in list(client.scheduler_info().get("workers", {})):
                    distributed.fire_and_forget(
                        client.submit(_worker.abandon, key, workers=[address], allow_other_workers=False, pure=False)
                    )
        except Exception as exc:  # noqa: BLE001 - the run's own exception matters more
            logger.warning("Cancelling the run's Dask tasks failed: %s", exc)
