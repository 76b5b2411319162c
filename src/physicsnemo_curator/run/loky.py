"""The ``loky`` backend: chunks of indices on loky's reusable process executor.

loky marks its whole executor broken when one worker dies, and kills the
other workers. This backend keeps the run going. Each worker writes the
index it is running to a small slot file named after its pid. When the
executor breaks, a future callback notes which workers were already dead and
what they were running. loky calls it before it kills the surviving workers
(see ``terminate_broken`` in ``loky/process_executor.py``, loky 3.x). Those
indices are recorded as failed and never retried, so an index that kills its
worker cannot loop. The dead workers are marked dead, what the store already
recorded for the lost chunks is kept, and the rest goes to a fresh executor.
"""

from __future__ import annotations

import concurrent.futures
import logging
import os
import re
import shutil
import socket
import tempfile
import threading
import time
import uuid
from collections import deque
from dataclasses import dataclass, field
from typing import Any

from physicsnemo_curator.run import _worker
from physicsnemo_curator.run._job import Chunk, Job, exit_reason, worker_died_record

logger = logging.getLogger(__name__)

MAX_BREAKS_WITHOUT_PROGRESS = 3
"""Executor breaks in a row that finish no index and name no culprit before the run gives up."""

FINISH_ROUNDS = 10
"""Rounds of finish calls sent to reach every worker that has a runner of the run."""

FINISH_HOLD_SECONDS = 0.05

WORKER_EXIT_SECONDS = 30.0
"""How long the driver waits for loky to kill the surviving workers of a broken executor."""

_EXIT_CODE = re.compile(r"\((-?\d+)\)")


_alive = _worker.process_alive


@dataclass
class _Snapshot:
    """Worker slots as they were when loky reported the break, before it killed the survivors."""

    error: BaseException
    running: dict[int, int | None] = field(default_factory=dict)
    dead: set[int] = field(default_factory=set)


class _Watch:
    """Future callback that records one :class:`_Snapshot` per executor break."""

    def __init__(self, slot_dir: str, broken_types: tuple[type[BaseException], ...]) -> None:
        self.slot_dir = slot_dir
        self.broken_types = broken_types
        self.snapshot: _Snapshot | None = None
        self._lock = threading.Lock()

    def __call__(self, future: concurrent.futures.Future[Any]) -> None:
        if future.cancelled() or self.snapshot is not None:
            return
        error = future.exception()
        if not isinstance(error, self.broken_types):
            return
        with self._lock:
            if self.snapshot is not None:
                return
            snapshot = _Snapshot(error)
            for name in os.listdir(self.slot_dir):
                if not name.isdigit():
                    continue
                pid = int(name)
                snapshot.running[pid] = _worker.read_slot(os.path.join(self.slot_dir, name))
                if not _alive(pid):
                    snapshot.dead.add(pid)
            self.snapshot = snapshot

    def take(self) -> _Snapshot | None:
        with self._lock:
            snapshot, self.snapshot = self.snapshot, None
        return snapshot


class LokyBackend:
    """Chunks of indices on :func:`loky.get_reusable_executor`, with recovery from dead workers.

    Options: ``timeout``, seconds an idle loky worker waits before it exits
    (default 300, so consecutive runs reuse warm workers).
    """

    name = "loky"

    def run(self, job: Job) -> None:
        try:
            import loky
            from loky.process_executor import BrokenProcessPool, ShutdownExecutorError
        except ImportError as exc:
            raise ImportError(
                'The loky backend needs the loky package: pip install "physicsnemo-curator[loky]"'
            ) from exc

        job.check_options(self.name, ("timeout",))
        self._loky = loky
        self._current: Any = None
        self._pids: set[int] = set()
        self._timeout = float(job.options.get("timeout", 300))
        self._broken_types = (BrokenProcessPool, ShutdownExecutorError)
        key = f"loky-{os.getpid()}-{uuid.uuid4().hex}"
        slot_dir = tempfile.mkdtemp(prefix="psnc-loky-")
        watch = _Watch(slot_dir, (BrokenProcessPool,))
        driver = (socket.gethostname(), os.getpid())
        executor = None
        clean = False
        try:
            executor = self._run(job, key, slot_dir, watch, driver)
            clean = True
            self._finish(job, executor, key)
        finally:
            if not clean:
                self._stop(job)
            shutil.rmtree(slot_dir, ignore_errors=True)

    def _executor(self, n_workers: int) -> Any:
        self._current = self._loky.get_reusable_executor(max_workers=n_workers, timeout=self._timeout)
        return self._current

    def _run(self, job: Job, key: str, slot_dir: str, watch: _Watch, driver: tuple[str, int]) -> Any:
        n_workers = job.n_jobs
        queue: deque[Chunk] = deque(job.chunks(n_workers))
        # Workers read the pipeline from a file once, instead of unpickling it with every chunk.
        payload = os.path.join(slot_dir, "pipeline.pickle")
        with open(payload, "wb") as handle:
            handle.write(job.portable_bytes)
        breaks_without_progress = 0
        executor = self._executor(n_workers)
        while queue:
            executor = self._executor(n_workers)
            futures: dict[concurrent.futures.Future[Any], Chunk] = {}
            while queue:
                chunk = queue.popleft()
                future = executor.submit(
                    _worker.run_chunk,
                    key,
                    payload,
                    job.context,
                    chunk.indices,
                    job.replace_for(chunk.indices),
                    driver,
                    slot_dir,
                )
                future.add_done_callback(watch)
                futures[future] = chunk

            lost: list[Chunk] = []
            delivered_before = len(job.results)
            for future in concurrent.futures.as_completed(futures):
                chunk = futures[future]
                try:
                    reply = future.result()
                except self._broken_types:
                    lost.append(chunk)
                    continue
                self._pids.add(reply["pid"])
                job.accept(reply)
            if not lost:
                continue

            blamed = self._after_break(job, watch.take(), lost, queue, slot_dir)
            if blamed or len(job.results) > delivered_before:
                breaks_without_progress = 0
            else:
                breaks_without_progress += 1
                if breaks_without_progress >= MAX_BREAKS_WITHOUT_PROGRESS:
                    raise RuntimeError(
                        f"loky's workers died {breaks_without_progress} times in a row without finishing an index "
                        f"and without running one that could be blamed; {len(job.pending())} indices are left. "
                        f"Run with n_jobs=1 or backend='process_pool' to see the error."
                    )
        return executor

    def _after_break(self, job: Job, snapshot: _Snapshot | None, lost: list[Chunk], queue: deque[Chunk], slot_dir: str) -> int:
        """Record the indices that the dead workers were running as failed, and requeue the rest.

        Returns the number of indices recorded as failed.
        """
        if snapshot is None:
            snapshot = _Snapshot(RuntimeError("loky's executor broke"))
        self._wait_for_workers_gone(snapshot)
        codes = [int(c) for c in _EXIT_CODE.findall(str(snapshot.error))]
        exitcode = codes[0] if len(set(codes)) == 1 else None
        culprits = {pid: snapshot.running.get(pid) for pid in snapshot.dead}
        death = exit_reason(exitcode) if exitcode is not None else "ended unexpectedly"
        logger.warning(
            "loky worker process(es) %s %s while running index(es) %s, so the rest is resubmitted",
            sorted(culprits),
            death,
            sorted(i for i in culprits.values() if i is not None),
        )

        blamed: dict[int, int] = {}
        for pid, index in culprits.items():
            job.mark_dead(pid, f"process {pid} {death}")
            if index is not None:
                blamed[index] = pid
        for pid in snapshot.running:
            if pid not in culprits and not _alive(pid):
                job.mark_dead(pid, f"killed by loky after worker process(es) {sorted(culprits)} died")
        for name in os.listdir(slot_dir):
            if name.isdigit() and not _alive(int(name)):
                os.unlink(os.path.join(slot_dir, name))

        for chunk in lost:
            leftover = job.recover(chunk.indices)
            for index in [i for i in leftover if i in blamed]:
                pid = blamed[index]
                ids = job.worker_ids_of(pid)
                record, error = worker_died_record(index, pid, exitcode, job.run_id, ids[0] if ids else None, death)
                leftover.remove(index)
                job.deliver(index, None, record if job.writer is not None else None, error)
            if leftover:
                # A rerun overwrites what a lost worker may have committed after the store was read.
                job.replace.update(leftover)
                queue.append(Chunk(leftover, chunk.ordered))
        return len(blamed)

    def _wait_for_workers_gone(self, snapshot: _Snapshot) -> None:
        """Wait until loky has killed the broken executor's workers, so none records an index after the store is read."""
        # loky fails the futures before it kills the surviving workers, so the
        # driver can get here while they still run their last index.
        if self._current is not None:
            try:
                self._current.shutdown(wait=True)
            except Exception as exc:  # noqa: BLE001 - the workers are checked below anyway
                logger.debug("Shutting down loky's broken executor failed: %s", exc)
        pids = [pid for pid in snapshot.running if pid not in snapshot.dead]
        deadline = time.monotonic() + WORKER_EXIT_SECONDS
        while any(_alive(pid) for pid in pids):
            if time.monotonic() > deadline:
                alive = [pid for pid in pids if _alive(pid)]
                raise RuntimeError(
                    f"loky's workers {alive} were still running {WORKER_EXIT_SECONDS:.0f} s after their executor broke; "
                    f"stop them and rerun with resume=True."
                )
            time.sleep(0.01)

    def _finish(self, job: Job, executor: Any, key: str) -> None:
        """Flush every worker's filters and close its runner, in rounds because loky has no worker affinity."""
        waiting = set(self._pids)
        for _ in range(FINISH_ROUNDS):
            futures = [executor.submit(_worker.finish, key, FINISH_HOLD_SECONDS) for _ in range(job.n_jobs)]
            for future in futures:
                reply = future.result()
                waiting.discard(reply["pid"])
                if reply["had_runner"]:
                    job.finish_remote_worker(reply)
            waiting = {pid for pid in waiting if _alive(pid)}
            if not waiting:
                return
        logger.debug("loky workers %s did not take a finish call; their runners close with the next run", sorted(waiting))

    def _stop(self, job: Job) -> None:
        """Kill the workers after an interrupt or an error, so that no index keeps running."""
        executor = self._current
        if executor is None:
            return
        try:
            executor.shutdown(wait=True, kill_workers=True)
        except Exception as exc:  # noqa: BLE001 - the run's own exception matters more
            logger.warning("Stopping loky's workers failed: %s", exc)
