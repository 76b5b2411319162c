"""Public API surface: generics, params, progress display, store summary, import paths."""

from __future__ import annotations

import io

import pytest

from physicsnemo_curator import Filter, Param, Pipeline, Sink, Source, list_backends, run_pipeline
from physicsnemo_curator.core.pipeline_store import IndexMetrics, PipelineMetrics, PipelineStore, StageMetrics
from physicsnemo_curator.run._progress import TerminalProgress, make_progress
from pipeline_parts import NullSink, RangeSource, SleepFilter


class Mesh:
    pass


class MeshFilter(Filter[Mesh]):
    """A filter generic over a user type, with declared parameters."""

    name = "mesh_filter"
    description = "Does nothing to meshes."

    def __init__(self, scale: float = 1.0, label: str = "x") -> None:
        self.scale = scale
        self.label = label

    @classmethod
    def params(cls):
        return [Param("scale", float, 1.0, "Scale factor."), Param("label", str, "x", "A label.")]


def test_generic_components_and_params():
    assert MeshFilter.name == "mesh_filter"
    assert [p.name for p in MeshFilter.params()] == ["scale", "label"]
    assert MeshFilter(2.0, "y").config() == {"scale": 2.0, "label": "y"}
    assert [p.name for p in RangeSource.params()] == ["n", "sleep", "fail_on", "count_dir", "fail_while"]
    assert not RangeSource.params()[0].required
    assert RangeSource.params()[0].type is int
    assert MeshFilter.dashboard_panel([], selected_index=None) is None
    assert MeshFilter.dashboard_layout_hints() == {}
    assert Filter.__class_getitem__(Mesh) is not None
    assert Sink[Mesh] is not None
    assert Source[Mesh] is not None


def test_default_name_is_class_name():
    class Unnamed(Filter[int]):
        pass

    assert Unnamed.name == "Unnamed"


def test_pipeline_rejects_non_components():
    with pytest.raises(TypeError, match=r"filters\[0\] is a function"):
        Pipeline(source=RangeSource(2), filters=[lambda items: items])


def test_terminal_progress_bar():
    stream = io.StringIO()
    bar = TerminalProgress(10, stream, min_interval=0)
    bar.update(5, 1)
    bar.close()
    text = stream.getvalue()
    assert "5/10" in text
    assert "1 failed" in text
    assert "it/s" in text
    assert "ETA" in text


def test_progress_silenced_when_off_or_not_a_terminal():
    assert make_progress(10, False, None) is None
    assert make_progress(10, True, None) is None  # pytest's stderr is not a terminal


def test_use_tui_alias(tmp_path):
    pipeline = Pipeline(source=RangeSource(3), sink=NullSink(), db_dir=tmp_path)
    assert run_pipeline(pipeline, use_tui=False) == [["out/0.bin"], ["out/1.bin"], ["out/2.bin"]]


def test_store_summary_and_workers(tmp_path):
    pipeline = Pipeline(source=RangeSource(6, fail_on=[5]), filters=[SleepFilter(0.01)], sink=NullSink(), db_dir=tmp_path)
    run_pipeline(pipeline, on_error="continue", progress=False)

    store = PipelineStore.from_db(pipeline.db_path)
    summary = store.summary(total=100)
    assert (summary["total"], summary["completed"], summary["failed"], summary["remaining"]) == (100, 5, 1, 95)
    assert summary["rate_per_s"] > 0
    assert summary["eta_s"] > 0
    assert summary["status"] == "finished"
    assert store.summary()["total"] == 6
    workers = store.workers()
    assert len(workers) == 1
    assert workers[0]["state"] == "stopped"
    assert pipeline.active_workers == []
    metrics = store.metrics()
    assert isinstance(metrics, PipelineMetrics)
    assert isinstance(metrics.indices[0], IndexMetrics)
    assert isinstance(metrics.indices[0].stages[0], StageMetrics)
    store.close()


def test_list_backends_reports_availability():
    names = {b.name: b for b in list_backends()}
    assert {"sequential", "process_pool", "loky", "dask"} <= set(names)
    assert names["sequential"].available


def test_missing_backend_package_names_extra(monkeypatch):
    import importlib.util

    from physicsnemo_curator.run import _registry

    real = importlib.util.find_spec
    monkeypatch.setattr(_registry.importlib.util, "find_spec", lambda name, *a: None if name == "loky" else real(name, *a))
    with pytest.raises(ImportError, match=r'pip install "physicsnemo-curator\[loky\]"'):
        _registry.get_backend("loky")


def test_log_records_captured_per_index(tmp_path):
    import logging
    import warnings

    class Chatty(Filter[int]):
        name = "chatty"

        def __call__(self, items):
            for item in items:
                if item == 2:
                    logging.getLogger("user.component").warning("odd value %s", item)
                    warnings.warn(f"suspicious item {item}", RuntimeWarning, stacklevel=1)
                if item == 3:
                    for k in range(80):
                        logging.getLogger("user.component").error("flood %d", k)
                yield item

    pipeline = Pipeline(source=RangeSource(4), filters=[Chatty()], sink=NullSink(), db_dir=tmp_path)
    with warnings.catch_warnings():
        warnings.simplefilter("always")
        run_pipeline(pipeline, progress=False)

    with PipelineStore.from_db(pipeline.db_path) as store:
        logs = store.logs(2)
        flood = store.logs(3)
    messages = [row["message"] for row in logs]
    assert "odd value 2" in messages
    assert any("suspicious item 2" in m for m in messages)
    assert all(row["worker_id"] is not None for row in logs)
    assert len(flood) == 51
    assert "30 more log records" in flood[-1]["message"]


def test_current_index_inside_components(tmp_path):
    from physicsnemo_curator import current_index

    seen = []

    class Spy(Filter[int]):
        name = "spy"

        def __call__(self, items):
            for item in items:
                seen.append((item, current_index()))
                yield item

    pipeline = Pipeline(source=RangeSource(3), filters=[Spy()], sink=NullSink(), db_dir=tmp_path)
    run_pipeline(pipeline, progress=False)

    assert seen == [(0, 0), (1, 1), (2, 2)]
    assert current_index() is None


def test_gather_merges_shards_without_final_flush(tmp_path):
    import sqlite3

    import pyarrow.parquet as pq

    from physicsnemo_curator import gather_pipeline
    from physicsnemo_curator.domains.mesh.filters.mean import MeanFilter
    from physicsnemo_curator.domains.mesh.sinks.mesh_writer import MeshSink
    from physicsnemo_curator.domains.mesh.sources.random import RandomMeshSource

    output = tmp_path / "means.parquet"
    pipeline = (
        RandomMeshSource(n_samples=12, n_points=50, n_cells=20)
        .filter(MeanFilter(output=str(output)))
        .write(MeshSink(output_dir=str(tmp_path / "meshes")))
    )
    pipeline.db_dir = tmp_path
    run_pipeline(pipeline, n_jobs=2, backend="process_pool", progress=False)
    conn = sqlite3.connect(pipeline.db_path)
    conn.execute("DELETE FROM artifacts WHERE idx IS NULL")  # as if every worker died before its flush
    conn.commit()
    conn.close()

    merged = gather_pipeline(pipeline)

    assert merged == {MeanFilter.name: [str(output)]}
    assert sorted(pq.read_table(output).column("index").to_pylist()) == list(range(12))


def test_same_warning_captured_for_every_index(tmp_path):
    import warnings

    class Repeats(Filter[int]):
        name = "repeats"

        def __call__(self, items):
            for item in items:
                warnings.warn("same text every time", UserWarning, stacklevel=1)
                yield item

    pipeline = Pipeline(source=RangeSource(3), filters=[Repeats()], sink=NullSink(), db_dir=tmp_path)
    with warnings.catch_warnings():
        warnings.simplefilter("default")
        run_pipeline(pipeline, progress=False)

    with PipelineStore.from_db(pipeline.db_path) as store:
        indices = sorted(row["idx"] for row in store.logs() if "same text every time" in row["message"])
    assert indices == [0, 1, 2]
