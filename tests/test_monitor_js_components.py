"""The component modules in Chromium with a minimal model: drawing, selection, escaping, byte forms."""

from __future__ import annotations

import base64
from pathlib import Path

import numpy as np
import pytest

from physicsnemo_curator.monitor import IndexBatch, IndexTable, assets, stage_payload, timeline_payload

CHROMIUM = "/usr/bin/chromium"

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(not Path(CHROMIUM).exists(), reason="Debian's Chromium is not installed at /usr/bin/chromium"),
]

playwright_api = pytest.importorskip("playwright.sync_api")

# A model with the subset of the anywidget API the components use; bytes arrive in the form under test.
HARNESS = """
async ([source, state, bytesKey, form]) => {
  const listeners = {};
  if (bytesKey) {
    const raw = Uint8Array.from(atob(state[bytesKey]), (c) => c.charCodeAt(0));
    // Copy into a larger buffer at an odd offset, as a message buffer may hold it.
    const padded = new Uint8Array(raw.length + 3);
    padded.set(raw, 3);
    const view = padded.subarray(3);
    state[bytesKey] = {
      dataview: new DataView(padded.buffer, 3, raw.length),
      arraybuffer: raw.slice().buffer,
      uint8array: view,
      base64: state[bytesKey],
    }[form];
  }
  const model = {
    saves: 0,
    get: (key) => state[key],
    set: (key, value) => {
      state[key] = value;
      for (const cb of listeners[`change:${key}`] || []) cb();
    },
    save_changes() { this.saves += 1; },
    on: (event, cb) => { (listeners[event] ||= []).push(cb); },
    off: (event, cb) => { listeners[event] = (listeners[event] || []).filter((f) => f !== cb); },
  };
  window.psncModel = model;
  const url = URL.createObjectURL(new Blob([source], { type: "text/javascript" }));
  const module = (await import(url)).default;
  const host = document.createElement("div");
  host.style.width = "900px";
  document.body.append(host);
  const started = performance.now();
  await module.render({ model, el: host });
  window.psncRenderStarted = started;
}
"""


@pytest.fixture(scope="module")
def browser():
    with playwright_api.sync_playwright() as pw:
        chromium = pw.chromium.launch(executable_path=CHROMIUM)
        yield chromium
        chromium.close()


@pytest.fixture
def page(browser):
    context = browser.new_context(viewport={"width": 1000, "height": 900})
    outside: list[str] = []
    context.route("**/*", lambda r: (outside.append(r.request.url), r.abort()))
    page = context.new_page()
    page.set_content("<html><body></body></html>")
    errors: list[str] = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    yield page
    context.close()
    assert errors == []
    assert outside == []


def _table(n: int, failures: list[int]) -> IndexTable:
    idx = np.arange(n, dtype=np.int64)
    status = np.zeros(n, dtype=np.uint8)
    status[failures] = 1
    minus = np.full(n, -1, dtype=np.int64)
    table = IndexTable(3)
    table.apply(
        IndexBatch(
            seq=idx + 1, idx=idx, status=status, run_id=np.ones(n, dtype=np.int64), worker_id=minus.copy(),
            started_at=np.zeros(n), wall_ns=1_000_000 + (idx % 1000) * 1000, cpu_ns=minus.copy(),
            peak_mem=4096 + idx, rss_peak=minus.copy(), gpu_mem=minus.copy(), errors={i: ("E", "m") for i in failures},
        ),
        (np.repeat(idx, 3), np.tile(np.arange(3), n), np.full(3 * n, 300_000, dtype=np.int64), np.zeros(3 * n, dtype=np.int64)),
    )
    return table


def _render(page, name: str, state: dict, bytes_key: str | None = None, form: str = "dataview") -> None:
    page.evaluate(HARNESS, [assets.esm(name), state, bytes_key, form])


@pytest.mark.parametrize("form", ["dataview", "arraybuffer", "uint8array", "base64"])
def test_timeline_draws_every_form_of_bytes(page, form):
    meta, buffer = timeline_payload(_table(50, failures=[7]))
    state = {"store_state": {"state": "live"}, "timeline_meta": meta, "timeline": base64.b64encode(buffer).decode(),
             "selected_index": None}
    _render(page, "timeline", state, "timeline", form)
    canvas = page.locator(".psnc-timeline-canvas")
    playwright_api.expect(canvas).to_have_attribute("data-drawn-points", "50")


def test_timeline_draws_100000_points_and_selects_on_click(page):
    meta, buffer = timeline_payload(_table(100_000, failures=[5, 50_000]))
    state = {"store_state": {"state": "live"}, "timeline_meta": meta, "timeline": base64.b64encode(buffer).decode(),
             "selected_index": None}
    _render(page, "timeline", state, "timeline")
    canvas = page.locator(".psnc-timeline-canvas")
    playwright_api.expect(canvas).to_have_attribute("data-drawn-points", "100000", timeout=20_000)
    red = page.evaluate(
        """() => {
            const c = document.querySelector('.psnc-timeline-canvas');
            const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
            let n = 0;
            for (let i = 0; i < d.length; i += 4) if (d[i] === 0xe5 && d[i + 1] === 0x48 && d[i + 2] === 0x4d) n++;
            return n;
        }"""
    )
    assert red > 0, "the failed indices are not drawn in the error colour"

    # Click on a drawn point in the middle column of the plot.
    box = canvas.bounding_box()
    y = page.evaluate(
        """() => {
            const c = document.querySelector('.psnc-timeline-canvas');
            const ratio = c.width / c.getBoundingClientRect().width;
            const x = Math.floor(c.width / 2);
            const d = c.getContext('2d').getImageData(x, 0, 1, c.height).data;
            for (let row = 0; row < c.height; row++) if (d[4 * row] === 0x76 && d[4 * row + 1] === 0xb9) return row / ratio;
            return null;
        }"""
    )
    assert y is not None, "no completed point in the middle column"
    page.mouse.click(box["x"] + box["width"] / 2, box["y"] + y)
    selected = page.evaluate("() => window.psncModel.get('selected_index')")
    assert isinstance(selected, int)
    assert 40_000 < selected < 60_000
    assert page.evaluate("() => window.psncModel.saves") == 1


def test_progress_counts_and_waiting_banner(page):
    state = {
        "store_state": {"state": "waiting", "message": "Waiting for run: /x/run.db does not exist yet."},
        "progress": {},
    }
    _render(page, "progress", state)
    playwright_api.expect(page.locator(".psnc-banner")).to_have_text("Waiting for run: /x/run.db does not exist yet.")
    page.evaluate(
        """() => {
            const m = window.psncModel;
            m.set('progress', {state: 'live', completed: 12, failed: 2, remaining: 6, total: 20, elapsed_s: 72, rate_per_s: 0.19,
                               eta_s: 31, worker_states: {busy: 1, stale: 1}, workers: [
                                 {worker_id: 1, pid: 10, state: 'busy', current_index: 14, n_done: 7, heartbeat_age_s: 1},
                                 {worker_id: 2, pid: 11, state: 'stale', current_index: 9, n_done: 5, heartbeat_age_s: 40}]});
            m.set('store_state', {state: 'live'});
        }"""
    )
    playwright_api.expect(page.locator(".psnc-progress-completed-value")).to_have_text("12")
    playwright_api.expect(page.locator(".psnc-progress-failed-value")).to_have_text("2")
    times = page.locator(".psnc-times").text_content()
    assert "elapsed 1.2 min" in times
    assert "ETA 31.0 s" in times
    assert "rate 11.4 /min" in times
    assert page.locator(".psnc-progress tr").count() == 3


def test_stage_bars_filter_and_click(page):
    table = _table(6, failures=[])
    payload = stage_payload(table, [{"name": "source"}, {"name": "<b>mesh</b>"}, {"name": "sink"}])
    _render(page, "stage_bars", {"store_state": {"state": "finished"}, "stages": payload, "selected_index": None})
    assert page.locator(".psnc-stage-chart rect.psnc-bar").count() == 18
    assert page.locator(".psnc-stages b").count() == 0, "a stage name was parsed as markup"
    assert "<b>mesh</b>" in page.locator(".psnc-filter").text_content()
    page.locator(".psnc-filter input").nth(1).uncheck()
    assert page.locator(".psnc-stage-chart rect.psnc-bar").count() == 12
    assert page.locator(".psnc-stage-stats tr").count() == 3
    page.locator(".psnc-stage-chart rect.psnc-bar").nth(2 * 4).click()
    assert page.evaluate("() => window.psncModel.get('selected_index')") == 4


def test_artifact_preview_escapes_cells_and_paths(page):
    artifacts = {
        "index": 3,
        "outputs": [{"index": 3, "path": "/data/<i>out</i>.npz", "exists": True}],
        "groups": [
            {
                "position": 1, "stage": "stats<script>", "has_panel": False,
                "files": [{"index": 3, "path": "/data/s.parquet", "exists": True, "preview": {
                    "path": "/data/s.parquet", "num_rows": 30, "error": None,
                    "columns": [{"name": "x", "type": "int64"}, {"name": "label", "type": "string"}],
                    "rows": [[1, "<img src=x onerror=alert(1)>"], [2, None]],
                }}],
            }
        ],
    }
    _render(page, "artifact_preview", {"store_state": {"state": "finished"}, "artifacts": artifacts, "selected_index": 3})
    assert page.locator(".psnc-artifacts img").count() == 0
    assert page.locator(".psnc-artifacts i").count() == 0
    cells = page.locator(".psnc-parquet td").all_text_contents()
    assert cells == ["1", "<img src=x onerror=alert(1)>", "2", "null"]
    assert "Artifacts of stats<script>" in page.locator(".psnc-artifacts h4").all_text_contents()
    assert "2 of 30 rows" in page.locator(".psnc-preview").text_content()
    page.get_by_text("show all").click()
    assert page.evaluate("() => window.psncModel.get('selected_index')") is None


def test_monitor_composes_the_four_components(page):
    table = _table(30, failures=[4])
    meta, buffer = timeline_payload(table)
    state = {
        "store_state": {"state": "live", "name": "Run <x>", "db_path": "/tmp/run.db", "message": ""},
        "progress": {"state": "live", "completed": 29, "failed": 1, "remaining": 0, "total": 30, "workers": [], "worker_states": {}},
        "timeline_meta": meta,
        "timeline": base64.b64encode(buffer).decode(),
        "stages": stage_payload(table, [{"name": "source"}, {"name": "f"}, {"name": "sink"}]),
        "artifacts": {"index": None, "outputs": [], "groups": []},
        "selected_index": None,
    }
    _render(page, "monitor", state, "timeline")
    playwright_api.expect(page.locator(".psnc-name")).to_have_text("Run <x>")
    playwright_api.expect(page.locator(".psnc-timeline-canvas")).to_have_attribute("data-drawn-points", "30")
    assert page.locator(".psnc-progress-completed-value").text_content() == "29"
    assert page.locator(".psnc-stage-chart rect.psnc-bar").count() == 90
    assert page.locator(".psnc-artifacts-title").text_content() == "All indices"
