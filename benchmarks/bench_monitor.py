"""Cost of watching a run store: idle polls, incremental polls, and commit-to-browser latency.

Usage::

    .venv/bin/python benchmarks/bench_monitor.py --sizes 10000 1000000 --json benchmarks/results_monitor.json
    .venv/bin/python benchmarks/bench_monitor.py --sizes 10000 --browser   # adds the JupyterLab latency run

Poll figures: a store is filled with ``size`` indices (3 stages each) by
direct inserts, a :class:`~physicsnemo_curator.monitor.RunMonitor` loads it
once, then (a) an unchanged store is polled many times, and (b) 1,000 new
indices (with their stage rows) are committed by another connection and one
poll picks them up, repeated. Browser figure: a real JupyterLab shows
``%psnc_monitor --interval 0.5`` in Debian's Chromium while another process
commits one index every 1.3 s; a MutationObserver on the page stamps when each
new count appears, and the latency is that stamp minus the commit time.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import signal
import socket
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

from physicsnemo_curator.core.store import StoreWriter
from physicsnemo_curator.monitor import RunMonitor

STAGES = [("source", "source"), ("work", "filter"), ("sink", "sink")]
CHUNK = 100_000


def _fill(conn: sqlite3.Connection, start: int, count: int, run_id: int) -> None:
    conn.execute("BEGIN IMMEDIATE")
    for base in range(start, start + count, CHUNK):
        top = min(base + CHUNK, start + count)
        conn.executemany(
            "INSERT INTO indices (idx, status, run_id, worker_id, started_at, wall_ns, cpu_ns, peak_mem, rss_peak) "
            "VALUES (?, ?, ?, 1, ?, ?, ?, ?, ?)",
            (
                (i, "error" if i % 997 == 0 else "completed", run_id, 1.7e9 + i, 1_000_000 + (i % 5000) * 100, 900_000, 4096 + i % 777, 10**8)
                for i in range(base, top)
            ),
        )
        conn.executemany(
            "INSERT INTO stage_times (idx, position, wall_ns, cpu_ns) VALUES (?, ?, ?, ?)",
            ((i, p, 300_000 + p * 10_000 + i % 100, 200_000) for i in range(base, top) for p in range(3)),
        )
    conn.execute("COMMIT")


def _make_store(path: Path, size: int) -> tuple[StoreWriter, int]:
    writer = StoreWriter(path)
    writer.ensure_meta("b" * 64, json.dumps({"source": None, "filters": [], "sink": None}), "BenchSource", size + 100_000, STAGES)
    run_id = writer.start_run("sequential", 1, size + 100_000)
    writer.register_worker(run_id, "sequential")
    _fill(writer.conn, 0, size, run_id)
    return writer, run_id


def bench_polls(size: int, directory: Path, idle_polls: int, rounds: int) -> dict[str, Any]:
    path = directory / f"bench_{size}.db"
    started = time.perf_counter()
    writer, run_id = _make_store(path, size)
    build_s = time.perf_counter() - started

    monitor = RunMonitor(path)
    started = time.perf_counter()
    monitor.poll()
    first_load_s = time.perf_counter() - started
    assert monitor.table.n == size, (monitor.table.n, size)

    idle = []
    for _ in range(idle_polls):
        t0 = time.perf_counter_ns()
        result = monitor.poll()
        idle.append(time.perf_counter_ns() - t0)
        assert not result.changed

    incremental = []
    payloads = []
    next_index = size
    for _ in range(rounds):
        _fill(writer.conn, next_index, 1000, run_id)
        next_index += 1000
        t0 = time.perf_counter_ns()
        result = monitor.poll()
        incremental.append(time.perf_counter_ns() - t0)
        assert result.n_rows == 1000, result.n_rows
        assert not result.reload
        t0 = time.perf_counter_ns()
        monitor.progress()
        monitor.stage_bars()
        payloads.append(time.perf_counter_ns() - t0)
    monitor.close()
    writer.close()
    size_mb = path.stat().st_size / 1e6
    return {
        "indices": size,
        "store_mb": round(size_mb, 1),
        "build_s": round(build_s, 2),
        "first_load_s": round(first_load_s, 3),
        "idle_poll_us_median": round(statistics.median(idle) / 1e3, 2),
        "idle_poll_us_p95": round(sorted(idle)[int(0.95 * len(idle))] / 1e3, 2),
        "poll_1000_new_ms_median": round(statistics.median(incremental) / 1e6, 3),
        "poll_1000_new_ms_max": round(max(incremental) / 1e6, 3),
        "progress_and_stage_payload_ms_median": round(statistics.median(payloads) / 1e6, 3),
        "idle_polls": idle_polls,
        "rounds": rounds,
    }


# -- browser latency -------------------------------------------------------

WRITER = """
import json, sys, time
from physicsnemo_curator.core.record import IndexRecord
from physicsnemo_curator.core.store import StoreWriter

path, n, period, stamps = sys.argv[1], int(sys.argv[2]), float(sys.argv[3]), sys.argv[4]
writer = StoreWriter(path)
writer.ensure_meta("c" * 64, "{}", "LatencySource", n, [("source", "source"), ("sink", "sink")])
run_id = writer.start_run("sequential", 1, n)
out = []
time.sleep(2.0)
for i in range(n):
    writer.record(IndexRecord(index=i, run_id=run_id, started_at=time.time(), wall_ns=1000, stages=[(0, 500, 1), (1, 500, 1)]))
    assert writer.flush()
    out.append(time.time())
    time.sleep(period)
writer.finish_run(run_id, "finished")
writer.close()
json.dump(out, open(stamps, "w"))
"""


def bench_browser(directory: Path, n: int, period: float) -> dict[str, Any]:
    from playwright.sync_api import sync_playwright

    root = directory / "lab"
    root.mkdir()
    db = directory / "latency.db"
    nb = {
        "cells": [
            {"cell_type": "code", "execution_count": None, "id": "a", "metadata": {}, "outputs": [], "source": "%load_ext psnc"},
            {"cell_type": "code", "execution_count": None, "id": "b", "metadata": {}, "outputs": [],
             "source": f"%psnc_monitor {db} --interval 0.5"},
        ],
        "metadata": {"kernelspec": {"display_name": "Python 3", "language": "python", "name": "python3"}},
        "nbformat": 4, "nbformat_minor": 5,
    }
    (root / "latency.ipynb").write_text(json.dumps(nb))
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    token = "bench"
    env = {**os.environ, "HOME": str(directory / "home"), "JUPYTER_RUNTIME_DIR": str(directory / "rt"),
           "IPYTHONDIR": str(directory / "ipy"), "PSNC_CACHE_DIR": str(directory / "cache")}
    lab = subprocess.Popen(
        [str(Path(sys.executable).with_name("jupyter")), "lab", "--allow-root", "--no-browser", "--ip", "127.0.0.1",
         "--port", str(port), f"--ServerApp.token={token}", f"--ServerApp.root_dir={root}",
         f"--LabApp.workspaces_dir={directory / 'ws'}", f"--LabApp.user_settings_dir={directory / 'settings'}"],
        env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
    )
    stamps_file = directory / "commits.json"
    outside: list[str] = []
    try:
        deadline = time.monotonic() + 90
        while True:
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{port}/api/status?token={token}", timeout=2)
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.5)
        with sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path="/usr/bin/chromium")
            context = browser.new_context(viewport={"width": 1400, "height": 1000})

            def route(r):
                host = r.request.url.split("/")[2].split(":")[0] if "://" in r.request.url else ""
                if r.request.url.startswith(("data:", "blob:")) or host in ("127.0.0.1", "localhost"):
                    r.continue_()
                else:
                    outside.append(r.request.url)
                    r.abort()

            context.route("**/*", route)
            page = context.new_page()
            page.goto(f"http://127.0.0.1:{port}/lab/tree/latency.ipynb?token={token}&reset", timeout=90_000)
            page.wait_for_function(
                "() => [...document.querySelectorAll('.jp-StatusBar-Widget')].some(e => /\\| Idle/.test(e.textContent))",
                timeout=90_000,
            )
            page.click(".lm-MenuBar-itemLabel:text-is('Run')")
            page.click(".lm-Menu-itemLabel:text-is('Run All Cells')")
            page.wait_for_selector(".psnc-monitor .psnc-state:text-is('waiting for run')", timeout=60_000)
            page.evaluate(
                """() => {
                    window.__seen = {};
                    const note = () => {
                        const v = document.querySelector('.psnc-progress-completed-value');
                        if (v && !(v.textContent in window.__seen)) window.__seen[v.textContent] = Date.now();
                    };
                    new MutationObserver(note).observe(document.body, {subtree: true, childList: true, characterData: true});
                }"""
            )
            writer = subprocess.Popen([sys.executable, "-c", WRITER, str(db), str(n), str(period), str(stamps_file)], env=env)
            writer.wait(timeout=n * period + 60)
            time.sleep(2.0)
            seen = page.evaluate("() => window.__seen")
            browser.close()
    finally:
        try:
            os.killpg(lab.pid, signal.SIGTERM)
            lab.wait(timeout=20)
        except (ProcessLookupError, subprocess.TimeoutExpired):
            os.killpg(lab.pid, signal.SIGKILL)
    commits = json.loads(stamps_file.read_text())
    latencies = [seen[str(k + 1)] / 1000 - commits[k] for k in range(n) if str(k + 1) in seen]
    return {
        "indices_committed": n,
        "commit_period_s": period,
        "interval_s": 0.5,
        "counts_observed": len(latencies),
        "latency_s_median": round(statistics.median(latencies), 3) if latencies else None,
        "latency_s_max": round(max(latencies), 3) if latencies else None,
        "outside_requests": outside,
    }


DRAW = """
async ([source, meta, b64]) => {
  const raw = Uint8Array.from(atob(b64), (c) => c.charCodeAt(0));
  const state = { store_state: { state: "live" }, timeline_meta: meta, timeline: new DataView(raw.buffer), selected_index: null };
  const model = { get: (k) => state[k], set: (k, v) => { state[k] = v; }, save_changes() {}, on() {}, off() {} };
  const module = (await import(URL.createObjectURL(new Blob([source], { type: "text/javascript" })))).default;
  const host = document.createElement("div");
  host.style.width = "900px";
  document.body.append(host);
  const started = performance.now();
  await module.render({ model, el: host });
  const canvas = host.querySelector("canvas");
  while (canvas.dataset.drawnPoints !== String(meta.n)) await new Promise((r) => requestAnimationFrame(r));
  const first = performance.now() - started;
  const toggle = host.querySelector(".psnc-memory-toggle");
  const again = performance.now();
  toggle.click();
  await new Promise((r) => requestAnimationFrame(() => requestAnimationFrame(r)));
  return [first, performance.now() - again];
}
"""


def bench_draw(points: int) -> dict[str, Any]:
    """Time the timeline's first draw and a redraw with the memory overlay, in Chromium."""
    import base64

    import numpy as np
    from playwright.sync_api import sync_playwright

    from physicsnemo_curator.monitor import IndexBatch, IndexTable, esm, timeline_payload

    idx = np.arange(points, dtype=np.int64)
    minus = np.full(points, -1, dtype=np.int64)
    table = IndexTable(1)
    table.apply(IndexBatch(seq=idx + 1, idx=idx, status=(idx % 97 == 0).astype(np.uint8), run_id=minus + 2,
                           worker_id=minus, started_at=np.zeros(points), wall_ns=10**6 + (idx * 7919) % 10**6,
                           cpu_ns=minus, peak_mem=10**6 + idx, rss_peak=minus, gpu_mem=minus, errors={}))
    meta, buffer = timeline_payload(table)
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path="/usr/bin/chromium")
        page = browser.new_page(viewport={"width": 1000, "height": 800})
        page.set_content("<html><body></body></html>")
        first, redraw = page.evaluate(DRAW, [esm("timeline"), meta, base64.b64encode(buffer).decode()])
        browser.close()
    return {"points": points, "first_draw_ms": round(first, 1), "overlay_redraw_ms": round(redraw, 1)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", type=int, nargs="+", default=[10_000, 1_000_000])
    parser.add_argument("--idle-polls", type=int, default=2000)
    parser.add_argument("--rounds", type=int, default=20)
    parser.add_argument("--browser", action="store_true", help="also measure commit-to-browser latency in JupyterLab")
    parser.add_argument("--browser-indices", type=int, default=20)
    parser.add_argument("--dir", type=Path, default=None, help="work directory (default: a temporary one, removed after)")
    parser.add_argument("--json", type=Path, default=None, help="also write the results here")
    args = parser.parse_args()

    directory = Path(args.dir or tempfile.mkdtemp(prefix="psnc-bench-monitor-"))
    directory.mkdir(parents=True, exist_ok=True)
    results: dict[str, Any] = {
        "machine": {"platform": platform.platform(), "cpus": os.cpu_count(), "python": platform.python_version(),
                    "sqlite": sqlite3.sqlite_version},
        "polls": [],
    }
    try:
        for size in args.sizes:
            results["polls"].append(bench_polls(size, directory, args.idle_polls, args.rounds))
            print(json.dumps(results["polls"][-1]), file=sys.stderr)
        if args.browser:
            results["browser"] = bench_browser(directory, args.browser_indices, 1.3)
            results["draw"] = [bench_draw(n) for n in (10_000, 100_000)]
    finally:
        if args.dir is None:
            shutil.rmtree(directory, ignore_errors=True)
    text = json.dumps(results, indent=2)
    print(text)
    if args.json:
        args.json.write_text(text + "\n")


if __name__ == "__main__":
    main()
