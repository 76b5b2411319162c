"""Dashboard benchmark: open time and server memory on large stores, and the cost of a refresh.

Usage::

    .venv/bin/python benchmarks/bench_dashboard.py [--sizes 10000 100000 1000000] [--store-dir DIR]

For each size, a synthetic store is written straight into the schema (kept in
``--store-dir`` for reuse), ``psnc dashboard`` is started on a free 127.0.0.1
port, and Debian's Chromium (through Playwright) opens the page and visits
the three tabs. Reported per size:

- ``ready_s``: from starting the server process to the first HTTP answer
  (imports and the first read of the store);
- ``tabs_s``: from opening the page to all three tabs having content
  (Overview counts, Pipeline rows, Performance timeline drawn and slowest table);
- ``total_s``: the sum, what a user waits after typing the command;
- ``rss_mb``: the server's peak resident memory (``VmHWM``) after the visit.

Then, in this process, the refresh cost: a copy of the store of ``n`` indices
gets 1,000 new ones twelve times in a row, and each refresh (poll, then redraw
of the three tabs) is timed, for the smallest and the largest size. The
maximum poll shows the one refresh where the in-memory columns double their
capacity (amortized, it is a constant per row).
"""

from __future__ import annotations

import argparse
import os
import re
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

BIN = Path(sys.executable).parent


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _store(directory: Path, n: int) -> Path:
    from physicsnemo_curator.dashboard._synthetic import write_store

    path = directory / f"bench_{n}.db"
    if not path.exists():
        started = time.perf_counter()
        write_store(path, n, error_every=997, running=False)
        print(f"  wrote {path} in {time.perf_counter() - started:.1f} s", flush=True)
    return path


def _peak_rss_mb(pid: int) -> float:
    text = Path(f"/proc/{pid}/status").read_text()
    return int(re.search(r"VmHWM:\s+(\d+) kB", text).group(1)) / 1024


def open_in_chromium(db: Path) -> dict[str, float]:
    from playwright.sync_api import expect, sync_playwright

    port = _free_port()
    started = time.perf_counter()
    server = subprocess.Popen(
        [str(BIN / "psnc"), "dashboard", str(db), "--port", str(port), "--no-browser"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
    )
    try:
        url = f"http://127.0.0.1:{port}/"
        while True:
            try:
                with urllib.request.urlopen(url, timeout=60):
                    break
            except OSError:
                if server.poll() is not None:
                    raise RuntimeError(f"psnc dashboard exited with {server.returncode}") from None
                time.sleep(0.05)
        ready = time.perf_counter() - started
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path="/usr/bin/chromium")
            page = browser.new_page(viewport={"width": 1400, "height": 1000})
            opened = time.perf_counter()
            page.goto(url)
            expect(page.locator('[data-testid="completed"]').first).to_have_text(re.compile(r"^\d+$"), timeout=120_000)
            page.get_by_role("tab", name="Pipeline").click()
            page.locator('[data-testid="query-rows"]').first.wait_for(timeout=120_000)
            page.get_by_role("tab", name="Performance").click()
            expect(page.locator("canvas.psnc-timeline-canvas")).to_have_attribute(
                "data-drawn-points", re.compile(r"^[1-9]\d*$"), timeout=120_000
            )
            page.locator('[data-testid="slowest"]').first.wait_for(timeout=120_000)
            tabs = time.perf_counter() - opened
            drawn = int(page.locator("canvas.psnc-timeline-canvas").get_attribute("data-drawn-points"))
            browser.close()
        return {"ready_s": ready, "tabs_s": tabs, "total_s": ready + tabs, "rss_mb": _peak_rss_mb(server.pid), "points": drawn}
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        server.wait(timeout=30)


def _remove_store(path: Path) -> None:
    # A leftover -wal file of an earlier copy would be replayed into the new one and corrupt it.
    for suffix in ("", "-wal", "-shm"):
        Path(f"{path}{suffix}").unlink(missing_ok=True)


def refresh_cost(directory: Path, n: int, new: int = 1000, rounds: int = 12) -> dict[str, float]:
    """Time successive refreshes (poll + redraw) that each find ``new`` indices, on a copy of a store of ``n``."""
    import shutil
    import statistics

    from physicsnemo_curator.dashboard import DashboardApp
    from physicsnemo_curator.dashboard._synthetic import write_store

    copy = directory / f"refresh_{n}.db"
    _remove_store(copy)
    shutil.copy(_store(directory, n), copy)
    app = DashboardApp(copy)
    session = app.session()
    polls, redraws, idle = [], [], []
    for round_ in range(rounds):
        write_store(copy, new, start=n + round_ * new, error_every=997, seed=round_)
        t0 = time.perf_counter()
        app.data.poll(force=True)
        t1 = time.perf_counter()
        session.refresh()
        t2 = time.perf_counter()
        session.refresh(force=True)
        t3 = time.perf_counter()
        assert app.data.last_rows == new
        polls.append(t1 - t0)
        redraws.append(t2 - t1)
        idle.append(t3 - t2)
    app.data.close()
    _remove_store(copy)
    return {
        "poll_ms": 1000 * statistics.median(polls),
        "poll_max_ms": 1000 * max(polls),
        "redraw_ms": 1000 * statistics.median(redraws),
        "idle_refresh_ms": 1000 * statistics.median(idle),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000, 1_000_000])
    parser.add_argument("--store-dir", type=Path, default=Path(tempfile.gettempdir()) / "psnc-bench")
    parser.add_argument("--skip-browser", action="store_true")
    args = parser.parse_args()
    args.store_dir.mkdir(parents=True, exist_ok=True)

    if not args.skip_browser:
        print("| indices | ready (s) | tabs (s) | total (s) | server peak RSS (MB) | timeline points |")
        print("|---:|---:|---:|---:|---:|---:|")
        for n in args.sizes:
            result = open_in_chromium(_store(args.store_dir, n))
            print(
                f"| {n:,} | {result['ready_s']:.2f} | {result['tabs_s']:.2f} | {result['total_s']:.2f} | "
                f"{result['rss_mb']:.0f} | {result['points']:,} |",
                flush=True,
            )
    print()
    print("| indices before | new per refresh | poll, median (ms) | poll, max (ms) | redraw, median (ms) | refresh with no change (ms) |")
    print("|---:|---:|---:|---:|---:|---:|")
    for n in sorted({min(args.sizes), max(args.sizes)}):
        result = refresh_cost(args.store_dir, n)
        print(
            f"| {n:,} | 1,000 | {result['poll_ms']:.1f} | {result['poll_max_ms']:.1f} | {result['redraw_ms']:.1f} | "
            f"{result['idle_refresh_ms']:.1f} |",
            flush=True,
        )


if __name__ == "__main__":
    main()
