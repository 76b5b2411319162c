"""The :class:`Pipeline`: a source, filters and a sink, with profiling and checkpoints."""

from __future__ import annotations

import dataclasses
import json
import operator
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from physicsnemo_curator.core.base import Filter, Sink, Source
from physicsnemo_curator.core.config import (
    build_component,
    config_hash,
    pipeline_config,
    read_config,
    save_config,
)
from physicsnemo_curator.core.errors import MetricsDisabledError
from physicsnemo_curator.core.metrics import PipelineMetrics
from physicsnemo_curator.core.paths import cache_dir, db_file_name
from physicsnemo_curator.core.pipeline_store import PipelineStore


@dataclasses.dataclass
class Pipeline:
    """A ``source -> filters -> sink`` chain that records what each index costs.

    Parameters
    ----------
    source : Source
        Yields the items of each index.
    filters : list of Filter
        Applied in order; each is a generator over the previous stage.
    sink : Sink, optional
        Writes the items of an index and returns the written paths.
    track_metrics : bool
        Record timings and checkpoints in a run store. With ``False`` no
        database file is created and nothing is skipped on a rerun.
    track_memory : bool
        Record the peak Python memory (tracemalloc) and peak native RSS of
        each index.
    track_gpu : bool
        Record the peak CUDA memory of each index (needs torch with CUDA).
    db_dir : str or Path, optional
        Directory for the run store; defaults to :func:`~physicsnemo_curator.core.paths.cache_dir`.
    db_file : str or Path, optional
        The exact run store file; overrides ``db_dir`` and ``resume`` naming.
    resume : bool
        Reuse ``<hash16>.db`` and skip indices completed there; otherwise a
        fresh ``<hash16>_<timestamp>.db`` is created for each run.
    """

    source: Source[Any] | None = None
    filters: list[Filter[Any]] = dataclasses.field(default_factory=list)
    sink: Sink[Any] | None = None
    track_metrics: bool = True
    track_memory: bool = True
    track_gpu: bool = False
    db_dir: str | os.PathLike[str] | None = None
    db_file: str | os.PathLike[str] | None = None
    resume: bool = False
    _db_path: Path | None = dataclasses.field(default=None, init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        self.filters = list(self.filters)
        for position, flt in enumerate(self.filters):
            if not isinstance(flt, Filter):
                raise TypeError(f"filters[{position}] is a {type(flt).__name__}, not a Filter; wrap it in a Filter subclass.")
        if self.source is not None and not isinstance(self.source, Source):
            raise TypeError(f"source is a {type(self.source).__name__}, not a Source.")
        if self.sink is not None and not isinstance(self.sink, Sink):
            raise TypeError(f"sink is a {type(self.sink).__name__}, not a Sink.")

    # -- building -----------------------------------------------------

    def _copy(self, **changes: Any) -> Pipeline:
        values = {f.name: getattr(self, f.name) for f in dataclasses.fields(self) if f.init}
        values.update(changes)
        return Pipeline(**values)

    def filter(self, flt: Filter[Any]) -> Pipeline:
        """Return a new pipeline with ``flt`` appended."""
        return self._copy(filters=[*self.filters, flt])

    def write(self, sink: Sink[Any]) -> Pipeline:
        """Return a new pipeline that writes to ``sink``."""
        return self._copy(sink=sink)

    def __len__(self) -> int:
        if self.source is None:
            raise ValueError("This pipeline has no source, so it has no length; build it from a Source.")
        return len(self.source)

    def stage_list(self) -> list[tuple[str, str]]:
        """Return ``(name, kind)`` of every stage: ``source``, each filter, ``sink``."""
        # A filter named like the end stages keeps a distinct label, so timings stay unambiguous.
        stages = [("source", "source")] + [
            (f"{f.name} (filter)" if f.name in ("source", "sink") else f.name, "filter") for f in self.filters
        ]
        if self.sink is not None:
            stages.append(("sink", "sink"))
        return stages

    # -- identity and files -------------------------------------------

    def config(self) -> dict[str, Any]:
        return pipeline_config(self)

    @property
    def config_hash(self) -> str:
        return config_hash(self.config())

    @property
    def db_path(self) -> Path:
        """The run store file: ``db_file``, else ``<hash16>.db`` with ``resume``, else a timestamped name chosen once."""
        if self.db_file is not None:
            return Path(self.db_file)
        if self.resume:
            # The resume name follows the configuration, so a changed pipeline gets its own store.
            directory = Path(self.db_dir) if self.db_dir is not None else cache_dir()
            return directory / db_file_name(self.config_hash, True)
        if self._db_path is None:
            directory = Path(self.db_dir) if self.db_dir is not None else cache_dir()
            self._db_path = directory / db_file_name(self.config_hash, self.resume)
        return self._db_path

    def _new_db(self) -> None:
        self._db_path = None

    def _store(self, create: bool = False) -> PipelineStore | None:
        if not self.track_metrics:
            raise MetricsDisabledError(
                "Metrics are off for this pipeline (track_metrics=False), so nothing was recorded. "
                "Build it with Pipeline(..., track_metrics=True) to record metrics and checkpoints."
            )
        path = self.db_path
        if not path.exists():
            if not create:
                return None
            self._prepare_store()
        return PipelineStore(path, readonly=False)

    def _prepare_store(self) -> None:
        from physicsnemo_curator.core.store import writer_for

        writer = writer_for(self.db_path)
        total = None
        try:
            total = len(self.source) if self.source is not None else None
        except (TypeError, NotImplementedError):
            total = None
        writer.ensure_meta(
            self.config_hash,
            json.dumps(self.config()),
            "" if self.source is None else self.source.name,
            total,
            self.stage_list(),
        )

    # -- checkpoints --------------------------------------------------

    def _read(self, method: str, *args: Any, default: Any) -> Any:
        store = self._store()
        if store is None:
            return default
        with store:
            return getattr(store, method)(*args)

    @property
    def completed_indices(self) -> list[int]:
        return self._read("completed_indices", default=[])

    @property
    def failed_indices(self) -> list[int]:
        return self._read("failed_indices", default=[])

    def remaining_indices(self) -> list[int]:
        """Return the indices that are not completed (failed ones included)."""
        done = set(self.completed_indices) if self.track_metrics else set()
        return [i for i in range(len(self)) if i not in done]

    def summary(self) -> dict[str, Any]:
        total = len(self) if self.source is not None else None
        store = self._store()
        if store is None:
            return {"db_path": str(self.db_path), "total": total, "completed": 0, "failed": 0, "remaining": total}
        with store:
            return store.summary(total)

    def reset(self) -> None:
        """Forget every recorded index of this pipeline's store."""
        store = self._store()
        if store is not None:
            with store:
                store.reset()

    def reset_index(self, index: int) -> None:
        store = self._store()
        if store is not None:
            with store:
                store.reset_index(index)

    def output_paths_for_index(self, index: int) -> list[str]:
        return self._read("output_paths_for_index", index, default=[])

    def index_for_path(self, path: str | os.PathLike[str]) -> int | None:
        return self._read("index_for_path", path, default=None)

    def filter_artifacts_for_index(self, index: int) -> dict[str, list[str]]:
        return self._read("filter_artifacts_for_index", index, default={})

    def all_filter_artifacts(self) -> dict[str, list[str]]:
        return self._read("all_filter_artifacts", default={})

    @property
    def active_workers(self) -> list[dict[str, Any]]:
        return self._read("active_workers", default=[])

    @property
    def metrics(self) -> PipelineMetrics:
        """The :class:`PipelineMetrics` recorded in this pipeline's store.

        Raises
        ------
        MetricsDisabledError
            With ``track_metrics=False``.
        """
        return self._read("metrics", default=PipelineMetrics([]))

    # -- running one index --------------------------------------------

    def __getitem__(self, index: int) -> list[str]:
        """Run ``index`` in this process and return the paths the sink wrote.

        A completed index (with metrics on) returns its recorded paths
        without running again. A failing index is recorded and its original
        exception is raised.
        """
        from physicsnemo_curator.core.execute import IndexRunner, RunContext
        from physicsnemo_curator.core.store import writer_for

        if self.source is None:
            raise ValueError("This pipeline has no source; build it from a Source before indexing it.")
        if isinstance(index, bool) or not hasattr(index, "__index__"):
            raise TypeError(f"Pipeline index {index!r} is not an int; use pipeline[i] with an int i.")
        index = operator.index(index)
        n = len(self)
        if not -n <= index < n:
            raise IndexError(f"Index {index} is out of range for a source of length {n}.")
        index = index % n
        context = None
        if self.track_metrics:
            store = self._store(create=True)
            assert store is not None
            with store:
                if store.status_of(index) == "completed":
                    return store.output_paths_for_index(index)
                replace = store.status_of(index) is not None
            self._prepare_store()
            context = RunContext(str(self.db_path), None, "inline", heartbeat_seconds=0)
        else:
            replace = False
        runner = IndexRunner(self, context).open(register=False)
        try:
            paths, _, error = runner.run_index(index, replace=replace)
        finally:
            runner.close()
        if error is not None:
            raise error
        if self.track_metrics:
            writer_for(self.db_path).require_flushed()
        return paths or []

    # -- persistence --------------------------------------------------

    def save(self, path: str | os.PathLike[str]) -> Path:
        """Write the pipeline's configuration to a ``.yaml``/``.yml`` or ``.json`` file."""
        config = self.config()
        config["db_dir"] = None if self.db_dir is None else str(self.db_dir)
        config["db_file"] = None if self.db_file is None else str(self.db_file)
        config["resume"] = self.resume
        return save_config(config, path)

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> Pipeline:
        """Build a pipeline from a file written by :meth:`save`.

        Loading imports the modules the file names, so load only files you trust.
        """
        data = read_config(path)
        return cls(
            source=build_component(data["source"], Source),
            filters=[build_component(f, Filter) for f in data.get("filters") or []],
            sink=None if data.get("sink") is None else build_component(data["sink"], Sink),
            track_metrics=bool(data.get("track_metrics", True)),
            track_memory=bool(data.get("track_memory", True)),
            track_gpu=bool(data.get("track_gpu", False)),
            db_dir=data.get("db_dir"),
            db_file=data.get("db_file"),
            resume=bool(data.get("resume", False)),
        )


def _check_indices(indices: Sequence[int], n: int) -> list[int]:
    out = []
    for value in indices:
        if isinstance(value, bool):
            raise TypeError(f"Index {value!r} is not an int; pass indices as a list of ints.")
        try:
            i = operator.index(value)
        except TypeError:
            raise TypeError(f"Index {value!r} is not an int; pass indices as a list of ints.") from None
        if not 0 <= i < n:
            raise IndexError(f"Index {i} is out of range for a source of length {n}; valid indices are 0 to {n - 1}.")
        out.append(i)
    return out
