"""Throughput of the parallel backends with metrics on and off, and of two concurrent store writers.

Run from the repository root::

    .venv/bin/python benchmarks/bench_backends.py            # everything, 20,000 indices
    .venv/bin/python benchmarks/bench_backends.py --n 5000 --repeat 1 --backends process_pool

Part 1 runs 20,000 trivial indices with 2 workers on each backend, with
metrics off and on (``track_memory=False``), for three pipelines. The empty
one has a source that yields one small dict and a sink that consumes it.
The second one's sink writes a small file per index, as real sinks do. The
third does 100 microseconds of CPU work per index before writing that file.
It prints indices per second (median of ``--repeat`` runs, off and on
alternating) and the on/off ratio.
Dask gets a ``LocalCluster`` of 2 single-threaded worker processes on
127.0.0.1 that is started before timing (its start-up is printed apart);
loky's reusable executor is warmed up the same way.

Part 2 has 2 processes record index records into one store as fast as they
can, first with group commit (what workers do), then committing every
record, and counts the 'database is locked' errors and warnings that
surface.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import platform
import sqlite3
import statistics
import sys
import tempfile
import time
import warnings
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from physicsnemo_curator import Pipeline, Sink, Source, run_pipeline
from physicsnemo_curator.core.record import IndexRecord
from physicsnemo_curator.core.store import StoreWriter


WORK_US = 100
KINDS = ("empty", "file", "file+work")


class TinySource(Source[dict]):
    """Index ``i`` yields ``{"index": i}``."""

    def __init__(self, n: int) -> None:
        self.n = n

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, index: int) -> Iterator[dict]:
        yield {"index": index}


class DrainSink(Sink[dict]):
    """Consumes the items and writes nothing."""

    def __call__(self, items: Iterable[dict], index: int) -> list[str]:
        for _ in items:
            pass
        return []


class SmallFileSink(Sink[dict]):
    """Writes one small text file per index, like a real sink; ``work_us`` of CPU work first."""

    def __init__(self, out_dir: str, work_us: int = 0) -> None:
        self.out_dir = out_dir
        self.work_us = work_us

    def __call__(self, items: Iterable[dict], index: int) -> list[str]:
        if self.work_us:
            until = time.perf_counter_ns() + self.work_us * 1000
            while time.perf_counter_ns() < until:
                pass
        path = os.path.join(self.out_dir, f"{index:06d}.txt")
        with open(path, "w", encoding="ascii") as handle:
            for item in items:
                handle.write(str(item["index"]))
        return [path]


def _pipeline(kind: str, n: int, root: Path, metrics: bool) -> Pipeline:
    sink: Sink[Any]
    if kind.startswith("file"):
        out = Path(tempfile.mkdtemp(dir=root, prefix="out-"))
        sink = SmallFileSink(str(out), WORK_US if kind == "file+work" else 0)
    else:
        sink = DrainSink()
    return Pipeline(
        source=TinySource(n),
        sink=sink,
        track_metrics=metrics,
        track_memory=False,
        db_file=Path(tempfile.mkdtemp(dir=root, prefix="db-")) / "run.db",
    )


def _rate(backend: str, kind: str, n: int, metrics: bool, root: Path, options: dict[str, Any]) -> float:
    pipeline = _pipeline(kind, n, root, metrics)
    start = time.perf_counter()
    results = run_pipeline(pipeline, n_jobs=2, backend=backend, progress=False, **options)
    elapsed = time.perf_counter() - start
    if len(results) != n or any(r is None for r in results):
        raise RuntimeError(f"{backend} {kind} metrics={metrics}: not every index completed")
    if metrics:
        with sqlite3.connect(f"file:{pipeline.db_path}?mode=ro", uri=True) as conn:
            recorded = conn.execute("SELECT count(*) FROM indices WHERE status='completed'").fetchone()[0]
        if recorded != n:
            raise RuntimeError(f"{backend} {kind}: {recorded} of {n} indices recorded")
    return n / elapsed


def bench_backends(backends: list[str], n: int, repeat: int, root: Path) -> list[dict[str, Any]]:
    rows = []
    for backend in backends:
        options: dict[str, Any] = {}
        cleanup: list[Any] = []
        if backend == "dask":
            import distributed

            start = time.perf_counter()
            cluster = distributed.LocalCluster(
                n_workers=2, threads_per_worker=1, processes=True, host="127.0.0.1", dashboard_address=None
            )
            client = distributed.Client(cluster, set_as_default=False)
            print(f"dask: LocalCluster start-up {time.perf_counter() - start:.2f} s (not counted)", flush=True)
            options["client"] = client
            cleanup = [client, cluster]
        if backend in ("loky", "dask"):
            _rate(backend, "empty", 100, False, root, options)
        try:
            for kind in KINDS:
                # Off and on alternate, so that a change in the machine's load hits both.
                samples: dict[bool, list[float]] = {False: [], True: []}
                for _ in range(repeat):
                    for metrics in (False, True):
                        samples[metrics].append(_rate(backend, kind, n, metrics, root, options))
                rates = {metrics: statistics.median(values) for metrics, values in samples.items()}
                row = {
                    "backend": backend,
                    "pipeline": kind,
                    "off": rates[False],
                    "on": rates[True],
                    "ratio": rates[True] / rates[False],
                }
                rows.append(row)
                print(
                    f"{backend:13s} {kind:9s} metrics off {row['off']:9.0f} idx/s   on {row['on']:9.0f} idx/s   "
                    f"ratio {row['ratio']:.2f}",
                    flush=True,
                )
        finally:
            for resource in cleanup:
                resource.close()
    return rows


def _writer(db: str, worker: int, n: int, per_record: bool, start: Any, out: Any) -> None:
    writer = StoreWriter(db)
    locked = 0
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        start.wait()
        t0 = time.perf_counter()
        for i in range(n):
            index = worker * n + i
            record = IndexRecord(
                index=index,
                run_id=1,
                worker_id=worker + 1,
                started_at=time.time(),
                wall_ns=1000,
                cpu_ns=900,
                stages=[(0, 400, 300), (1, 300, 300), (2, 300, 300)],
                outputs=[f"/data/out/{index:06d}.txt"],
            )
            try:
                writer.record(record)
                if per_record:
                    writer.flush()
            except sqlite3.OperationalError as exc:
                if "locked" in str(exc) or "busy" in str(exc):
                    locked += 1
                else:
                    raise
        while not writer.flush():
            time.sleep(0.001)
        t1 = time.perf_counter()
    writer.close()
    locked += sum(1 for w in caught if "locked" in str(w.message) or "busy" in str(w.message))
    out.put((t0, t1, locked, len(caught)))


def bench_writers(n: int, root: Path) -> list[dict[str, Any]]:
    ctx = multiprocessing.get_context("fork" if "fork" in multiprocessing.get_all_start_methods() else "spawn")
    rows = []
    for per_record in (False, True):
        db = str(Path(tempfile.mkdtemp(dir=root, prefix="writers-")) / "run.db")
        StoreWriter(db).close()
        start = ctx.Event()
        out = ctx.Queue()
        procs = [ctx.Process(target=_writer, args=(db, w, n, per_record, start, out)) for w in range(2)]
        for proc in procs:
            proc.start()
        time.sleep(0.5)
        start.set()
        reports = [out.get(timeout=600) for _ in procs]
        for proc in procs:
            proc.join()
        begin = min(r[0] for r in reports)
        end = max(r[1] for r in reports)
        with sqlite3.connect(db) as conn:
            stored = conn.execute("SELECT count(*) FROM indices").fetchone()[0]
        row = {
            "mode": "commit every record" if per_record else "group commit",
            "rate": 2 * n / (end - begin),
            "locked": sum(r[2] for r in reports),
            "warnings": sum(r[3] for r in reports),
            "stored": stored,
            "expected": 2 * n,
        }
        rows.append(row)
        print(
            f"2 writers, {row['mode']:20s}: {row['rate']:9.0f} idx/s in total, {row['stored']}/{row['expected']} "
            f"stored, {row['locked']} 'database is locked' errors, {row['warnings']} warnings",
            flush=True,
        )
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=20_000, help="indices per run (default 20000)")
    parser.add_argument("--repeat", type=int, default=3, help="runs per figure; the median is shown (default 3)")
    parser.add_argument("--backends", default="process_pool,loky,dask", help="comma-separated backends")
    parser.add_argument("--writer-n", type=int, default=20_000, help="records per writer in part 2 (default 20000)")
    parser.add_argument("--skip-writers", action="store_true", help="skip part 2")
    parser.add_argument("--json", default=None, help="also write the figures to this JSON file")
    parser.add_argument("--dir", default=None, help="where stores and output files go (default: the system temp dir)")
    args = parser.parse_args(argv)

    print(
        f"python {platform.python_version()}, {platform.platform()}, {os.cpu_count()} CPUs, "
        f"sqlite {sqlite3.sqlite_version}, load average {os.getloadavg()[0]:.1f}, files in {args.dir or tempfile.gettempdir()}",
        flush=True,
    )
    report: dict[str, Any] = {
        "machine": f"{platform.machine()}, {os.cpu_count()} CPUs, Python {platform.python_version()}, SQLite {sqlite3.sqlite_version}",
        "load_average_at_start": os.getloadavg()[0],
        "n": args.n,
        "repeat": args.repeat,
    }
    status = 0
    with tempfile.TemporaryDirectory(prefix="psnc-bench-", dir=args.dir) as tmp:
        root = Path(tmp)
        report["backends"] = bench_backends([b for b in args.backends.split(",") if b], args.n, args.repeat, root)
        if not args.skip_writers:
            report["writers"] = bench_writers(args.writer_n, root)
            if any(r["locked"] or r["stored"] != r["expected"] for r in report["writers"]):
                print("FAILED: a write was rejected or lost", file=sys.stderr)
                status = 1
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=2) + "\n")
    return status


if __name__ == "__main__":
    sys.exit(main())
