"""The same component files hosted by Panel's AnyWidgetComponent, served by a real Panel server, in Chromium."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from urllib.parse import urlparse

import pytest

CHROMIUM = "/usr/bin/chromium"

pytestmark = [
    pytest.mark.browser,
    pytest.mark.slow,
    pytest.mark.skipif(not Path(CHROMIUM).exists(), reason="Debian's Chromium is not installed at /usr/bin/chromium"),
]

playwright_api = pytest.importorskip("playwright.sync_api")
pytest.importorskip("panel")

from pipeline_parts import RangeSource, SleepFilter, TextSink  # noqa: E402

from physicsnemo_curator import Pipeline, run_pipeline  # noqa: E402

APP = '''
import os

import panel as pn
import param
from panel.custom import AnyWidgetComponent

from physicsnemo_curator.monitor import RunMonitor, esm

pn.extension()


class Monitor(AnyWidgetComponent):
    _esm = esm("monitor")
    store_state = param.Dict(default={})
    progress = param.Dict(default={})
    timeline = param.Bytes(default=b"")
    timeline_meta = param.Dict(default={})
    stages = param.Dict(default={})
    artifacts = param.Dict(default={})
    selected_index = param.Integer(default=None, allow_None=True)


monitor = RunMonitor(os.environ["PSNC_TEST_DB"])
view = Monitor(sizing_mode="stretch_width")


def update():
    result = monitor.poll()
    if not result.changed and view.store_state:
        return
    meta, buffer = monitor.timeline()
    view.param.update(
        store_state=monitor.header(), progress=monitor.progress(), timeline=buffer, timeline_meta=meta,
        stages=monitor.stage_bars(), artifacts=monitor.artifacts(view.selected_index),
    )


def on_select(event):
    view.artifacts = monitor.artifacts(event.new)


view.param.watch(on_select, "selected_index")
update()
pn.state.add_periodic_callback(update, period=500)
view.servable()
'''


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_monitor_component_in_a_panel_server(tmp_path):
    pipeline = Pipeline(
        source=RangeSource(30, fail_on=[4]), filters=[SleepFilter()], sink=TextSink(str(tmp_path / "out")),
        db_file=tmp_path / "run.db",
    )
    run_pipeline(pipeline, on_error="continue", progress=False)
    app = tmp_path / "app.py"
    app.write_text(APP)
    port = _free_port()
    env = {**os.environ, "PSNC_TEST_DB": str(tmp_path / "run.db")}
    panel_cmd = Path(sys.executable).with_name("panel")
    server = subprocess.Popen(
        [str(panel_cmd), "serve", str(app), "--address", "127.0.0.1", "--port", str(port), "--allow-websocket-origin", f"127.0.0.1:{port}"],
        env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
    )
    outside: list[str] = []
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{port}/app", timeout=5)
                break
            except OSError:
                assert time.monotonic() < deadline, "the Panel server did not start"
                assert server.poll() is None, "the Panel server exited"
                time.sleep(0.5)

        with playwright_api.sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path=CHROMIUM)
            try:
                context = browser.new_context(viewport={"width": 1300, "height": 1000})

                def route(r):
                    url = r.request.url
                    if url.startswith(("data:", "blob:")) or urlparse(url).hostname in ("127.0.0.1", "localhost"):
                        r.continue_()
                    else:
                        outside.append(url)
                        r.abort()

                context.route("**/*", route)
                page = context.new_page()
                page.goto(f"http://127.0.0.1:{port}/app", timeout=60_000)
                # Panel renders components in shadow roots: locators pierce them, document.querySelector does not.
                expect = playwright_api.expect
                expect(page.locator(".psnc-progress-completed-value")).to_have_text("29", timeout=60_000)
                expect(page.locator(".psnc-progress-failed-value")).to_have_text("1")
                expect(page.locator(".psnc-monitor .psnc-state")).to_have_text("finished")
                canvas = page.locator(".psnc-timeline-canvas")
                expect(canvas).to_have_attribute("data-drawn-points", "30", timeout=30_000)

                # A click on a stage bar sets selected_index through the Panel model; the server sends back its files.
                page.locator(".psnc-stage-chart rect.psnc-bar").nth(3 * 7).click()
                page.wait_for_selector(".psnc-artifacts-title b:text-is('Index 7')", timeout=15_000)
                page.wait_for_selector(".psnc-artifacts li:text-matches('/7\\\\.txt$')", timeout=15_000)
                page.screenshot(path=str(tmp_path / "panel_host.png"), full_page=True)
            finally:
                browser.close()
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        try:
            server.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(server.pid, signal.SIGKILL)
            server.wait()
    assert outside == [], f"the page requested hosts outside localhost: {outside}"
