"""Per-stage timing, memory and GPU probes of the pipeline core."""

from __future__ import annotations

import ctypes
import mmap
import sys
import tracemalloc
import types

import pytest

from physicsnemo_curator import Filter, Pipeline, Sink, Source, run_pipeline
from pipeline_parts import AllocFilter, NullSink, RangeSource, SleepFilter, TextSink


def test_stage_times_chain_subtraction(tmp_path):
    pipeline = Pipeline(
        source=RangeSource(2, sleep=0.03),
        filters=[SleepFilter(0.06)],
        sink=TextSink(str(tmp_path / "out"), sleep=0.09),
        db_dir=tmp_path,
        track_memory=False,
    )
    run_pipeline(pipeline, progress=False)

    for m in pipeline.metrics.indices:
        own = {s.name: s.wall_time_ns / 1e9 for s in m.stages}
        assert [s.name for s in m.stages] == ["source", "sleepy", "sink"]
        assert own["source"] == pytest.approx(0.03, abs=0.02)
        assert own["sleepy"] == pytest.approx(0.06, abs=0.02)
        assert own["sink"] == pytest.approx(0.09, abs=0.02)
        assert sum(s.wall_time_ns for s in m.stages) == pytest.approx(m.wall_time_ns, rel=0.02)
        assert all(s.cpu_time_ns is not None and s.cpu_time_ns >= 0 for s in m.stages)


def test_duplicate_filter_names_kept_in_order(tmp_path):
    pipeline = RangeSource(3).filter(SleepFilter(0.0)).filter(AllocFilter(1)).filter(SleepFilter(0.01)).write(NullSink())
    pipeline.db_dir = tmp_path
    run_pipeline(pipeline, progress=False)

    m = pipeline.metrics.indices[0]
    assert [s.name for s in m.stages] == ["source", "sleepy", "alloc", "sleepy", "sink"]
    assert m.stages[3].wall_time_ns > m.stages[1].wall_time_ns
    assert list(m.stage_times()) == ["source", "sleepy", "alloc", "sleepy#2", "sink"]


def test_track_memory_sees_bytearray(tmp_path):
    pipeline = Pipeline(source=RangeSource(2), filters=[AllocFilter(20)], sink=NullSink(), db_dir=tmp_path)
    run_pipeline(pipeline, progress=False)

    for m in pipeline.metrics.indices:
        assert m.peak_memory_bytes >= 20 * 1024 * 1024
    assert pipeline.metrics.total_peak_memory_bytes >= 20 * 1024 * 1024
    assert not tracemalloc.is_tracing()


def test_track_memory_off_never_starts_tracemalloc(tmp_path, monkeypatch):
    calls = []
    monkeypatch.setattr(tracemalloc, "start", lambda *a: calls.append(a))
    pipeline = Pipeline(source=RangeSource(3), filters=[AllocFilter(1)], sink=NullSink(), db_dir=tmp_path, track_memory=False)
    run_pipeline(pipeline, progress=False)

    assert calls == []
    assert all(m.peak_memory_bytes is None for m in pipeline.metrics.indices)
    assert all(m.native_peak_rss_bytes is None for m in pipeline.metrics.indices)


class MmapFilter(Filter[int]):
    """Touches 64 MB outside Python's allocator: an anonymous mmap on index 1, ctypes malloc on index 2."""

    name = "native"

    def __call__(self, items):
        for item in items:
            size = 64 * 1024 * 1024
            if item == 1:
                block = mmap.mmap(-1, size)
                for offset in range(0, size, 4096):
                    block[offset] = 1
                block.close()
            elif item == 2:
                libc = ctypes.CDLL(None)
                libc.malloc.restype = ctypes.c_void_p
                address = libc.malloc(size)
                ctypes.memset(address, 1, size)
                libc.free(ctypes.c_void_p(address))
            yield item


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="native RSS is read from /proc on Linux")
def test_native_rss_sees_memory_tracemalloc_misses(tmp_path):
    pipeline = Pipeline(source=RangeSource(3), filters=[MmapFilter()], sink=NullSink(), db_dir=tmp_path)
    run_pipeline(pipeline, progress=False)

    by_index = {m.index: m for m in pipeline.metrics.indices}
    for index in (1, 2):
        assert by_index[index].native_peak_rss_bytes - by_index[0].native_peak_rss_bytes >= 50 * 1024 * 1024
        assert by_index[index].peak_memory_bytes < 5 * 1024 * 1024


def test_track_gpu_without_torch_records_none(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "torch", None)
    pipeline = Pipeline(source=RangeSource(2), sink=NullSink(), db_dir=tmp_path, track_gpu=True)
    run_pipeline(pipeline, progress=False)

    assert [m.gpu_memory_bytes for m in pipeline.metrics.indices] == [None, None]


def _fake_torch(available: bool) -> types.ModuleType:
    state = {"allocated": 1000, "peak": 1000}

    class Cuda:
        @staticmethod
        def is_available():
            return available

        @staticmethod
        def reset_peak_memory_stats():
            state["peak"] = state["allocated"]

        @staticmethod
        def memory_allocated():
            return state["allocated"]

        @staticmethod
        def max_memory_allocated():
            return state["peak"]

    torch = types.ModuleType("torch")
    torch.cuda = Cuda
    torch._state = state
    return torch


class GpuFilter(Filter[int]):
    name = "gpu"

    def __call__(self, items):
        torch = sys.modules["torch"]
        for item in items:
            torch._state["peak"] = torch._state["allocated"] + 5000 * (item + 1)
            yield item


def test_track_gpu_records_peak_minus_baseline(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "torch", _fake_torch(True))
    pipeline = Pipeline(source=RangeSource(3), filters=[GpuFilter()], sink=NullSink(), db_dir=tmp_path)
    pipeline.track_gpu = True
    run_pipeline(pipeline, progress=False)

    assert [m.gpu_memory_bytes for m in pipeline.metrics.indices] == [5000, 10000, 15000]


def test_track_gpu_without_cuda_records_none(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "torch", _fake_torch(False))
    pipeline = Pipeline(source=RangeSource(2), filters=[GpuFilter()], sink=NullSink(), db_dir=tmp_path, track_gpu=True)
    run_pipeline(pipeline, progress=False)

    assert [m.gpu_memory_bytes for m in pipeline.metrics.indices] == [None, None]


class ListSource(Source[int]):
    """A source whose __getitem__ returns a list (not a generator): its work happens in the call."""

    name = "list"

    def __init__(self, n: int = 2) -> None:
        self.n = n

    def __len__(self):
        return self.n

    def __getitem__(self, index):
        import time

        time.sleep(0.05)
        return [index]


class ListSink(Sink[int]):
    def __call__(self, items, index):
        return [str(index) for _ in items]


def test_non_generator_source_time_counted(tmp_path):
    pipeline = Pipeline(source=ListSource(), sink=ListSink(), db_dir=tmp_path, track_memory=False)
    run_pipeline(pipeline, progress=False)

    for m in pipeline.metrics.indices:
        assert m.stages[0].wall_time_ns / 1e9 == pytest.approx(0.05, abs=0.03)


def test_track_gpu_with_real_torch(tmp_path):
    torch = pytest.importorskip("torch")
    pipeline = Pipeline(source=RangeSource(2), sink=NullSink(), db_dir=tmp_path, track_gpu=True)
    run_pipeline(pipeline, progress=False)

    values = [m.gpu_memory_bytes for m in pipeline.metrics.indices]
    if torch.cuda.is_available():
        assert all(v is not None and v >= 0 for v in values)
    else:
        assert values == [None, None]
