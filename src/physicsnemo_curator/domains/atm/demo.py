"""The ``psnc demo`` job: curate every structure shipped with ASE while the dashboard watches.

The pipeline reads the g2, s22 and dcdft collections bundled inside the
``ase`` package (255 real molecules and crystals), several times over with
small thermal displacements so that the run lasts long enough to watch,
records per-structure statistics (:class:`AtomicStatsFilter`), expands the
crystals to supercells and computes their radial distribution functions
(:class:`SupercellRDFFilter`), and writes every structure
(:class:`StructureSink`). ``psnc`` wires the subcommand to
:func:`add_arguments` and :func:`run`; :func:`build_pipeline` is the same
pipeline for notebooks and tests.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import socket
import sys
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import physicsnemo_curator.run
from physicsnemo_curator.run import list_backends
from physicsnemo_curator.core.pipeline import Pipeline
from physicsnemo_curator.domains.atm.filters.rdf import SupercellRDFFilter
from physicsnemo_curator.domains.atm.filters.stats import AtomicStatsFilter
from physicsnemo_curator.domains.atm.sinks.structure_writer import StructureSink
from physicsnemo_curator.domains.atm.sources.structures import COLLECTIONS, ASECollectionSource
from physicsnemo_curator.domains.mesh._tabular import shard_dir

DEFAULT_REPEAT = 3
"""Copies of the 255 structures in a full demo run (the copies are displaced by ``DEFAULT_RATTLE``)."""

DEFAULT_RATTLE = 0.02
DEFAULT_TARGET_ATOMS = 500
DEFAULT_R_MAX = 6.0
DEFAULT_BACKEND = "process_pool"
DEFAULT_N_JOBS = 2
DEFAULT_OUT = "./psnc-demo"
DEFAULT_PORT = 5006

STATS_FILE = "atomic_stats.parquet"


def build_pipeline(
    out: str | os.PathLike[str],
    *,
    names: Sequence[str] | None = None,
    subset: int | None = None,
    repeat: int = 1,
    rattle: float = DEFAULT_RATTLE,
    target_atoms: int = DEFAULT_TARGET_ATOMS,
    r_max: float = DEFAULT_R_MAX,
    output_format: str = "auto",
    db_file: str | os.PathLike[str] | None = None,
) -> Pipeline:
    """Build the demo pipeline writing under ``out``.

    It reads every structure of ASE's collections (or ``names``, or a
    ``subset`` spread over them), the collections interleaved so that costly
    crystals are spread over the run. Structures go to ``out/structures``, the merged statistics to
    ``out/artifacts/atomic_stats.parquet`` (worker shards beside it in
    ``atomic_stats.shards/``) and the run store to ``db_file`` (default: a
    new timestamped file in ``out``).
    """
    out = Path(out)
    if db_file is None:
        db_file = out / f"demo-{time.strftime('%Y%m%d-%H%M%S')}.db"
    return Pipeline(
        source=ASECollectionSource(names=names, subset=subset, interleave=True, repeat=repeat, rattle=rattle),
        filters=[
            AtomicStatsFilter(output=str(out / "artifacts" / STATS_FILE)),
            SupercellRDFFilter(target_atoms=target_atoms, r_max=r_max),
        ],
        sink=StructureSink(output_dir=str(out / "structures"), format=output_format),
        db_file=str(db_file),
    )


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the options of ``psnc demo`` to ``parser``."""
    parser.description = (
        "Curate the 255 molecules and crystals shipped with ASE (g2, s22, dcdft) in parallel: "
        "per-structure statistics to Parquet, supercells and radial distribution functions, "
        "extxyz (or Zarr) output, while the dashboard shows the run live on 127.0.0.1."
    )
    parser.add_argument("--backend", default=DEFAULT_BACKEND, help=f"execution backend (default: {DEFAULT_BACKEND}; also sequential, loky, dask)")
    parser.add_argument("--n-jobs", type=int, default=DEFAULT_N_JOBS, help=f"worker processes (default: {DEFAULT_N_JOBS}; -1 for one per CPU)")
    parser.add_argument("--out", default=DEFAULT_OUT, help=f"folder for the database, structures and artifacts (default: {DEFAULT_OUT})")
    parser.add_argument("--no-serve", action="store_true", help="run and print only; do not serve the dashboard")
    from physicsnemo_curator.cli import port_number

    parser.add_argument("--port", type=port_number, default=DEFAULT_PORT, help=f"dashboard port on 127.0.0.1 (default: {DEFAULT_PORT}; a free one if taken)")
    parser.add_argument("--subset", type=int, default=None, metavar="N", help="use N structures spread over the collections, once each (quick runs, tests)")
    parser.add_argument(
        "--structures",
        default=None,
        metavar="NAMES",
        help="comma-separated structures to use, once each, e.g. g2/H2O,s22/Water_dimer,dcdft/Si",
    )
    parser.add_argument(
        "--repeat", type=int, default=None, help=f"copies of the structures (default: {DEFAULT_REPEAT} for a full run, 1 with --subset or --structures)"
    )
    parser.add_argument("--target-atoms", type=int, default=DEFAULT_TARGET_ATOMS, help=f"atoms per crystal supercell (default: {DEFAULT_TARGET_ATOMS})")
    parser.add_argument(
        "--format", dest="output_format", choices=("auto", "extxyz", "zarr"), default="auto", help="structure files (default: auto, Zarr when installed)"
    )


def _check_run_options(backend: str, n_jobs: int) -> None:
    """Raise ValueError for an unknown backend or an invalid job count, before anything is created."""
    known = {info.name for info in list_backends()}
    if backend not in known:
        raise ValueError(f"unknown backend {backend!r}; choose one of: {', '.join(sorted(known))}")
    if n_jobs < 1 and n_jobs != -1:
        raise ValueError(f"--n-jobs {n_jobs} is invalid; use a positive int, or -1 for one job per CPU")


def run(args: argparse.Namespace) -> int:
    """Run the demo; return 0 when every structure completed, 1 when some failed, 2 for bad options."""
    out = Path(args.out)
    try:
        names = [n for n in args.structures.split(",") if n.strip()] if args.structures else None
        repeat = args.repeat
        if repeat is None:
            repeat = 1 if args.subset or names else DEFAULT_REPEAT
        _check_run_options(args.backend, args.n_jobs)
        pipeline = build_pipeline(out, names=names, subset=args.subset, repeat=repeat, target_atoms=args.target_atoms, output_format=args.output_format)
        total = len(pipeline)
    except (ValueError, ImportError) as exc:
        print(f"psnc demo: {exc}", file=sys.stderr)
        return 2
    out.mkdir(parents=True, exist_ok=True)
    db_path = Path(pipeline.db_path)

    kinds = ", ".join(COLLECTIONS)
    if args.backend == "sequential":
        jobs = 1
    elif args.n_jobs == -1:
        jobs = os.cpu_count() or 1
    else:
        jobs = args.n_jobs
    print(f"psnc demo: {total} structures ({len(pipeline.source.entries)} from ASE's {kinds} x {repeat}), backend {args.backend} with {jobs} job(s)")
    print(f"  database: {db_path}")
    with _dashboard(db_path, args.port, serve=not args.no_serve) as url:
        started = time.perf_counter()
        try:
            results = physicsnemo_curator.run.run_pipeline(pipeline, n_jobs=args.n_jobs, backend=args.backend, on_error="continue")
        except KeyboardInterrupt:
            print(f"\nInterrupted: {len(pipeline.completed_indices)} of {total} structures are recorded in {db_path}.", file=sys.stderr)
            return 130
        elapsed = time.perf_counter() - started
        merged = physicsnemo_curator.run.gather_pipeline(pipeline)
        failed = [i for i, paths in enumerate(results) if paths is None]

        print()
        print(f"Curated {total - len(failed)} of {total} structures in {elapsed:.1f} s ({args.backend}, {jobs} job(s)).")
        pipeline.metrics.to_console()
        _print_locations(pipeline, results, merged, failed)
        if url is not None and sys.stdin is not None and sys.stdin.isatty():
            print(f"\nThe dashboard is still at {url} ; press Ctrl-C to stop it.")
            with contextlib.suppress(KeyboardInterrupt):
                while True:
                    time.sleep(3600)
    return 1 if failed else 0


def _print_locations(pipeline: Pipeline, results: list[list[str] | None], merged: dict[str, list[str]], failed: list[int]) -> None:
    written = sum(len(paths) for paths in results if paths)
    stats = [p for paths in merged.values() for p in paths]
    print()
    print(f"Database:   {pipeline.db_path}")
    print(f"Outputs:    {pipeline.sink.output_dir}/ ({written} files)")
    for path in stats:
        print(f"Artifacts:  {path} (merged statistics, one row per structure)")
    print(f"            {shard_dir(pipeline.filters[0].output)}/ (per-worker shards, one row per structure as it completed)")
    if failed:
        print(f"Failed:     {len(failed)} structure(s), first {failed[:10]}; see pipeline.failed_indices or the dashboard's error log")
    print()
    print(f"Explore:    psnc dashboard {pipeline.db_path}")
    print(f"Metrics:    psnc metrics {pipeline.db_path} --csv metrics.csv")


@contextlib.contextmanager
def _dashboard(db_path: Path, port: int, serve: bool) -> Iterator[str | None]:
    """Serve the dashboard of ``db_path`` in a background thread for the duration of the block."""
    if not serve:
        yield None
        return
    try:
        from physicsnemo_curator.dashboard import DashboardApp

        app = DashboardApp(db_path)
    except ImportError as exc:
        print(
            f'  dashboard: not available ({exc}); install it with pip install "physicsnemo-curator[dashboard]". Running without it.',
            file=sys.stderr,
        )
        yield None
        return
    if not _port_free(port):
        taken, port = port, _free_port()
        print(f"  dashboard: port {taken} is taken, using {port}")
    server: Any = None
    try:
        server = app.serve(port=port, address="127.0.0.1", open_browser=False, threaded=True)
        url = f"http://127.0.0.1:{port}/"
        if _wait_until_listening(port, timeout=30):
            print(f"  dashboard: {url} (live while the run goes)")
        else:
            print(f"  dashboard: {url} did not answer within 30 s; the run goes on, try the page in a moment", file=sys.stderr)
        yield url
    finally:
        if server is not None:
            with contextlib.suppress(Exception):
                server.stop()


def _port_free(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        try:
            probe.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def _wait_until_listening(port: int, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=1):
            return True
        time.sleep(0.1)
    return False


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``psnc demo`` with ``argv`` (for ``python -m physicsnemo_curator.domains.atm.demo``)."""
    parser = argparse.ArgumentParser(prog="psnc demo")
    add_arguments(parser)
    return run(parser.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
