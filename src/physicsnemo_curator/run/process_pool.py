"""The ``process_pool`` backend: local worker processes that survive each other's crashes.

Unlike :class:`concurrent.futures.ProcessPoolExecutor`, which breaks the
whole pool when one worker dies, this pool gives each worker its own pipe,
tracks which index each worker is running (a shared array slot), records
that index as failed when its worker dies, starts a replacement and goes on.
"""

from __future__ import annotations

import logging
import multiprocessing
import multiprocessing.connection
import os
import signal
import threading
import time
from collections import deque
from typing import Any

from physicsnemo_curator.run._job import Chunk, Job, exit_reason, worker_died_record

logger = logging.getLogger(__name__)

_IDLE = -1

MAX_EARLY_DEATHS = 3
"""Consecutive worker deaths before any index ran, after which the run gives up."""


def _watch_parent(parent_pid: int, interval: float = 1.0) -> None:
    """End this worker when the driver is gone (killed with SIGKILL, say), instead of idling as an orphan."""

    def watch() -> None:
        while True:
            time.sleep(interval)
            if os.getppid() != parent_pid:
                os._exit(0)

    threading.Thread(target=watch, name="psnc-parent-watch", daemon=True).start()


def _worker_main(conn: Any, key: str, pipeline_bytes: bytes, context: Any, current: Any, slot: int) -> None:
    # The driver handles Ctrl-C and stops the workers itself.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    from physicsnemo_curator.run import _worker

    _watch_parent(os.getppid())
    runner = _worker.runner_for(key, pipeline_bytes, context)
    conn.send(("ready", os.getpid(), runner.worker_id))
    original = runner.run_index

    def tracked(index: int, replace: bool = False) -> Any:
        current[slot] = index
        result = original(index, replace)
        # Left set when SystemExit or KeyboardInterrupt ends the worker, so the driver blames this index.
        current[slot] = _IDLE
        return result

    runner.run_index = tracked  # type: ignore[method-assign]
    while True:
        message = conn.recv()
        if message is None:
            break
        chunk_id, indices, replace = message
        conn.send(("chunk", chunk_id, _worker.run_chunk(key, pipeline_bytes, context, indices, replace)))
    conn.send(("finished", _worker.finish(key)))
    conn.close()


class _Worker:
    def __init__(self, ctx: Any, job: Job, key: str, current: Any, slot: int) -> None:
        self.parent, child = ctx.Pipe()
        self.slot = slot
        self.process = ctx.Process(
            target=_worker_main,
            args=(child, key, job.pipeline_bytes, job.context, current, slot),
            name=f"psnc-worker-{slot}",
            daemon=True,
        )
        self.process.start()
        child.close()
        self.worker_id: int | None = None
        self.chunk: tuple[int, Chunk] | None = None
        self.ready = False
        self.finished = False


class ProcessPoolBackend:
    """Local worker processes fed small chunks of indices over pipes.

    Options (``run_pipeline(..., start_method=...)``): ``start_method``, the
    multiprocessing start method (``fork`` where available, else ``spawn``).
    """

    name = "process_pool"

    def __init__(self, start_method: str | None = None) -> None:
        self.start_method = start_method
        self._early_deaths = 0

    def run(self, job: Job) -> None:
        job.check_options(self.name, ("start_method",))
        method = job.options.get("start_method") or self.start_method
        if method is None:
            method = "fork" if "fork" in multiprocessing.get_all_start_methods() else "spawn"
        ctx = multiprocessing.get_context(method)
        n_workers = job.n_jobs
        queue: deque[tuple[int, Chunk]] = deque(enumerate(job.chunks(n_workers)))
        current = ctx.Array("q", [_IDLE] * n_workers, lock=False)
        key = f"pool-{os.getpid()}-{id(job)}"
        workers = [_Worker(ctx, job, key, current, slot) for slot in range(min(n_workers, len(queue)) or 1)]
        try:
            self._loop(ctx, job, key, current, workers, queue)
        finally:
            for worker in workers:
                if worker.process.is_alive():
                    worker.process.terminate()
            for worker in workers:
                worker.process.join(timeout=10)
                worker.parent.close()

    def _loop(self, ctx: Any, job: Job, key: str, current: Any, workers: list[_Worker], queue: deque[tuple[int, Chunk]]) -> None:
        def feed(worker: _Worker) -> None:
            if queue:
                worker.chunk = queue.popleft()
                chunk_id, chunk = worker.chunk
                worker.parent.send((chunk_id, chunk.indices, job.replace_for(chunk.indices)))
            elif not worker.finished:
                worker.chunk = None
                worker.finished = True
                worker.parent.send(None)

        stopping: list[_Worker] = []
        while True:
            live = [w for w in workers if w not in stopping]
            if not live:
                break
            waitables: dict[Any, _Worker] = {}
            for worker in live:
                waitables[worker.parent] = worker
                waitables[worker.process.sentinel] = worker
            for ready in multiprocessing.connection.wait(list(waitables)):
                worker = waitables[ready]
                if worker in stopping:
                    continue
                if ready is worker.parent:
                    try:
                        message = worker.parent.recv()
                    except (EOFError, OSError):
                        continue
                    kind = message[0]
                    if kind == "ready":
                        worker.ready = True
                        worker.worker_id = message[2]
                        self._early_deaths = 0
                        feed(worker)
                    elif kind == "chunk":
                        worker.chunk = None
                        job.accept(message[2])
                        feed(worker)
                    elif kind == "finished":
                        stopping.append(worker)
                        worker.chunk = None
                        job.finish_remote_worker(message[1])
                else:
                    self._handle_death(ctx, job, key, current, workers, worker, queue)
                    break

    def _handle_death(self, ctx: Any, job: Job, key: str, current: Any, workers: list[_Worker], worker: _Worker, queue: deque[tuple[int, Chunk]]) -> None:
        worker.process.join(timeout=5)
        # A reply the worker sent just before it died is still worth taking.
        try:
            while worker.parent.poll():
                message = worker.parent.recv()
                if message[0] == "chunk":
                    worker.chunk = None
                    job.accept(message[2])
        except (EOFError, OSError):
            pass
        exitcode = worker.process.exitcode
        pid = worker.process.pid
        running = current[worker.slot]
        current[worker.slot] = _IDLE
        death = exit_reason(exitcode)
        logger.warning("Worker process %s %s while running index %s", pid, death, None if running == _IDLE else running)

        if not worker.ready:
            self._early_deaths += 1
            if self._early_deaths >= MAX_EARLY_DEATHS:
                raise RuntimeError(
                    f"Worker processes died {self._early_deaths} times in a row before running any index "
                    f"(the last one, pid {pid}, {death}). The pipeline probably cannot be loaded in a worker; "
                    f"run it with n_jobs=1 to see the error."
                )
        if job.writer is not None and pid is not None:
            reason = f"process {pid} {death}"
            if worker.worker_id is not None:
                job.writer.mark_worker(worker.worker_id, "dead", reason)
            else:
                job.mark_dead(pid, reason)

        if worker.chunk is not None:
            chunk_id, chunk = worker.chunk
            leftover = job.recover(chunk.indices)
            if running not in leftover and leftover:
                # The slot was cleared before the death was seen. Blaming the first index not recorded
                # keeps an index that always ends its worker from being retried forever.
                running = leftover[0]
            if running in leftover:
                worker_id = worker.worker_id
                if worker_id is None and job.writer is not None:
                    ids = job.worker_ids_of(pid)
                    worker_id = ids[0] if ids else None
                record, error = worker_died_record(running, pid, exitcode, job.run_id, worker_id, death)
                leftover.remove(running)
                job.deliver(running, None, record if job.writer is not None else None, error)
            if leftover:
                # A rerun overwrites what a lost worker may have committed after the store was read.
                job.replace.update(leftover)
                queue.appendleft((chunk_id, Chunk(leftover, chunk.ordered)))
        worker.parent.close()

        replacement = _Worker(ctx, job, key, current, worker.slot)
        workers[workers.index(worker)] = replacement
