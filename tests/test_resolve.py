"""The dashboard's resolver (database, pipeline file, hash prefix) and index query parser."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator

import pytest

from physicsnemo_curator.core.base import Sink, Source
from physicsnemo_curator.core.errors import IndexQueryError, NotAStoreError, ResolveError
from physicsnemo_curator.core.pipeline import Pipeline
from physicsnemo_curator.dashboard._cli import list_runs, parse_index_query, resolve_db_path
from physicsnemo_curator.dashboard._synthetic import write_store


class CountSource(Source[int]):
    def __init__(self, n: int = 3) -> None:
        self.n = n

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, index: int) -> Iterator[int]:
        yield index


class NullSink(Sink[int]):
    def __call__(self, items, index):  # noqa: ANN001, ANN201
        list(items)
        return []


@pytest.fixture
def cache(tmp_path, monkeypatch):
    directory = tmp_path / "cache"
    directory.mkdir()
    monkeypatch.setenv("PSNC_CACHE_DIR", str(directory))
    return directory


def test_existing_database_is_returned_as_is(tmp_path):
    db = write_store(tmp_path / "runs" / "abc123.db", 5)
    assert resolve_db_path(db) == db
    assert resolve_db_path(str(db)) == db


def test_missing_database_names_path(cache):
    with pytest.raises(ResolveError, match=r"Run store not found: .*nope\.db"):
        resolve_db_path(cache / "nope.db")


def test_file_that_is_not_a_store_says_so(tmp_path):
    text = tmp_path / "notes.db"
    text.write_text("hello, not sqlite at all" * 10)
    with pytest.raises(NotAStoreError, match="not an SQLite database"):
        resolve_db_path(text)
    other = tmp_path / "other.db"
    conn = sqlite3.connect(other)
    conn.execute("CREATE TABLE t (x)")
    conn.commit()
    conn.close()
    with pytest.raises(NotAStoreError, match="not a physicsnemo-curator run store"):
        resolve_db_path(other)


def test_pipeline_file_prefers_resume_store(cache, tmp_path):
    pipeline = Pipeline(source=CountSource(4), sink=NullSink())
    spec = pipeline.save(tmp_path / "pipe.yaml")
    hash16 = pipeline.config_hash[:16]
    write_store(cache / f"{hash16}_20260101T000000_000000Z.db", 2)
    write_store(cache / f"{hash16}_20260301T000000_000000Z.db", 2)
    assert resolve_db_path(spec) == cache / f"{hash16}_20260301T000000_000000Z.db"
    write_store(cache / f"{hash16}.db", 2)
    assert resolve_db_path(spec) == cache / f"{hash16}.db"


def test_pipeline_file_json_and_db_dir(tmp_path, cache):
    elsewhere = tmp_path / "elsewhere"
    pipeline = Pipeline(source=CountSource(7), db_dir=elsewhere)
    spec = pipeline.save(tmp_path / "pipe.json")
    with pytest.raises(ResolveError, match=rf"No run store for pipeline file .*pipe\.json.*{pipeline.config_hash[:16]}.*elsewhere"):
        resolve_db_path(spec)
    target = write_store(elsewhere / f"{pipeline.config_hash[:16]}_20260101T000000_000000Z.db", 1)
    assert resolve_db_path(spec) == target


def test_pipeline_file_hash_depends_on_params(tmp_path, cache):
    a = Pipeline(source=CountSource(3))
    b = Pipeline(source=CountSource(4))
    write_store(cache / f"{a.config_hash[:16]}.db", 1)
    assert resolve_db_path(a.save(tmp_path / "a.yml")) == cache / f"{a.config_hash[:16]}.db"
    with pytest.raises(ResolveError, match="No run store for pipeline file"):
        resolve_db_path(b.save(tmp_path / "b.yml"))


def test_missing_pipeline_file(tmp_path):
    with pytest.raises(ResolveError, match=r"Pipeline file not found: .*gone\.yaml"):
        resolve_db_path(tmp_path / "gone.yaml")


def test_hash_prefix_unique_and_no_match(cache):
    db = write_store(cache / "a1b2c3d4e5f60718.db", 3)
    write_store(cache / "ffee000011112222.db", 3)
    assert resolve_db_path("a1b2") == db
    assert resolve_db_path("a1b2c3d4e5f60718") == db
    with pytest.raises(ResolveError, match=rf"No run store matches '9999'.*{cache.name}"):
        resolve_db_path("9999")


def test_hash_prefix_same_hash_picks_resume_then_newest(cache):
    old = write_store(cache / "a1b2c3d4e5f60718_20260101T000000_000000Z.db", 1)
    new = write_store(cache / "a1b2c3d4e5f60718_20260202T000000_000000Z.db", 1)
    assert resolve_db_path("a1b2") == new
    assert resolve_db_path(old.stem) == old


def test_ambiguous_prefix_lists_candidates_with_start_times(cache):
    write_store(cache / "a1b2c3d4e5f60718.db", 1)
    write_store(cache / "a1b2ffffffffffff.db", 1)
    with pytest.raises(ResolveError) as info:
        resolve_db_path("a1b2")
    message = str(info.value)
    assert "ambiguous" in message
    assert "a1b2c3d4e5f60718.db (started " in message
    assert "a1b2ffffffffffff.db (started " in message
    assert "UTC" in message


def test_empty_argument_and_path_like_argument(cache):
    with pytest.raises(ResolveError, match="Empty run store argument"):
        resolve_db_path("  ")
    with pytest.raises(ResolveError, match="no such file"):
        resolve_db_path("some/dir/run")


def test_resolver_never_writes(cache):
    db = write_store(cache / "a1b2c3d4e5f60718.db", 3)
    before = db.read_bytes()
    mtime = db.stat().st_mtime_ns
    resolve_db_path("a1b2")
    resolve_db_path(db)
    assert db.read_bytes() == before
    assert db.stat().st_mtime_ns == mtime


def test_list_runs_reports_counts_and_bad_files(cache):
    write_store(cache / "a1b2c3d4e5f60718.db", 10, error_every=5, source_name="Alpha")
    (cache / "broken.db").write_text("not a database at all, just text" * 5)
    runs = list_runs(cache)
    by_name = {r["path"].name: r for r in runs}
    good = by_name["a1b2c3d4e5f60718.db"]
    assert (good["completed"], good["failed"], good["total"], good["source"]) == (8, 2, 10, "Alpha")
    assert good["size"] > 0
    assert good["started_at"] is not None
    assert "not an SQLite database" in by_name["broken.db"]["error"]


@pytest.mark.parametrize(
    ("text", "kind", "expected"),
    [
        ("10-20", "range", (10, 20)),
        (" 3 - 3 ", "range", (3, 3)),
        ("1,5,10", "list", (1, 5, 10)),
        ("7", "list", (7,)),
        ("5,5,2", "list", (5, 2)),
        ("all", "all", None),
        ("", "all", None),
        ("completed", "status", "completed"),
        ("error", "status", "error"),
        ("ERROR", "status", "error"),
    ],
)
def test_index_query_accepted(text, kind, expected):
    query = parse_index_query(text)
    assert query.kind == kind
    if kind == "range":
        assert (query.start, query.stop) == expected
    elif kind == "list":
        assert query.indices == expected
    elif kind == "status":
        assert query.status == expected


@pytest.mark.parametrize("text", ["10-", "a,b", "5-2", "-3", "1,,2", "1-2-3", "completed,1", "1.5"])
def test_index_query_rejected_with_forms(text):
    with pytest.raises(IndexQueryError, match=r"Accepted forms: '10-20' \(a range\), '1,5,10'"):
        parse_index_query(text)


def test_index_query_backwards_range_says_so():
    with pytest.raises(IndexQueryError, match="runs backwards"):
        parse_index_query("5-2")


def test_index_query_sql_selects_rows(tmp_path):
    db = write_store(tmp_path / "q.db", 30, error_every=10)
    conn = sqlite3.connect(db)
    try:
        for text, expected in [
            ("10-12", [10, 11, 12]),
            ("1,5,29", [1, 5, 29]),
            ("error", [9, 19, 29]),
            ("all", list(range(30))),
        ]:
            where, params = parse_index_query(text).sql()
            rows = [r[0] for r in conn.execute(f"SELECT idx FROM indices WHERE {where} ORDER BY idx", params)]  # noqa: S608
            assert rows == expected, text
        where, params = parse_index_query("completed").sql()
        assert conn.execute(f"SELECT count(*) FROM indices WHERE {where}", params).fetchone()[0] == 27  # noqa: S608
    finally:
        conn.close()
