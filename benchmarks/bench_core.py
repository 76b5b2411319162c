"""Overhead of profiling and recording, store size, write cost at scale, import time.

Run from the repository root:

    .venv/bin/python benchmarks/bench_core.py [--n 20000] [--json results.json]

Every figure is a ratio or a difference measured within one run on one machine.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from physicsnemo_curator import Filter, Pipeline, Sink, Source, run_pipeline
from physicsnemo_curator.core.record import IndexRecord
from physicsnemo_curator.core.store import StoreWriter, close_writers


class CountSource(Source[int]):
    name = "count"

    def __init__(self, n: int) -> None:
        self.n = n

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, index: int):
        yield index


class AddOne(Filter[int]):
    name = "add_one"

    def __call__(self, items):
        for item in items:
            yield item + 1


class PathSink(Sink[int]):
    """Returns one short path per index and writes nothing: the cheapest possible sink."""

    name = "paths"

    def __call__(self, items, index):
        for _ in items:
            pass
        return [f"out/{index:06d}.npz"]


class FileSink(Sink[int]):
    """Writes one 64-byte file per index, as real sinks write one output each."""

    name = "files"

    def __init__(self, output_dir: str) -> None:
        self.output_dir = output_dir

    def __call__(self, items, index):
        path = os.path.join(self.output_dir, f"{index:06d}.bin")
        for item in items:
            with open(path, "wb") as handle:
                handle.write(item.to_bytes(8, "little") * 8)
        return [path]


def _pipeline(n: int, sink: Sink, workdir: str, metrics: bool, memory: bool = False) -> Pipeline:
    return Pipeline(
        source=CountSource(n),
        filters=[AddOne()],
        sink=sink,
        track_metrics=metrics,
        track_memory=memory,
        db_dir=workdir,
    )


def _time_run(pipeline: Pipeline, **kwargs) -> float:
    start = time.perf_counter()
    run_pipeline(pipeline, progress=False, **kwargs)
    return time.perf_counter() - start


def bench_overhead(n: int, workdir: str) -> dict:
    """Per-index overhead of metrics, sequential, best of three runs each."""
    off = min(_time_run(_pipeline(n, PathSink(), workdir, False)) for _ in range(3))
    on = min(_time_run(_pipeline(n, PathSink(), workdir, True)) for _ in range(3))
    memory = min(_time_run(_pipeline(n, PathSink(), workdir, True, memory=True)) for _ in range(2))
    return {
        "indices": n,
        "metrics_off_s": off,
        "metrics_on_memory_off_s": on,
        "metrics_and_memory_on_s": memory,
        "overhead_us_per_index": (on - off) / n * 1e6,
        "overhead_with_memory_us_per_index": (memory - off) / n * 1e6,
    }


def bench_store_size(n: int, workdir: str) -> dict:
    pipeline = _pipeline(n, PathSink(), workdir, True)
    run_pipeline(pipeline, progress=False)
    close_writers()
    size = pipeline.db_path.stat().st_size
    conn = sqlite3.connect(pipeline.db_path)
    conn.execute("VACUUM")
    conn.close()
    return {"indices": n, "bytes": size, "bytes_per_index": size / n, "bytes_per_index_after_vacuum": pipeline.db_path.stat().st_size / n}


def _fill(path: Path, n: int) -> None:
    writer = StoreWriter(path)
    batch = []
    for index in range(n):
        batch.append(IndexRecord(index=index, wall_ns=1000, cpu_ns=900, started_at=1.0, stages=[(0, 1, 1), (1, 2, 2), (2, 3, 3)], outputs=[f"out/{index:06d}.npz"]))
        if len(batch) == 5000:
            writer.pending.extend(batch)
            writer.flush()
            batch = []
    writer.pending.extend(batch)
    writer.flush()
    writer.close()


def _write_cost(path: Path, start: int, count: int) -> float:
    """Microseconds per index for ``count`` records committed one transaction each."""
    writer = StoreWriter(path)
    begin = time.perf_counter()
    for index in range(start, start + count):
        writer.record(IndexRecord(index=index, wall_ns=1000, cpu_ns=900, started_at=1.0, stages=[(0, 1, 1), (1, 2, 2), (2, 3, 3)], outputs=[f"out/{index:06d}.npz"]))
        writer.flush()
    elapsed = time.perf_counter() - begin
    writer.close()
    return elapsed / count * 1e6


def bench_write_scaling(workdir: str, big: int = 100_000, count: int = 2000) -> dict:
    empty = Path(workdir, "empty.db")
    full = Path(workdir, "full.db")
    StoreWriter(empty).close()
    _fill(full, big)
    empty_us = statistics.median(_write_cost(empty, 10_000_000 + k * count, count) for k in range(3))
    full_us = statistics.median(_write_cost(full, 10_000_000 + k * count, count) for k in range(3))
    return {"store_indices": big, "us_per_index_empty": empty_us, "us_per_index_at_100k": full_us, "ratio": full_us / empty_us}


def bench_pool(n: int, workdir: str) -> dict:
    """Throughput of 2 process_pool workers with metrics on (memory off) and off.

    Runs alternate (off, on, off, on, ...) after one warm-up run, so both see
    the same file system state; the best of three is kept.
    """
    out = {}
    for label, sink_factory in (("path_sink", lambda: PathSink()), ("file_sink", lambda: FileSink(workdir))):
        _time_run(_pipeline(n, sink_factory(), workdir, False), n_jobs=2, backend="process_pool")
        offs, ons = [], []
        for _ in range(3):
            offs.append(_time_run(_pipeline(n, sink_factory(), workdir, False), n_jobs=2, backend="process_pool"))
            ons.append(_time_run(_pipeline(n, sink_factory(), workdir, True), n_jobs=2, backend="process_pool"))
        off, on = min(offs), min(ons)
        out[label] = {"indices_per_s_off": n / off, "indices_per_s_on": n / on, "ratio": off / on}
    return out


def bench_import() -> dict:
    code = "import time; t = time.perf_counter(); import physicsnemo_curator; print(time.perf_counter() - t)"
    samples = [float(subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout) for _ in range(7)]
    return {"median_ms": statistics.median(samples) * 1000, "min_ms": min(samples) * 1000}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=20_000, help="indices per run")
    parser.add_argument("--json", help="also write the results to this JSON file")
    parser.add_argument("--dir", help="scratch directory for stores and outputs (default: /dev/shm when present)")
    args = parser.parse_args()

    # /dev/shm keeps the page cache's writeback of the sink's files out of the
    # figures: on a VM disk it made repeated identical runs differ by 3x.
    scratch = args.dir or ("/dev/shm" if os.path.isdir("/dev/shm") else None)
    with tempfile.TemporaryDirectory(dir=scratch) as workdir:
        results = {
            "machine": f"{platform.machine()}, {os.cpu_count()} CPUs, Python {platform.python_version()}, SQLite {sqlite3.sqlite_version}",
            "scratch": workdir,
            "overhead": bench_overhead(args.n, workdir),
            "store_size": bench_store_size(args.n, workdir),
            "write_scaling": bench_write_scaling(workdir),
            "process_pool_2_workers": bench_pool(args.n, workdir),
            "import": bench_import(),
        }
    print(json.dumps(results, indent=2))
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
