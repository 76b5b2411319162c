"""The dashboard in Debian's Chromium: live updates, timeline selection, previews, escaping, hosts.

Every server here is a real process on a free 127.0.0.1 port, stopped by its
process group at the end; every page runs with requests to anything but
localhost aborted and recorded.
"""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from urllib.parse import quote, urlparse

import pytest

CHROMIUM = "/usr/bin/chromium"
REPO = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent

pytestmark = [
    pytest.mark.browser,
    pytest.mark.slow,
    pytest.mark.skipif(not Path(CHROMIUM).exists(), reason="Debian's Chromium is not installed at /usr/bin/chromium"),
]

playwright_api = pytest.importorskip("playwright.sync_api")
pytest.importorskip("panel_material_ui")

MARKUP = '<img src=x onerror="window.__xss=1;alert(1)"><script>window.__xss=2</script>'
BACKTICK = '`;window.__xss=3;//${window.__xss=4}</textarea></style>"\'><svg onload=window.__xss=5>'

PARTS = '''
import time
import pyarrow as pa
import pyarrow.parquet as pq
from physicsnemo_curator import Filter, Sink, Source

MARKUP = {markup!r}


class SlowSource(Source):
    name = "SlowSource" + MARKUP

    def __init__(self, n, sleep, note=MARKUP):
        self.n = n
        self.sleep = sleep
        self.note = note

    def __len__(self):
        return self.n

    def __getitem__(self, index):
        time.sleep(self.sleep)
        if index % 9 == 4:
            raise ValueError("boom " + MARKUP + " at " + str(index))
        yield index


class TableFilter(Filter):
    name = "Table" + MARKUP

    def __init__(self, out):
        self.out = out
        self._written = []

    def __call__(self, items):
        for item in items:
            path = f"{{self.out}}/rows_{{item}}.parquet"
            pq.write_table(pa.table({{"index": [item] * 30, "row": list(range(30)), "label": [MARKUP] * 30}}), path)
            self._written.append(path)
            yield item

    def artifacts(self):
        written, self._written = self._written, []
        return written


class ListSink(Sink):
    def __init__(self, out):
        self.out = out

    def __call__(self, items, index):
        path = f"{{self.out}}/out_{{index}}.txt"
        with open(path, "w") as handle:
            handle.write(str(list(items)))
        return [path]
'''

WRITER = '''
import sys
sys.path.insert(0, {parts_dir!r})
from live_parts import SlowSource, TableFilter, ListSink
from physicsnemo_curator import Pipeline, run_pipeline

pipeline = Pipeline(source=SlowSource({n}, {sleep}), filters=[TableFilter({out!r})], sink=ListSink({out!r}), db_file={db!r})
run_pipeline(pipeline, on_error="continue", progress=False)
'''


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _start(args: list[str], log: Path, env: dict[str, str] | None = None, cwd: Path | None = None) -> subprocess.Popen:
    handle = log.open("w")
    return subprocess.Popen(
        args, stdout=handle, stderr=subprocess.STDOUT, env={**os.environ, **(env or {})}, cwd=cwd, start_new_session=True
    )


def _stop(process: subprocess.Popen) -> None:
    if process.poll() is None:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=15)


def _wait_http(url: str, process: subprocess.Popen, log: Path, timeout: float = 120.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"server exited with {process.returncode}:\n{log.read_text()[-3000:]}")
        try:
            with urllib.request.urlopen(url, timeout=5) as response:
                if response.status == 200:
                    return
        except OSError:
            time.sleep(0.3)
    raise TimeoutError(f"no answer from {url} within {timeout} s:\n{log.read_text()[-3000:]}")


class Browser:
    """A Chromium page that records console errors, page errors, dialogs and non-local requests."""

    def __init__(self, playwright) -> None:  # noqa: ANN001
        self.browser = playwright.chromium.launch(executable_path=CHROMIUM)
        self.context = self.browser.new_context(viewport={"width": 1400, "height": 1000})
        self.external: list[str] = []
        self.errors: list[str] = []
        self.dialogs: list[str] = []
        self.context.route("**/*", self._route)
        self.page = self.context.new_page()
        self.page.on("console", lambda msg: self.errors.append(msg.text) if msg.type == "error" else None)
        self.page.on("pageerror", lambda exc: self.errors.append(f"pageerror: {exc}"))
        self.page.on("dialog", self._dialog)
        self.page.add_init_script("window.__xss = undefined;")

    def _route(self, route) -> None:  # noqa: ANN001
        url = route.request.url
        host = urlparse(url).hostname
        if url.startswith(("data:", "blob:")) or host in ("127.0.0.1", "localhost"):
            route.continue_()
        else:
            self.external.append(url)
            route.abort()

    def _dialog(self, dialog) -> None:  # noqa: ANN001
        self.dialogs.append(dialog.message)
        dialog.dismiss()

    def close(self) -> None:
        self.browser.close()

    # -- page helpers ---------------------------------------------------------

    def tab(self, name: str) -> None:
        self.page.get_by_role("tab", name=name).click()
        self.page.wait_for_timeout(300)

    def completed(self) -> int:
        locator = self.page.locator('[data-testid="completed"]').first
        playwright_api.expect(locator).to_have_text(re.compile(r"^\d+$"), timeout=60_000)
        return int(locator.text_content())

    def assert_clean(self) -> None:
        assert self.page.evaluate("window.__xss") is None
        assert self.dialogs == []
        assert self.external == []
        assert self.errors == []


@pytest.fixture
def browser():
    with playwright_api.sync_playwright() as playwright:
        chrome = Browser(playwright)
        try:
            yield chrome
        finally:
            chrome.close()


def _check_three_tabs(chrome: Browser, shots: Path | None = None, expect_rows: bool = True) -> None:
    page = chrome.page
    page.wait_for_selector('[data-testid="completed"]', timeout=60_000)
    assert page.locator('[data-testid="workers"]').count() >= 1
    if shots:
        page.screenshot(path=str(shots / "overview.png"), full_page=True)
    chrome.tab("Pipeline")
    page.wait_for_selector('[data-testid="component-cards"]', timeout=30_000)
    if expect_rows:
        page.wait_for_selector('[data-testid="query-rows"]', timeout=30_000)
    if shots:
        page.screenshot(path=str(shots / "pipeline.png"), full_page=True)
    chrome.tab("Performance")
    canvas = page.locator("canvas.psnc-timeline-canvas")
    playwright_api.expect(canvas).to_have_attribute("data-drawn-points", re.compile(r"^[1-9]\d*$"), timeout=30_000)
    page.wait_for_selector('[data-testid="slowest"]', timeout=30_000)
    if shots:
        page.screenshot(path=str(shots / "performance.png"), full_page=True)


def _click_a_timeline_point(chrome: Browser) -> int:
    """Move over the canvas until the hover line names a point, click it, return the selected index."""
    page = chrome.page
    canvas = page.locator("canvas.psnc-timeline-canvas")
    info = page.locator(".psnc-timeline .psnc-info")
    box = canvas.bounding_box()
    assert box is not None
    for fx in (0.5, 0.3, 0.7, 0.2, 0.8):
        for fy in [i / 40 for i in range(2, 39)]:
            x, y = box["x"] + box["width"] * fx, box["y"] + box["height"] * fy
            page.mouse.move(x, y)
            if info.inner_text().startswith("index "):
                page.mouse.click(x, y)
                playwright_api.expect(info).to_have_text(re.compile(r"^selected: index \d+"), timeout=10_000)
                text = info.inner_text()
                return int(re.match(r"selected: index (\d+)", text).group(1))
    raise AssertionError("no timeline point found under the mouse")


def test_live_dashboard_in_chromium(tmp_path, browser):
    out = tmp_path / "out"
    out.mkdir()
    (tmp_path / "live_parts.py").write_text(PARTS.format(markup=MARKUP))
    db = tmp_path / "live.db"
    script = tmp_path / "writer.py"
    script.write_text(WRITER.format(parts_dir=str(tmp_path), n=600, sleep=0.04, out=str(out), db=str(db)))
    writer = _start([sys.executable, str(script)], tmp_path / "writer.log")
    port = _free_port()
    server = None
    try:
        deadline = time.monotonic() + 60
        while not db.exists() and time.monotonic() < deadline:
            time.sleep(0.2)
        server = _start(
            [str(BIN / "psnc"), "dashboard", str(db), "--port", str(port), "--no-browser"], tmp_path / "server.log"
        )
        url = f"http://127.0.0.1:{port}/"
        _wait_http(url, server, tmp_path / "server.log")

        page = browser.page
        page.goto(url)
        first = browser.completed()
        _check_three_tabs(browser, tmp_path)

        # The count rises while the writer runs, with no reload.
        browser.tab("Overview")
        deadline = time.monotonic() + 60
        later = first
        while later <= first and time.monotonic() < deadline:
            page.wait_for_timeout(500)
            later = browser.completed()
        assert later > first, f"completed count stayed at {first}"
        assert writer.poll() is None or later > first

        # The run-wide artifact view previews the first Parquet file: 20 rows.
        browser.tab("Pipeline")
        preview = page.locator('[data-testid="parquet-preview"]').first
        preview.wait_for(timeout=30_000)
        assert preview.locator("tbody tr").count() == 20
        assert "first 20 of 30 rows" in page.locator("text=/first 20 of 30 rows/").first.inner_text()

        # A click on a timeline point selects that index in the Pipeline tab.
        browser.tab("Performance")
        index = _click_a_timeline_point(browser)
        browser.tab("Pipeline")
        selected = page.locator('[data-testid="selected-index"]')
        try:
            selected.wait_for(timeout=20_000)
        except playwright_api.TimeoutError:
            page.screenshot(path=str(tmp_path / "pipeline-not-selected.png"), full_page=True)
            raise AssertionError(f"index {index} not shown; server log:\n{(tmp_path / 'server.log').read_text()[-4000:]}") from None
        assert selected.inner_text() == f"Index {index}"
        page.screenshot(path=str(tmp_path / "pipeline-selected.png"), full_page=True)

        # The error message with markup shows as text in the error log.
        browser.tab("Overview")
        page.wait_for_selector('[data-testid="errors"]', timeout=30_000)
        errors_text = page.locator('[data-testid="errors"]').inner_text()
        assert "boom " + MARKUP in errors_text
        page.screenshot(path=str(tmp_path / "overview-late.png"), full_page=True)
        browser.assert_clean()
        for name in ("overview.png", "pipeline.png", "performance.png"):
            assert (tmp_path / name).stat().st_size > 10_000
    finally:
        if server is not None:
            _stop(server)
        _stop(writer)


def _markup_store(tmp_path: Path) -> Path:
    import pyarrow as pa
    import pyarrow.parquet as pq

    from physicsnemo_curator.dashboard._synthetic import write_store

    both = MARKUP + BACKTICK
    weird_dir = tmp_path / "art<b>x<i>`${y}`"
    weird_dir.mkdir()
    parquet = weird_dir / "preview.parquet"
    pq.write_table(pa.table({both: list(range(25)), "text": [both] * 25}), parquet)
    return write_store(
        tmp_path / "markup.db",
        80,
        total=120,
        error_every=5,
        stages=(("source", "source"), ("Filter" + both, "filter"), ("sink", "sink")),
        config={
            "source": {"type": "pkg.mod:Source" + both, "params": {"value": both, "nested": {"k": both}}},
            "filters": [{"type": "test_dashboard_app:BrokenFilter", "params": {"option": both}}],
            "sink": {"type": "pkg.mod:Sink", "params": {"path": both}},
        },
        source_name="Source" + both,
        host="host" + both,
        error_message="failed " + both,
        output_pattern="/out/" + both + "/{idx}.npz",
        artifact_paths={1: [str(parquet)]},
        running=True,
    )


def test_markup_in_every_field_shows_as_text(tmp_path, browser):
    db = _markup_store(tmp_path)
    port = _free_port()
    # The tests folder on the path lets the server import the filter whose panel raises.
    server = _start(
        [str(BIN / "psnc"), "dashboard", str(db), "--port", str(port), "--no-browser"],
        tmp_path / "server.log",
        env={"PYTHONPATH": str(REPO / "tests")},
    )
    try:
        url = f"http://127.0.0.1:{port}/"
        _wait_http(url, server, tmp_path / "server.log")
        page = browser.page
        page.goto(url)
        _check_three_tabs(browser, tmp_path)
        both = MARKUP + BACKTICK

        browser.tab("Overview")
        for test_id, expected in (
            ("workers", "host" + both),
            ("structure", "Filter" + both),
            ("outputs", "/out/" + both),
            ("errors", "failed " + both),
        ):
            assert expected in page.locator(f'[data-testid="{test_id}"]').inner_text(), test_id
        assert ("Source" + both) in page.locator('[data-testid="run-name"]').inner_text()

        browser.tab("Pipeline")
        cards = page.locator('[data-testid="component-cards"]').inner_text()
        assert both in cards
        assert "pkg.mod:Source" + both in cards
        rows = page.locator('[data-testid="query-rows"]').inner_text()
        assert "failed " + both in rows
        preview = page.locator('[data-testid="parquet-preview"]').first
        assert preview.locator("tbody tr").count() == 20
        assert both in preview.inner_text()
        assert "art<b>x<i>`${y}`" in page.locator('[data-testid="artifact-group"]').first.inner_text() + page.locator(
            "text=/preview.parquet/"
        ).first.inner_text()

        widget_error = page.locator('[data-testid="widget-error"]').first
        widget_error.wait_for(timeout=20_000)
        assert widget_error.inner_text().startswith("ValueError: cannot draw " + '<img src=x onerror="window.__xss=1">')

        page.get_by_label("Index query").fill("4")
        page.keyboard.press("Enter")
        page.get_by_label("Selected index").fill("4")
        page.keyboard.press("Enter")
        page.wait_for_selector('[data-testid="detail-error"]', timeout=20_000)
        assert page.locator('[data-testid="detail-error"]').inner_text() == "ValueError: failed " + both
        page.screenshot(path=str(tmp_path / "pipeline-markup.png"), full_page=True)
        page.wait_for_timeout(1000)
        browser.assert_clean()
    finally:
        _stop(server)


def test_panel_serve_notebook(tmp_path, browser):
    from physicsnemo_curator.dashboard._synthetic import write_store

    db = write_store(tmp_path / "nb.db", 40, error_every=7)
    port = _free_port()
    server = _start(
        [str(BIN / "panel"), "serve", str(REPO / "notebooks" / "dashboard.ipynb"), "--address", "127.0.0.1", "--port", str(port)],
        tmp_path / "panel.log",
        env={"PSNC_DB": str(db)},
    )
    try:
        url = f"http://127.0.0.1:{port}/dashboard"
        _wait_http(url, server, tmp_path / "panel.log")
        browser.page.goto(url)
        assert browser.completed() == 35
        _check_three_tabs(browser, tmp_path)
        browser.assert_clean()
    finally:
        _stop(server)


def test_jupyter_server_extension_serves_dashboard(tmp_path, browser):
    from physicsnemo_curator.dashboard._synthetic import write_store

    db = write_store(tmp_path / "hub.db", 30, error_every=10)
    port = _free_port()
    token = "psnc-test-token"
    root = tmp_path / "root"
    root.mkdir()
    server = _start(
        [
            str(BIN / "jupyter"), "server", "--no-browser", "--allow-root", "--ip", "127.0.0.1", "--port", str(port),
            f"--ServerApp.token={token}", f"--ServerApp.root_dir={root}",
        ],
        tmp_path / "jupyter.log",
        env={"JUPYTER_CONFIG_PATH": str(REPO / "jupyter-config"), "JUPYTER_RUNTIME_DIR": str(tmp_path / "runtime")},
    )
    try:
        _wait_http(f"http://127.0.0.1:{port}/api/status?token={token}", server, tmp_path / "jupyter.log")
        base = f"http://127.0.0.1:{port}"
        # Without the token the page is refused.
        with urllib.request.urlopen(f"{base}/psnc/dashboard?db={quote(str(db))}", timeout=30) as refused:
            assert "/login" in refused.url
            assert b"data-testid" not in refused.read()
        page = browser.page
        page.goto(f"{base}/psnc/dashboard?db={quote(str(db))}&token={token}")
        assert browser.completed() == 27
        _check_three_tabs(browser, tmp_path)
        # Every request stayed on the Jupyter server's own origin.
        assert urlparse(page.url).port == port
        browser.assert_clean()
        # The dashboard's server thread does not keep Jupyter alive when it shuts down.
        os.kill(server.pid, signal.SIGTERM)
        server.wait(timeout=30)
    finally:
        _stop(server)


def test_servable_page_displays_inline_in_jupyterlab(tmp_path, browser):
    from physicsnemo_curator.dashboard._synthetic import write_store

    db = write_store(tmp_path / "inline.db", 25, error_every=5)
    root = tmp_path / "root"
    root.mkdir()
    cells = ["from physicsnemo_curator.dashboard import DashboardApp", f"DashboardApp({str(db)!r}).servable()"]
    notebook = {
        "cells": [
            {"cell_type": "code", "execution_count": None, "id": f"c{i}", "metadata": {}, "outputs": [], "source": src}
            for i, src in enumerate(cells)
        ],
        "metadata": {"kernelspec": {"display_name": "Python 3", "language": "python", "name": "python3"}},
        "nbformat": 4,
        "nbformat_minor": 5,
    }
    (root / "inline.ipynb").write_text(__import__("json").dumps(notebook))
    port = _free_port()
    token = "psnc-inline-token"
    server = _start(
        [
            str(BIN / "jupyter"), "lab", "--allow-root", "--no-browser", "--ip", "127.0.0.1", "--port", str(port),
            f"--ServerApp.token={token}", f"--ServerApp.root_dir={root}",
            f"--LabApp.workspaces_dir={tmp_path / 'workspaces'}", f"--LabApp.user_settings_dir={tmp_path / 'settings'}",
        ],
        tmp_path / "lab.log",
        env={"HOME": str(tmp_path / "home"), "JUPYTER_RUNTIME_DIR": str(tmp_path / "runtime"), "IPYTHONDIR": str(tmp_path / "ipython")},
        cwd=root,
    )
    try:
        _wait_http(f"http://127.0.0.1:{port}/api/status?token={token}", server, tmp_path / "lab.log")
        page = browser.page
        page.goto(f"http://127.0.0.1:{port}/lab/tree/inline.ipynb?token={token}&reset", timeout=90_000)
        page.wait_for_selector(".jp-Notebook", timeout=90_000)
        page.wait_for_function(
            "() => [...document.querySelectorAll('.jp-StatusBar-Widget')].some(e => /\\| Idle/.test(e.textContent))",
            timeout=90_000,
        )
        page.click(".lm-MenuBar-itemLabel:text-is('Run')")
        page.click(".lm-Menu-itemLabel:text-is('Run All Cells')")
        assert browser.completed() == 20
        page.locator('[data-testid="workers"]').first.wait_for(timeout=30_000)
        page.screenshot(path=str(tmp_path / "jupyterlab-inline.png"), full_page=True)
        assert page.evaluate("window.__xss") is None
        assert browser.external == []
    finally:
        _stop(server)
