"""Every notebook in notebooks/ runs top to bottom with nbclient, in a fresh kernel."""

from __future__ import annotations

from pathlib import Path

import pytest

nbformat = pytest.importorskip("nbformat")
nbclient = pytest.importorskip("nbclient")

NOTEBOOKS = sorted((Path(__file__).resolve().parent.parent / "notebooks").glob("*.ipynb"))


@pytest.mark.slow
@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.name for p in NOTEBOOKS])
def test_notebook_runs(path, tmp_path, monkeypatch):
    monkeypatch.setenv("PSNC_CACHE_DIR", str(tmp_path / "cache"))
    notebook = nbformat.read(path, as_version=4)
    client = nbclient.NotebookClient(notebook, timeout=300, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}})
    client.execute()
    errors = [
        output
        for cell in notebook.cells
        if cell.cell_type == "code"
        for output in cell.get("outputs", [])
        if output.get("output_type") == "error"
    ]
    assert errors == []
    assert any(cell.get("outputs") for cell in notebook.cells if cell.cell_type == "code")


def test_there_are_notebooks():
    assert NOTEBOOKS, "notebooks/ holds no notebook"


@pytest.mark.slow
def test_live_monitor_notebook_reads_well_as_static_html(tmp_path, monkeypatch):
    nbconvert = pytest.importorskip("nbconvert")
    monkeypatch.setenv("PSNC_CACHE_DIR", str(tmp_path / "cache"))
    path = next(p for p in NOTEBOOKS if p.name == "02_live_monitor.ipynb")
    notebook = nbformat.read(path, as_version=4)
    nbclient.NotebookClient(notebook, timeout=300, kernel_name="python3").execute()

    metrics_cell = next(c for c in notebook.cells if c.cell_type == "code" and c.source.strip() == "pipeline.metrics")
    (result,) = [o for o in metrics_cell.outputs if o["output_type"] == "execute_result"]
    assert result["data"]["text/plain"].startswith("Pipeline metrics: 24 indices (23 completed, 1 failed)")
    assert "&lt;unreadable&gt;" in result["data"]["text/html"]

    body, _ = nbconvert.HTMLExporter().from_notebook_node(notebook)
    assert "<svg" in body
    assert "Own time per stage" in body
    assert "field 7 has NaNs &amp;lt;unreadable&amp;gt;" not in body, "the error message was escaped twice"
    assert "<unreadable>" not in body.replace("&lt;unreadable&gt;", "")
