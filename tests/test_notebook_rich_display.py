"""Rich display of metrics and store summaries: HTML tables and inline SVG, with user text escaped."""

from __future__ import annotations

from html.parser import HTMLParser

from pipeline_parts import RangeSource, TextSink

from physicsnemo_curator import Filter, Pipeline, run_pipeline
from physicsnemo_curator.core import _html
from physicsnemo_curator.core.pipeline_store import PipelineStore


class MarkupFilter(Filter):
    """A filter whose name is markup, to prove names are escaped."""

    name = "<script>alert('stage')</script>"


class _Tags(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.tags: list[str] = []
        self.open: list[str] = []
        self.text: list[str] = []

    def handle_starttag(self, tag, attrs):
        self.tags.append(tag)
        if tag not in ("br", "rect", "circle", "line"):
            self.open.append(tag)

    def handle_startendtag(self, tag, attrs):
        self.tags.append(tag)

    def handle_endtag(self, tag):
        assert self.open and self.open[-1] == tag, f"unbalanced </{tag}> after {self.open[-3:]}"
        self.open.pop()

    def handle_data(self, data):
        self.text.append(data)


def _parse(html: str) -> _Tags:
    parser = _Tags()
    parser.feed(html)
    parser.close()
    assert parser.open == [], f"unclosed tags: {parser.open}"
    return parser


def _run(tmp_path):
    pipeline = Pipeline(
        source=RangeSource(8, fail_on=[3]),
        filters=[MarkupFilter()],
        sink=TextSink(str(tmp_path / "out")),
        db_file=tmp_path / "run.db",
    )
    run_pipeline(pipeline, on_error="continue", progress=False)
    return pipeline


def test_pipeline_metrics_bundle_escapes_errors_and_stage_names(tmp_path):
    metrics = _run(tmp_path).metrics
    bundle = metrics._repr_mimebundle_()
    assert set(bundle) >= {"text/plain", "text/html"}
    html = bundle["text/html"]
    parsed = _parse(html)
    assert "script" not in parsed.tags
    assert "<b>bold</b>" not in html
    assert "index 3 is broken &lt;b&gt;bold&lt;/b&gt;" in html
    assert "&lt;script&gt;" in html
    assert "svg" in parsed.tags
    assert "table" in parsed.tags
    assert parsed.tags.count("circle") == 8
    text = "".join(parsed.text)
    assert "ValueError" in text
    assert "8 indices" in text


def test_index_metrics_html(tmp_path):
    metrics = _run(tmp_path).metrics
    failed = next(m for m in metrics.indices if m.status == "error")
    html = _html.index_metrics_html(failed)
    parsed = _parse(html)
    assert "Index 3" in "".join(parsed.text)
    assert "&lt;b&gt;bold&lt;/b&gt;" in html
    ok = next(m for m in metrics.indices if m.status == "completed")
    html = ok._repr_mimebundle_()["text/html"]
    parsed = _parse(html)
    assert parsed.tags.count("rect") == len(ok.stages)
    assert "&lt;script&gt;" in html
    assert "<script>" not in html


def test_summary_html_from_a_store(tmp_path):
    _run(tmp_path)
    with PipelineStore.from_db(tmp_path / "run.db") as store:
        summary = store.summary()
    summary["source_name"] = "<img src=x onerror=alert(1)>"
    html = _html.summary_html(summary)
    parsed = _parse(html)
    assert "img" not in parsed.tags
    assert "&lt;img src=x onerror=alert(1)&gt;" in html
    text = "".join(parsed.text)
    assert f"7 completed, 1 failed, {summary['remaining']} remaining" in text
    assert parsed.tags.count("rect") == 2  # completed and failed; nothing left untried
    assert str(tmp_path / "run.db") in text


def test_empty_metrics_render(tmp_path):
    from physicsnemo_curator.core.metrics import PipelineMetrics

    html = _html.metrics_html(PipelineMetrics([]))
    _parse(html)
    assert "0 indices" in html
