"""The ``process_pool`` backend: local worker processes that survive each other's crashes.

Unlike :class:`concurrent.futures.ProcessPoolExecutor`, which breaks the
whole pool when one worker dies, this pool gives each worker its own pipe,
knows which index each worker is running (a shared array slot), records
that index as failed when its worker dies, starts a replacement and goes on.
"""

from __future__ import annotations

import logging
import multiprocessing
import multiprocessing.connection
import os
import signal
from collections import deque
from typing import Any

from physicsnemo_curator.run._job import Chunk, Job, worker_died_record
from physicsnemo_curator.run._worker import finish, run_chunk

logger = logging.getLogger(__name__)

_IDLE = -1


def _worker_main(conn: Any, key: str, pipeline_bytes: bytes, context: Any, current: Any, slot: int) -> None:
    # The driver owns Ctrl-C: it stops the workers itself, between indices.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    from physicsnemo_curator.run import _worker

    runner = _worker.runner_for(key, pipeline_bytes, context)
    conn.send(("ready", os.getpid(), runner.worker_id))
    original = runner.run_index

    def tracked(index: int, replace: bool = False) -> Any:
        current[slot] = index
        try:
            return original(index, replace)
        finally:
            current[slot] = _IDLE

    runner.run_index = tracked  # type: ignore[method-assign]
    while True:
        message = conn.recv()
        if message is None:
            break
        chunk_id, indices, replace = message
        conn.send(("chunk", chunk_id, run_chunk(key, pipeline_bytes, context, indices, replace)))
    conn.send(("finished", finish(key)))
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
    """Local worker processes fed small chunks of indices over pipes."""

    name = "process_pool"

    def __init__(self, start_method: str | None = None) -> None:
        self.start_method = start_method

    def run(self, job: Job) -> None:
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
                worker.parent.send((chunk_id, chunk.indices, {i for i in chunk.indices if i in job.replace}))
            elif not worker.finished:
                worker.chunk = None
                worker.finished = True
                worker.parent.send(None)

        stopping: list[_Worker] = []
        while True:
            live = [w for w in workers if not (w.finished and w.chunk is None and w in stopping)]
            if not live:
                break
            waitables: dict[Any, _Worker] = {}
            for worker in live:
                waitables[worker.parent] = worker
                waitables[worker.process.sentinel] = worker
            for ready in multiprocessing.connection.wait(list(waitables)):
                worker = waitables[ready]
                if ready is worker.parent:
                    try:
                        message = worker.parent.recv()
                    except (EOFError, OSError):
                        continue
                    kind = message[0]
                    if kind == "ready":
                        worker.ready = True
                        worker.worker_id = message[2]
                        feed(worker)
                    elif kind == "chunk":
                        worker.chunk = None
                        for index, paths, record, error in message[2]["results"]:
                            job.deliver(index, paths, record, error)
                        feed(worker)
                    elif kind == "finished":
                        stopping.append(worker)
                        worker.chunk = None
                elif worker not in stopping:
                    self._handle_death(ctx, job, key, current, workers, worker, queue)
                    break
                else:
                    # A worker that already reported "finished" has exited normally.
                    pass

    def _handle_death(self, ctx: Any, job: Job, key: str, current: Any, workers: list[_Worker], worker: _Worker, queue: deque[tuple[int, Chunk]]) -> None:
        worker.process.join(timeout=5)
        exitcode = worker.process.exitcode
        pid = worker.process.pid
        running = current[worker.slot]
        current[worker.slot] = _IDLE
        logger.warning("Worker process %s ended with exit code %s while running index %s", pid, exitcode, running)

        if job.writer is not None and worker.worker_id is not None:
            reason = f"exit code {exitcode}" if exitcode is None or exitcode >= 0 else f"signal {signal.Signals(-exitcode).name}"
            job.writer.mark_worker(worker.worker_id, "dead", reason)

        if worker.chunk is not None:
            chunk_id, chunk = worker.chunk
            recorded = self._recorded(job, chunk.indices)
            leftover: list[int] = []
            for index in chunk.indices:
                if index in recorded:
                    status, paths = recorded[index]
                    job.deliver(index, paths if status == "completed" else None, None, None if status == "completed" else RuntimeError(f"index {index} failed"))
                elif index == running:
                    record, error = worker_died_record(index, pid, exitcode, job.context.run_id if job.context else None, worker.worker_id)
                    job.deliver(index, None, record if job.writer is not None else None, error)
                else:
                    leftover.append(index)
            if leftover:
                queue.appendleft((chunk_id, Chunk(leftover, chunk.ordered)))
        worker.parent.close()

        replacement = _Worker(ctx, job, key, current, worker.slot)
        workers[workers.index(worker)] = replacement

    @staticmethod
    def _recorded(job: Job, indices: list[int]) -> dict[int, tuple[str, list[str]]]:
        if job.writer is None:
            return {}
        conn = job.writer.conn
        out: dict[int, tuple[str, list[str]]] = {}
        for index in indices:
            row = conn.execute("SELECT status FROM indices WHERE idx=? AND run_id IS ?", (index, job.context.run_id if job.context else None)).fetchone()
            if row is not None:
                paths = [r[0] for r in conn.execute("SELECT path FROM outputs WHERE idx=? ORDER BY rowid", (index,))]
                out[index] = (row[0], paths)
        return out
