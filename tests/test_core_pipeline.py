"""Pipeline behaviour: checkpoints, resume, database naming, errors, persistence, metrics output."""

from __future__ import annotations

import csv
import json
import logging
import re
from pathlib import Path

import pytest

from physicsnemo_curator import Pipeline, run_pipeline
from physicsnemo_curator.core.errors import MetricsDisabledError
from physicsnemo_curator.core.pipeline_store import PipelineStore
from pipeline_parts import NullSink, RangeSource, SleepFilter, TextSink


def _calls(count_dir: Path) -> list[int]:
    return sorted(int(p.name.split("-")[0]) for p in count_dir.iterdir())


def test_builder_returns_new_pipelines(tmp_path):
    base = RangeSource(4).filter(SleepFilter())
    longer = base.filter(SleepFilter())
    written = longer.write(TextSink(str(tmp_path)))

    assert len(base.filters) == 1
    assert len(longer.filters) == 2
    assert longer.sink is None
    assert isinstance(written.sink, TextSink)
    assert len(written) == 4


def test_metrics_off_creates_no_database(tmp_path, cache_dir):
    count = tmp_path / "count"
    count.mkdir()
    pipeline = Pipeline(source=RangeSource(5, count_dir=str(count)), sink=TextSink(str(tmp_path / "out")), track_metrics=False)
    run_pipeline(pipeline, progress=False)
    run_pipeline(pipeline, progress=False, resume=True)
    pipeline[2]

    assert list(cache_dir.iterdir()) == []
    assert not list(tmp_path.rglob("*.db"))
    assert len(_calls(count)) == 11
    with pytest.raises(MetricsDisabledError, match="track_metrics=True"):
        pipeline.metrics


def test_resume_runs_only_failed_index(tmp_path):
    count = tmp_path / "count"
    count.mkdir()
    marker = tmp_path / "still-broken"
    marker.touch()
    source = RangeSource(10, fail_on=[3], count_dir=str(count), fail_while=str(marker))
    pipeline = Pipeline(source=source, sink=TextSink(str(tmp_path / "out")), db_dir=tmp_path, resume=True)
    first = run_pipeline(pipeline, on_error="continue", progress=False)

    assert first[3] is None
    assert pipeline.failed_indices == [3]
    assert len(pipeline.completed_indices) == 9

    for entry in count.iterdir():
        entry.unlink()
    marker.unlink()
    second = run_pipeline(pipeline, resume=True, progress=False)

    assert _calls(count) == [3]
    assert second == [[str(tmp_path / "out" / f"{i}.txt")] for i in range(10)]
    assert pipeline.failed_indices == []
    assert pipeline.remaining_indices() == []


def test_on_error_continue_logs_one_summary(tmp_path, caplog):
    pipeline = Pipeline(source=RangeSource(6, fail_on=[1, 4]), sink=NullSink(), db_dir=tmp_path)
    with caplog.at_level(logging.WARNING, logger="physicsnemo_curator"):
        results = run_pipeline(pipeline, on_error="continue", progress=False)

    assert [r is None for r in results] == [False, True, False, False, True, False]
    summaries = [r for r in caplog.records if "indices failed" in r.getMessage()]
    assert len(summaries) == 1
    assert "2 of 6" in summaries[0].getMessage()


def test_on_error_raise_reraises_original(tmp_path):
    pipeline = Pipeline(source=RangeSource(6, fail_on=[2]), sink=NullSink(), db_dir=tmp_path)
    with pytest.raises(ValueError, match="index 2 is broken"):
        run_pipeline(pipeline, progress=False)
    assert pipeline.failed_indices == [2]


def test_failing_index_records_error(tmp_path):
    pipeline = Pipeline(source=RangeSource(4, fail_on=[1]), sink=NullSink(), db_dir=tmp_path)
    run_pipeline(pipeline, on_error="continue", progress=False)

    with PipelineStore.from_db(pipeline.db_path) as store:
        error = store.error(1)
    assert error["type"] == "ValueError"
    assert error["message"] == "index 1 is broken <b>bold</b>"
    assert "Traceback" in error["traceback"]
    assert "raise ValueError" in error["traceback"]
    assert isinstance(error["exception"], ValueError)


def test_getitem_runs_and_reraises(tmp_path):
    pipeline = Pipeline(source=RangeSource(4, fail_on=[2]), sink=TextSink(str(tmp_path / "out")), db_dir=tmp_path)

    assert pipeline[1] == [str(tmp_path / "out" / "1.txt")]
    assert pipeline[-1] == [str(tmp_path / "out" / "3.txt")]
    with pytest.raises(ValueError, match="index 2 is broken"):
        pipeline[2]
    assert pipeline.completed_indices == [1, 3]
    assert pipeline.failed_indices == [2]
    with pytest.raises(IndexError, match="out of range"):
        pipeline[4]


def test_db_naming_resume_and_fresh(tmp_path, cache_dir):
    make = lambda **kw: Pipeline(source=RangeSource(2), sink=NullSink(), **kw)  # noqa: E731
    fresh = make()
    run_pipeline(fresh, progress=False)
    assert fresh.db_path.parent == cache_dir
    assert re.fullmatch(r"[0-9a-f]{16}_\d{8}T\d{6}_\d{6}Z\.db", fresh.db_path.name)

    again = make()
    run_pipeline(again, progress=False)
    assert again.db_path != fresh.db_path

    resumable = make(resume=True)
    run_pipeline(resumable, progress=False)
    assert resumable.db_path.name == f"{resumable.config_hash[:16]}.db"

    in_dir = make(db_dir=tmp_path / "runs")
    run_pipeline(in_dir, progress=False)
    assert in_dir.db_path.parent == tmp_path / "runs"

    exact = make(db_dir=tmp_path / "ignored", db_file=tmp_path / "exact.db")
    run_pipeline(exact, progress=False)
    assert exact.db_path == tmp_path / "exact.db"
    assert exact.db_path.exists()


def test_cache_dir_environment_order(tmp_path, monkeypatch):
    from physicsnemo_curator.core.paths import cache_dir

    monkeypatch.setenv("PSNC_CACHE_DIR", str(tmp_path / "explicit"))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert cache_dir() == tmp_path / "explicit"
    monkeypatch.delenv("PSNC_CACHE_DIR")
    assert cache_dir() == tmp_path / "xdg" / "psnc"
    monkeypatch.delenv("XDG_CACHE_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert cache_dir() == tmp_path / "home" / ".cache" / "psnc"


@pytest.mark.parametrize("suffix", [".yaml", ".json"])
def test_save_load_keeps_hash(tmp_path, suffix):
    pipeline = RangeSource(7, sleep=0.0).filter(SleepFilter(0.5)).write(TextSink(str(tmp_path / "out")))
    path = pipeline.save(tmp_path / f"pipeline{suffix}")
    loaded = Pipeline.load(path)

    assert loaded.config_hash == pipeline.config_hash
    assert len(loaded) == 7
    assert loaded.filters[0].sleep == 0.5
    assert loaded.sink.output_dir == str(tmp_path / "out")


def test_load_rejects_unknown_type(tmp_path):
    from physicsnemo_curator.core.errors import ConfigError

    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"source": {"type": "no_such_module:Thing", "params": {}}}))
    with pytest.raises(ConfigError, match="no_such_module"):
        Pipeline.load(bad)


def test_metrics_exports(tmp_path):
    pipeline = Pipeline(source=RangeSource(5), filters=[SleepFilter()], sink=NullSink(), db_dir=tmp_path)
    run_pipeline(pipeline, progress=False)
    metrics = pipeline.metrics

    summary = metrics.summary()
    assert summary["num_indices"] == 5
    assert summary["total_wall_time_ns"] == sum(m.wall_time_ns for m in metrics.indices)
    assert summary["mean_index_time_ns"] == pytest.approx(summary["total_wall_time_ns"] / 5)
    assert [i["index"] for i in summary["indices"]] == [0, 1, 2, 3, 4]

    data = json.loads(metrics.to_json(tmp_path / "profile.json").read_text())
    assert data["num_indices"] == 5

    with open(metrics.to_csv(tmp_path / "profile.csv")) as handle:
        rows = list(csv.DictReader(handle))
    assert len(rows) == 5
    assert {"source_ns", "sleepy_ns", "sink_ns"} <= set(rows[0])
    assert int(rows[0]["source_ns"]) == metrics.indices[0].stages[0].wall_time_ns

    text = metrics.to_text()
    assert "5 indices" in text
    assert "sleepy" in text


def test_artifacts_and_outputs_lookup(tmp_path):
    from pipeline_parts import TextSink as Sink
    from physicsnemo_curator import Filter

    class Marker(Filter[int]):
        name = "marker"

        def __init__(self, directory: str) -> None:
            self.directory = directory
            self._written: list[str] = []

        def __call__(self, items):
            for item in items:
                path = Path(self.directory) / f"marker-{item}.txt"
                path.write_text("x")
                self._written = [str(path)]
                yield item

        def artifacts(self):
            return self._written

    pipeline = Pipeline(source=RangeSource(3), filters=[Marker(str(tmp_path))], sink=Sink(str(tmp_path / "out")), db_dir=tmp_path)
    run_pipeline(pipeline, progress=False)

    assert pipeline.output_paths_for_index(2) == [str(tmp_path / "out" / "2.txt")]
    assert pipeline.index_for_path(tmp_path / "out" / "1.txt") == 1
    assert pipeline.filter_artifacts_for_index(0) == {"marker": [str(tmp_path / "marker-0.txt")]}
    assert len(pipeline.all_filter_artifacts()["marker"]) == 3


def test_reset_and_reset_index(tmp_path):
    pipeline = Pipeline(source=RangeSource(4), sink=NullSink(), db_dir=tmp_path, resume=True)
    run_pipeline(pipeline, progress=False)
    pipeline.reset_index(2)
    assert pipeline.completed_indices == [0, 1, 3]
    pipeline.reset()
    assert pipeline.completed_indices == []
    assert pipeline.db_path.exists()


def test_bad_arguments_named(tmp_path):
    pipeline = Pipeline(source=RangeSource(3), sink=NullSink(), db_dir=tmp_path)
    with pytest.raises(ValueError, match="on_error='ignore'"):
        run_pipeline(pipeline, on_error="ignore")
    with pytest.raises(ValueError, match="Unknown backend 'threads'"):
        run_pipeline(pipeline, backend="threads", n_jobs=2)
    with pytest.raises(IndexError, match="Index 7 is out of range"):
        run_pipeline(pipeline, indices=[0, 7])
    with pytest.raises(ValueError, match="n_jobs=0"):
        run_pipeline(pipeline, n_jobs=0)


def test_indices_subset_in_requested_order(tmp_path):
    pipeline = Pipeline(source=RangeSource(10), sink=TextSink(str(tmp_path / "o")), db_dir=tmp_path)
    results = run_pipeline(pipeline, indices=[7, 2, 5], progress=False)
    assert results == [[str(tmp_path / "o" / f"{i}.txt")] for i in (7, 2, 5)]
    assert pipeline.completed_indices == [2, 5, 7]


def test_process_pool_records_everything(tmp_path):
    pipeline = Pipeline(source=RangeSource(40), filters=[SleepFilter()], sink=TextSink(str(tmp_path / "o")), db_dir=tmp_path)
    results = run_pipeline(pipeline, n_jobs=2, backend="process_pool", progress=False)

    assert results == [[str(tmp_path / "o" / f"{i}.txt")] for i in range(40)]
    assert pipeline.completed_indices == list(range(40))
    with PipelineStore.from_db(pipeline.db_path) as store:
        workers = store.workers()
    assert len({w["pid"] for w in workers}) == 2
    assert sum(w["n_done"] for w in workers) == 40


def test_load_rejects_non_component_callable(tmp_path):
    from physicsnemo_curator.core.errors import ConfigError

    marker = tmp_path / "ran"
    bad = tmp_path / "evil.yaml"
    bad.write_text(f'source: {{type: "os:system", params: {{command: "touch {marker}"}}}}\n')

    with pytest.raises(ConfigError, match="is not a subclass of Source"):
        Pipeline.load(bad)
    assert not marker.exists()


def test_save_accepts_numpy_scalars(tmp_path):
    import numpy as np

    pipeline = RangeSource(np.int64(3)).filter(SleepFilter(np.float64(0.25))).write(NullSink())
    loaded = Pipeline.load(pipeline.save(tmp_path / "p.yaml"))

    assert loaded.filters[0].sleep == 0.25
    assert loaded.config_hash == pipeline.config_hash


def test_load_directory_is_clear(tmp_path):
    from physicsnemo_curator.core.errors import ConfigError

    (tmp_path / "p.yaml").mkdir()
    with pytest.raises(ConfigError, match="is not a file"):
        Pipeline.load(tmp_path / "p.yaml")


def test_run_pipeline_input_errors(tmp_path):
    import numpy as np

    pipeline = Pipeline(source=RangeSource(4), sink=NullSink(), db_dir=tmp_path)
    with pytest.raises(TypeError, match="needs a Pipeline, got RangeSource"):
        run_pipeline(RangeSource(3))
    with pytest.raises(TypeError, match="indices=5 is not a sequence"):
        run_pipeline(pipeline, indices=5)
    with pytest.raises(ValueError, match="n_jobs=True"):
        run_pipeline(pipeline, n_jobs=True)
    with pytest.raises(ValueError, match="Unknown backend 'bogus'"):
        run_pipeline(pipeline, backend="bogus")
    with pytest.raises(TypeError, match="has no option 'clinet'"):
        run_pipeline(pipeline, clinet=None, progress=False)
    with pytest.raises(TypeError, match="Pipeline index 'a' is not an int"):
        pipeline["a"]
    assert run_pipeline(pipeline, indices=np.arange(2), progress=False) == [["out/0.bin"], ["out/1.bin"]]


def test_sink_returning_int_named(tmp_path):
    from physicsnemo_curator import Sink

    class CountingSink(Sink[int]):
        def __call__(self, items, index):
            return sum(1 for _ in items)

    pipeline = Pipeline(source=RangeSource(2), sink=CountingSink(), db_dir=tmp_path)
    with pytest.raises(TypeError, match="Sink CountingSink returned 1"):
        run_pipeline(pipeline, progress=False)


def test_filter_named_sink_keeps_labels(tmp_path):
    from physicsnemo_curator import Filter

    class Sneaky(Filter[int]):
        name = "sink"

    pipeline = Pipeline(source=RangeSource(2), filters=[Sneaky()], sink=NullSink(), db_dir=tmp_path)
    run_pipeline(pipeline, progress=False)

    assert [s.name for s in pipeline.metrics.indices[0].stages] == ["source", "sink (filter)", "sink"]
