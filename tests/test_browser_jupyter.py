"""A real JupyterLab in Debian's Chromium: %psnc_monitor follows a pipeline run by another process."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import textwrap
import time
import urllib.request
from pathlib import Path
from urllib.parse import urlparse

import pytest

CHROMIUM = "/usr/bin/chromium"
TESTS_DIR = Path(__file__).resolve().parent

pytestmark = [
    pytest.mark.browser,
    pytest.mark.slow,
    pytest.mark.skipif(not Path(CHROMIUM).exists(), reason="Debian's Chromium is not installed at /usr/bin/chromium"),
]

playwright_api = pytest.importorskip("playwright.sync_api")
pytest.importorskip("jupyterlab")

WRITER = """
import sys, time
sys.path.insert(0, {tests!r})
from pipeline_parts import RangeSource, SleepFilter, TextSink
from physicsnemo_curator import Pipeline, run_pipeline

pipeline = Pipeline(
    source=RangeSource({n}, sleep={sleep}, fail_on=[7]),
    filters=[SleepFilter()],
    sink=TextSink({out!r}),
    db_file={db!r},
)
run_pipeline(pipeline, on_error="continue", progress=False)
"""


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _notebook(path: Path, cells: list[str]) -> None:
    nb = {
        "cells": [
            {"cell_type": "code", "execution_count": None, "id": f"c{i}", "metadata": {}, "outputs": [], "source": src}
            for i, src in enumerate(cells)
        ],
        "metadata": {"kernelspec": {"display_name": "Python 3", "language": "python", "name": "python3"}},
        "nbformat": 4,
        "nbformat_minor": 5,
    }
    path.write_text(json.dumps(nb))


def _wait_for_server(url: str, process: subprocess.Popen, timeout: float = 90.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"JupyterLab exited early with code {process.returncode}")
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                if response.status == 200:
                    return
        except OSError:
            time.sleep(0.5)
    raise TimeoutError(f"JupyterLab did not answer at {url} within {timeout} s")


@pytest.fixture
def jupyter_server(tmp_path):
    root = tmp_path / "root"
    root.mkdir()
    port = _free_port()
    token = "psnc-test-token"
    home = tmp_path / "home"
    env = {
        **os.environ,
        "HOME": str(home),
        "JUPYTER_RUNTIME_DIR": str(tmp_path / "runtime"),
        "JUPYTER_DATA_DIR": str(tmp_path / "data"),
        "IPYTHONDIR": str(tmp_path / "ipython"),
        "PSNC_CACHE_DIR": str(tmp_path / "cache"),
    }
    jupyter = Path(sys.executable).with_name("jupyter")
    log = open(tmp_path / "jupyter.log", "w")  # noqa: SIM115 - closed in the teardown below
    process = subprocess.Popen(
        [
            str(jupyter), "lab", "--allow-root", "--no-browser", "--ip", "127.0.0.1", "--port", str(port),
            f"--ServerApp.token={token}", f"--ServerApp.root_dir={root}",
            f"--LabApp.workspaces_dir={tmp_path / 'workspaces'}", f"--LabApp.user_settings_dir={tmp_path / 'settings'}",
        ],
        cwd=root,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        _wait_for_server(f"http://127.0.0.1:{port}/api/status?token={token}", process)
        yield {"root": root, "port": port, "token": token, "env": env}
    finally:
        try:
            os.killpg(process.pid, signal.SIGTERM)
            process.wait(timeout=20)
        except (ProcessLookupError, subprocess.TimeoutExpired):
            try:
                os.killpg(process.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            process.wait(timeout=10)
        log.close()


def test_psnc_monitor_follows_a_live_run(jupyter_server, tmp_path):
    root = jupyter_server["root"]
    db = tmp_path / "live" / "pipeline.db"
    notes = tmp_path / "notes.db"
    notes.write_text("not a database")
    _notebook(root / "monitor.ipynb", ["%load_ext psnc", f"%psnc_monitor {db} --interval 0.5", f"%psnc_monitor {notes}"])

    outside: list[str] = []
    writer: subprocess.Popen | None = None
    with playwright_api.sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM)
        try:
            context = browser.new_context(viewport={"width": 1400, "height": 1100})

            def route(r):
                url = r.request.url
                host = urlparse(url).hostname
                if url.startswith(("data:", "blob:")) or host in ("127.0.0.1", "localhost"):
                    r.continue_()
                else:
                    outside.append(url)
                    r.abort()

            context.route("**/*", route)
            page = context.new_page()
            port, token = jupyter_server["port"], jupyter_server["token"]
            page.goto(f"http://127.0.0.1:{port}/lab/tree/monitor.ipynb?token={token}&reset", timeout=90_000)
            page.wait_for_selector(".jp-Notebook", timeout=90_000)
            page.wait_for_function(
                "() => [...document.querySelectorAll('.jp-StatusBar-Widget')].some(e => /\\| Idle/.test(e.textContent))",
                timeout=90_000,
            )
            page.click(".lm-MenuBar-itemLabel:text-is('Run')")
            page.click(".lm-Menu-itemLabel:text-is('Run All Cells')")

            # The database does not exist yet: the monitor waits for it.
            page.wait_for_selector(".psnc-monitor .psnc-state:text-is('waiting for run')", timeout=60_000)
            # A file that is not a run store gets a message in its widget, not a traceback.
            page.wait_for_selector(".psnc-monitor .psnc-state:text-is('not a run store')", timeout=60_000)
            banner = page.locator(".psnc-monitor-banner.invalid")
            assert "is not an SQLite database" in banner.text_content()
            assert banner.is_visible()
            assert page.locator(".jp-OutputArea-output[data-mime-type='application/vnd.jupyter.stderr']").count() == 0

            writer = subprocess.Popen(
                [sys.executable, "-c", WRITER.format(tests=str(TESTS_DIR), n=40, sleep=0.15, out=str(tmp_path / "out"), db=str(db))],
                env=jupyter_server["env"],
            )
            page.wait_for_selector(".psnc-monitor .psnc-state:text-is('live')", timeout=60_000)

            seen: list[int] = []
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline:
                text = page.locator(".psnc-progress-completed-value").first.text_content() or "0"
                value = int(text) if text.isdigit() else 0
                if not seen or value != seen[-1]:
                    seen.append(value)
                if len(seen) >= 4 and writer.poll() is None:
                    break
                if writer.poll() is not None and value >= 39:
                    break
                time.sleep(0.25)
            assert len(seen) >= 3, f"the completed count did not move on the page: {seen}"
            assert seen == sorted(seen), seen
            assert seen[-1] > seen[0], seen

            writer.wait(timeout=60)
            page.wait_for_function(
                "() => document.querySelector('.psnc-progress-completed-value')?.textContent === '39'", timeout=30_000
            )
            page.wait_for_selector(".psnc-monitor .psnc-state:text-is('finished')", timeout=30_000)
            assert page.locator(".psnc-progress-failed-value").first.text_content() == "1"

            drawn = page.wait_for_function(
                "() => Number(document.querySelector('.psnc-timeline-canvas')?.dataset.drawnPoints || 0) >= 40 && "
                "Number(document.querySelector('.psnc-timeline-canvas').dataset.drawnPoints)",
                timeout=30_000,
            ).json_value()
            assert drawn == 40
            green = page.evaluate(
                """() => {
                    const c = document.querySelector('.psnc-timeline-canvas');
                    const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
                    let n = 0;
                    for (let i = 0; i < d.length; i += 4) if (d[i] === 0x76 && d[i + 1] === 0xb9 && d[i + 2] === 0 && d[i + 3] > 0) n++;
                    return n;
                }"""
            )
            assert green > 40, f"the timeline canvas has only {green} pixels of the completed colour"

            # Clicking a point selects its index in the artifact preview.
            box = page.locator(".psnc-timeline-canvas").first.bounding_box()
            point = page.evaluate(
                """() => {
                    const c = document.querySelector('.psnc-timeline-canvas');
                    const r = c.getBoundingClientRect();
                    const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
                    const ratio = c.width / r.width;
                    for (let i = 0; i < d.length; i += 4) {
                        if (d[i] === 0x76 && d[i + 1] === 0xb9 && d[i + 2] === 0) {
                            const p = i / 4;
                            return [(p % c.width) / ratio, Math.floor(p / c.width) / ratio];
                        }
                    }
                    return null;
                }"""
            )
            assert point is not None
            page.mouse.click(box["x"] + point[0] + 1, box["y"] + point[1] + 1)
            page.wait_for_selector(".psnc-artifacts-title b:text-matches('^Index \\\\d+$')", timeout=15_000)
            page.wait_for_selector(".psnc-artifacts li:text-matches('\\\\.txt$')", timeout=15_000)

            page.screenshot(path=str(tmp_path / "psnc_monitor.png"), full_page=True)
        finally:
            if writer is not None and writer.poll() is None:
                writer.kill()
                writer.wait()
            browser.close()

    assert (tmp_path / "psnc_monitor.png").stat().st_size > 10_000
    assert outside == [], f"the page requested hosts outside localhost: {outside}"


def test_monitor_updates_while_the_kernel_runs_the_pipeline(jupyter_server, tmp_path):
    root = jupyter_server["root"]
    db = tmp_path / "same" / "pipeline.db"
    run_cell = textwrap.dedent(
        f"""
        import sys
        sys.path.insert(0, {str(TESTS_DIR)!r})
        from pipeline_parts import RangeSource, TextSink
        from physicsnemo_curator import Pipeline, run_pipeline
        pipeline = Pipeline(source=RangeSource(30, sleep=0.2), sink=TextSink({str(tmp_path / 'out')!r}), db_file={str(db)!r})
        results = run_pipeline(pipeline)
        print("done", len(results))
        """
    )
    _notebook(root / "same.ipynb", ["%load_ext psnc", f"%psnc_monitor {db} --interval 0.5", run_cell])

    with playwright_api.sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM)
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 1400})
            port, token = jupyter_server["port"], jupyter_server["token"]
            page.goto(f"http://127.0.0.1:{port}/lab/tree/same.ipynb?token={token}&reset", timeout=90_000)
            page.wait_for_function(
                "() => [...document.querySelectorAll('.jp-StatusBar-Widget')].some(e => /\\| Idle/.test(e.textContent))",
                timeout=90_000,
            )
            page.click(".lm-MenuBar-itemLabel:text-is('Run')")
            page.click(".lm-Menu-itemLabel:text-is('Run All Cells')")
            page.wait_for_selector(".psnc-monitor .psnc-state:text-is('live')", timeout=60_000)

            # While the third cell is still running, the monitor (first count) and run_pipeline's own
            # progress widget (second count) both move.
            monitor_seen: set[str] = set()
            run_seen: set[str] = set()
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline:
                busy = page.locator(".jp-Cell").nth(2).locator(".jp-InputPrompt").text_content() or ""
                counts = page.locator(".psnc-progress-completed-value").all_text_contents()
                if "*" not in busy:
                    break
                if counts:
                    monitor_seen.add(counts[0])
                if len(counts) > 1:
                    run_seen.add(counts[1])
                time.sleep(0.2)
            assert len(monitor_seen - {"0"}) >= 3, f"the monitor did not update while the kernel was busy: {monitor_seen}"
            assert len(run_seen - {"0"}) >= 3, f"run_pipeline's progress widget did not update: {run_seen}"

            last = page.locator(".jp-Cell").nth(2)
            playwright_api.expect(last.locator(".jp-InputPrompt")).to_have_text("[3]:", timeout=30_000)
            last.scroll_into_view_if_needed()
            playwright_api.expect(last.locator(".jp-OutputArea-output", has_text="done 30")).to_be_visible()
            page.wait_for_function(
                "() => [...document.querySelectorAll('.psnc-progress-completed-value')].every(e => e.textContent === '30')",
                timeout=15_000,
            )
        finally:
            page.screenshot(path=str(tmp_path / "same_kernel.png"), full_page=True)
            browser.close()
