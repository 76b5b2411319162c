"""The ``psnc`` command: open the dashboard, list runs, export metrics, run the demo.

Store and resolver errors become a one-line message on stderr and exit code
2; no traceback is shown for them.
"""

from __future__ import annotations

import argparse
import datetime as _dt
import errno
import logging
import sys
from collections.abc import Sequence
from typing import Any

from physicsnemo_curator.core.errors import CuratorError, IndexQueryError, ResolveError, StoreError

logger = logging.getLogger(__name__)

EXIT_USAGE = 2
EXIT_FAILURE = 1


def _size(n: int) -> str:
    value = float(n)
    for unit in ("B", "KB", "MB", "GB"):
        if value < 1024 or unit == "GB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{n} B"


def _cmd_dashboard(args: argparse.Namespace) -> int:
    from physicsnemo_curator.dashboard._cli import launch_dashboard, resolve_db_path

    path = resolve_db_path(args.target)
    print(f"Serving the dashboard of {path} at http://{args.host}:{args.port}/ (Ctrl+C to stop)", flush=True)
    try:
        launch_dashboard(path, port=args.port, host=args.host, open_browser=not args.no_browser)
    except KeyboardInterrupt:
        return 0
    except OSError as exc:
        if exc.errno == errno.EADDRINUSE:
            print(
                f"psnc: error: port {args.port} on {args.host} is already in use. "
                f"Pass --port with another number, or --port 0 for a free one.",
                file=sys.stderr,
            )
            return EXIT_FAILURE
        raise
    return 0


def _cmd_runs(args: argparse.Namespace) -> int:
    from physicsnemo_curator.core.paths import cache_dir
    from physicsnemo_curator.dashboard._cli import list_runs

    directory = args.dir or cache_dir()
    runs = list_runs(directory)
    if not runs:
        print(f"No run stores in {directory}.")
        return 0
    rows = [("HASH", "SOURCE", "COMPLETED", "FAILED", "TOTAL", "STARTED (UTC)", "SIZE", "FILE")]
    for run in runs:
        started = "-"
        if run["started_at"]:
            started = _dt.datetime.fromtimestamp(run["started_at"], _dt.timezone.utc).strftime("%Y-%m-%d %H:%M:%S")
        rows.append(
            (
                run["hash"],
                run["source"] or "-",
                "-" if run["completed"] is None else str(run["completed"]),
                "-" if run["failed"] is None else str(run["failed"]),
                "-" if run["total"] is None else str(run["total"]),
                started,
                _size(run["size"]),
                run["path"].name + (f"  ({run['error']})" if run["error"] else ""),
            )
        )
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]) - 1)]
    for row in rows:
        print("  ".join(cell.ljust(width) for cell, width in zip(row, widths)) + "  " + row[-1])
    print(f"\n{len(runs)} run store(s) in {directory}")
    return 0


def _cmd_metrics(args: argparse.Namespace) -> int:
    from physicsnemo_curator.core.pipeline_store import PipelineStore
    from physicsnemo_curator.dashboard._cli import resolve_db_path

    path = resolve_db_path(args.db)
    with PipelineStore.from_db(path) as store:
        metrics = store.metrics()
    if args.json:
        written = metrics.to_json(args.json)
        print(f"Wrote metrics of {len(metrics)} indices to {written}")
    elif args.csv:
        written = metrics.to_csv(args.csv)
        print(f"Wrote metrics of {len(metrics)} indices to {written}")
    else:
        metrics.to_console(sys.stdout)
    return 0


def _cmd_demo(args: argparse.Namespace) -> int:
    return int(args.demo_run(args) or 0)


def _add_demo(subparsers: Any, load: bool) -> None:
    help_text = "Run the atomistic demo pipeline (needs the 'atm' extra)."
    parser = subparsers.add_parser("demo", help=help_text, description=help_text)
    if not load:
        # Importing the demo pulls in the atm extra, so it happens only for 'psnc demo'.
        parser.add_argument("demo_args", nargs=argparse.REMAINDER, help=argparse.SUPPRESS)
        return
    try:
        from physicsnemo_curator.domains.atm import demo
    except ImportError as exc:
        reason = str(exc)

        def unavailable(args: argparse.Namespace) -> int:
            raise ImportError(
                f"The demo needs the 'atm' extra ({reason}). Install it with: pip install \"physicsnemo-curator[atm]\""
            )

        parser.set_defaults(func=unavailable)
        return
    demo.add_arguments(parser)
    parser.set_defaults(func=_cmd_demo, demo_run=demo.run)


def build_parser(load_demo: bool = False) -> argparse.ArgumentParser:
    """Return the ``psnc`` argument parser; ``load_demo`` imports the demo's own options."""
    parser = argparse.ArgumentParser(
        prog="psnc",
        description="physicsnemo-curator: inspect pipeline runs recorded in run stores.",
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="Log what the command does.")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")

    text = "Serve the Panel dashboard of a run store."
    dashboard = subparsers.add_parser(
        "dashboard",
        help=text,
        description=text + " The target is a .db file, a pipeline file (.yaml, .yml, .json) "
        "or a hash prefix of a store in the cache directory.",
    )
    dashboard.add_argument("target", metavar="DB|PIPELINE_FILE|HASH_PREFIX", help="The run store to show.")
    dashboard.add_argument("--port", type=port_number, default=5006, help="Port to listen on (default 5006; 0 picks a free one).")
    dashboard.add_argument("--host", default="127.0.0.1", help="Address to bind (default 127.0.0.1: this machine only).")
    dashboard.add_argument("--no-browser", action="store_true", help="Do not open a web browser.")
    dashboard.set_defaults(func=_cmd_dashboard)

    text = "List the run stores in the cache directory: hash, source, counts, start time, size."
    runs = subparsers.add_parser("runs", help=text, description=text)
    runs.add_argument("--dir", default=None, help="Directory to list instead of the cache directory.")
    runs.set_defaults(func=_cmd_runs)

    text = "Print or export the per-index metrics of a run store."
    metrics = subparsers.add_parser("metrics", help=text, description=text)
    metrics.add_argument("db", metavar="DB|PIPELINE_FILE|HASH_PREFIX", help="The run store to read.")
    target = metrics.add_mutually_exclusive_group()
    target.add_argument("--json", metavar="PATH", default=None, help="Write the metrics as JSON to PATH.")
    target.add_argument("--csv", metavar="PATH", default=None, help="Write one CSV row per index to PATH.")
    metrics.set_defaults(func=_cmd_metrics)

    _add_demo(subparsers, load_demo)
    return parser


def port_number(text: str) -> int:
    """Parse a TCP port for argparse: an int from 0 to 65535."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"invalid port {text!r}: give an int from 0 to 65535") from None
    if not 0 <= value <= 65535:
        raise argparse.ArgumentTypeError(f"invalid port {value}: give an int from 0 to 65535")
    return value


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``psnc`` command with ``argv`` (default: the process arguments); return the exit code."""
    argv = list(sys.argv[1:] if argv is None else argv)
    words = [a for a in argv if not a.startswith("-")]
    parser = build_parser(load_demo=bool(words) and words[0] == "demo")
    args = parser.parse_args(argv)
    if args.verbose:
        logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    if getattr(args, "func", None) is None:
        parser.print_help()
        return EXIT_USAGE
    try:
        return int(args.func(args) or 0)
    except (ResolveError, StoreError, IndexQueryError) as exc:
        print(f"psnc: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except FileNotFoundError as exc:
        print(f"psnc: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except CuratorError as exc:
        print(f"psnc: error: {exc}", file=sys.stderr)
        return EXIT_FAILURE
    except ImportError as exc:
        print(f"psnc: error: {exc}", file=sys.stderr)
        return EXIT_FAILURE
    except (OSError, ValueError, TypeError, OverflowError) as exc:
        # Bad paths, hosts and option values end in one line, not a traceback.
        print(f"psnc: error: {type(exc).__name__}: {exc}", file=sys.stderr)
        return EXIT_FAILURE


if __name__ == "__main__":
    sys.exit(main())
