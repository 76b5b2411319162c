"""Running pipelines: :func:`run_pipeline`, :func:`gather_pipeline` and the backend registry."""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from typing import Any

from physicsnemo_curator.core.execute import RunContext
from physicsnemo_curator.core.pipeline import Pipeline, _check_indices
from physicsnemo_curator.core.store import close_writers, writer_for
from physicsnemo_curator.run._job import Job, StopRun
from physicsnemo_curator.run._progress import make_progress
from physicsnemo_curator.run._registry import BackendInfo, get_backend, list_backends, register_backend

__all__ = ["BackendInfo", "gather_pipeline", "list_backends", "register_backend", "run_pipeline"]

logger = logging.getLogger(__name__)


def _sequential() -> Any:
    from physicsnemo_curator.run.sequential import SequentialBackend

    return SequentialBackend()


def _process_pool() -> Any:
    from physicsnemo_curator.run.process_pool import ProcessPoolBackend

    return ProcessPoolBackend()


def _loky() -> Any:
    from physicsnemo_curator.run.loky import LokyBackend

    return LokyBackend()


def _dask() -> Any:
    from physicsnemo_curator.run.dask import DaskBackend

    return DaskBackend()


register_backend("sequential", _sequential, "every index in the calling process")
register_backend("process_pool", _process_pool, "local worker processes that survive crashes")
register_backend("loky", _loky, "loky's reusable process executor", requires=("loky",), extra="loky")
register_backend("dask", _dask, "a dask.distributed Client, or a local cluster", requires=("distributed",), extra="dask")

_ON_ERROR = ("raise", "continue")


def run_pipeline(
    pipeline: Pipeline,
    n_jobs: int = 1,
    backend: str = "sequential",
    indices: Sequence[int] | None = None,
    on_error: str = "raise",
    progress: bool = True,
    db_dir: str | os.PathLike[str] | None = None,
    resume: bool | None = None,
    use_tui: bool | None = None,
    **backend_options: Any,
) -> list[list[str] | None]:
    """Run ``pipeline`` over ``indices`` and return the written paths per index.

    Parameters
    ----------
    pipeline : Pipeline
        The pipeline to run.
    n_jobs : int
        Worker processes; ``-1`` means one per CPU; ``1`` runs sequentially
        whatever the backend.
    backend : str
        ``"sequential"``, ``"process_pool"``, ``"loky"``, ``"dask"`` or a
        name given to :func:`register_backend`.
    indices : sequence of int, optional
        The indices to run; all of them by default.
    on_error : {"raise", "continue"}
        ``"raise"`` stops at the first failing index and raises its
        exception; ``"continue"`` records it, runs the rest and logs one
        warning with the failed count.
    progress : bool
        Show a progress bar on a terminal, or a widget in Jupyter.
    db_dir : str or Path, optional
        Overrides ``pipeline.db_dir``.
    resume : bool, optional
        Overrides ``pipeline.resume``: skip indices completed in
        ``<hash16>.db`` and rerun failed ones.
    use_tui : bool, optional
        Alias of ``progress`` (the name used by the reference project).
    **backend_options
        Passed to the backend; an unknown name raises with a spelling hint.
        ``remote=True`` makes workers send records back to the driver
        instead of writing the store; ``heartbeat_seconds=`` (default 2.0)
        and ``chunk_size=`` apply to every parallel backend;
        ``start_method=`` to ``process_pool``; ``timeout=`` to ``loky``;
        ``client=`` (a ``dask.distributed.Client``) to ``dask``.

    Returns
    -------
    list
        For each requested index, in order: the list of paths its sink
        returned, or ``None`` when it failed.
    """
    from physicsnemo_curator.core.pipeline import Pipeline as _Pipeline

    if not isinstance(pipeline, _Pipeline):
        raise TypeError(
            f"run_pipeline needs a Pipeline, got {type(pipeline).__name__}; build one with "
            f"Source(...).filter(...).write(...) or Pipeline(source=..., filters=[...], sink=...)."
        )
    if use_tui is not None:
        progress = use_tui
    if on_error not in _ON_ERROR:
        raise ValueError(f"on_error={on_error!r} is not valid; use 'raise' or 'continue'.")
    if pipeline.source is None:
        raise ValueError("The pipeline has no source; build it with Source(...).filter(...).write(...).")
    if db_dir is not None:
        pipeline.db_dir = db_dir
        pipeline._new_db()
    if resume is not None:
        pipeline.resume = resume
    if not pipeline.resume and pipeline.db_file is None:
        pipeline._new_db()

    n = len(pipeline)
    if indices is not None and (isinstance(indices, (str, bytes)) or not hasattr(indices, "__iter__")):
        raise TypeError(f"indices={indices!r} is not a sequence; pass a list of ints such as [0, 5, 7], or None for all.")
    requested = list(range(n)) if indices is None else _check_indices(list(indices), n)
    if isinstance(n_jobs, bool) or not isinstance(n_jobs, int) or (n_jobs < 1 and n_jobs != -1):
        raise ValueError(f"n_jobs={n_jobs!r} is not valid; use a positive int, or -1 for one worker per CPU.")
    if n_jobs == -1:
        n_jobs = os.cpu_count() or 1
    runner = get_backend(backend)
    backend_name = backend
    if n_jobs == 1 and backend != "sequential":
        # One worker gains nothing from a pool; the backend's options are still checked.
        backend_name = "sequential"
        runner = get_backend("sequential")

    results: dict[int, list[str] | None] = {}
    replace: set[int] = set()
    to_run = requested
    writer = None
    context = None
    run_id = None
    if pipeline.track_metrics:
        pipeline._prepare_store()
        writer = writer_for(pipeline.db_path)
        status = dict(writer.conn.execute("SELECT idx, status FROM indices").fetchall())
        if pipeline.resume:
            done = [i for i in requested if status.get(i) == "completed"]
            if done:
                stored = _stored_outputs(writer, done)
                for i in done:
                    results[i] = stored.get(i, [])
                logger.info("Resuming %s: %d of %d indices already completed", pipeline.db_path, len(done), len(requested))
            to_run = [i for i in requested if i not in results]
        replace = {i for i in to_run if i in status}
        run_id = writer.start_run(backend_name, n_jobs, len(requested))
        remote = bool(backend_options.pop("remote", False))
        context = RunContext(str(pipeline.db_path), run_id, backend_name, remote=remote)

    display = make_progress(len(requested), progress, str(pipeline.db_path) if pipeline.track_metrics else None)
    job = Job(
        pipeline=pipeline,
        indices=to_run,
        n_jobs=n_jobs,
        on_error=on_error,
        context=context,
        replace=replace,
        writer=writer,
        progress=display,
        results=results,
        options=backend_options,
    )
    if display is not None and results:
        display.update(len(results), 0)

    outcome = "finished"
    try:
        if to_run:
            runner.run(job)
    except StopRun as stop:
        outcome = "failed"
        raise stop.error from None
    except KeyboardInterrupt:
        outcome = "interrupted"
        raise
    except BaseException:
        outcome = "failed"
        raise
    finally:
        if display is not None:
            display.close()
        if writer is not None and run_id is not None:
            try:
                writer.flush()
                writer.finish_run(run_id, outcome if not job.failed or outcome != "finished" else "finished")
            except Exception as exc:  # noqa: BLE001 - never hide the run's own exception
                logger.warning("Could not mark run %s of %s as %s: %s", run_id, pipeline.db_path, outcome, exc)
            close_writers(pipeline.db_path)

    if job.unrecorded:
        from physicsnemo_curator.core.errors import StoreWriteError

        raise StoreWriteError(
            f"{len(job.unrecorded)} index(es) ran but could not be recorded in {pipeline.db_path}: "
            f"{sorted(job.unrecorded)[:50]}. They are not marked completed; rerun with resume=True."
        )
    if job.failed:
        logger.warning(
            "%d of %d indices failed (first: %s); see pipeline.failed_indices and the store's error log.",
            len(job.failed),
            len(requested),
            sorted(job.failed)[:10],
        )
    return [results.get(i) for i in requested]


def _stored_outputs(writer: Any, indices: list[int]) -> dict[int, list[str]]:
    wanted = set(indices)
    out: dict[int, list[str]] = {}
    for index, path in writer.conn.execute("SELECT idx, path FROM outputs ORDER BY rowid"):
        if index in wanted:
            out.setdefault(index, []).append(path)
    return out


def gather_pipeline(pipeline: Pipeline) -> dict[str, list[str]]:
    """Merge what stateful filters flushed in each worker into their final artifacts.

    Calls each filter class's ``merge(shard_paths, config)`` once with the
    paths its workers flushed or reported per index; files that no longer
    exist are left out. The returned paths are recorded as artifacts of the
    run, with no index and no worker. Returns ``{filter name: paths}``.
    """
    if not pipeline.track_metrics or not pipeline.db_path.exists():
        return {}
    writer = writer_for(pipeline.db_path)
    out: dict[str, list[str]] = {}
    try:
        for position, flt in enumerate(pipeline.filters, start=1):
            # Per-index artifacts count too: a worker killed before its final
            # flush still reported its shard after each completed index.
            shards = [
                row[0]
                for row in writer.conn.execute(
                    "SELECT path FROM artifacts WHERE position=? AND NOT (idx IS NULL AND worker_id IS NULL) "
                    "ORDER BY rowid",
                    (position,),
                )
                if os.path.exists(row[0])
            ]
            if not shards:
                continue
            merged = [str(p) for p in type(flt).merge(list(dict.fromkeys(shards)), flt.config())]
            writer.record_flush_artifacts(None, [(position, p) for p in merged])
            out[flt.name] = merged
    finally:
        close_writers(pipeline.db_path)
    return out
