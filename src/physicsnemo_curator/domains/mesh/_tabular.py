"""Filters that record one table row per item and keep the rows as Parquet shards.

Each worker writes its own shard files, so parallel workers never write the
same file:

- ``__call__`` computes a row per item (:meth:`TabularStatsFilter.row`) and
  passes the item on unchanged;
- ``artifacts()``, called by the runner after each index, writes the rows of
  that index into the worker's current shard (an atomic rewrite of at most
  :attr:`TabularStatsFilter.rows_per_shard` rows, so the cost per index is
  bounded) and reports the shard's path for the index; a row is on disk
  before its index is recorded as completed;
- ``flush()``, called when a worker finishes, returns every shard it wrote;
- ``merge(shard_paths, config)``, called once by ``gather_pipeline``,
  concatenates the shards into the ``output`` file, keeping the newest row of
  an index that ran more than once (a retried failure, a resumed run).

Shards live next to the output: ``<output stem>.shards/<worker token>-<n>.parquet``.
"""

from __future__ import annotations

import html
import logging
import os
import socket
import time
import uuid
from collections.abc import Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any, ClassVar, TypeVar

from physicsnemo_curator.core.base import Filter, Param
from physicsnemo_curator.core.execute import current_index

logger = logging.getLogger(__name__)

T = TypeVar("T")

KEY_COLUMNS = ("index", "item")
"""Columns that identify a row: the pipeline index and the item's position within it."""

PYARROW_HINT = 'pip install pyarrow (or pip install "physicsnemo-curator[atm]")'


def _pyarrow() -> tuple[Any, Any]:
    try:
        import pyarrow as pa
        import pyarrow.parquet as pq
    except ImportError as exc:
        raise ImportError(f"Writing statistics to Parquet needs pyarrow: {PYARROW_HINT}.") from exc
    return pa, pq


def shard_dir(output: str | os.PathLike[str]) -> Path:
    """Return the folder that holds the shards of the output file ``output``."""
    path = Path(output)
    return path.with_name(f"{path.stem}.shards")


def rows_to_table(rows: Sequence[Mapping[str, Any]]) -> Any:
    """Build a pyarrow table from dict rows whose keys may differ (missing values become null)."""
    pa, _ = _pyarrow()
    columns: dict[str, list[Any]] = {}
    for position, row in enumerate(rows):
        for key, value in row.items():
            column = columns.get(key)
            if column is None:
                column = columns[key] = [None] * position
            column.append(value)
        for column in columns.values():
            if len(column) == position:
                column.append(None)
    return pa.table(columns)


def write_table_atomic(table: Any, path: Path) -> None:
    """Write ``table`` to ``path`` through a temporary file, so readers never see half a file."""
    _, pq = _pyarrow()
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    pq.write_table(table, tmp)
    os.replace(tmp, path)


def read_tables(paths: Iterable[str | os.PathLike[str]]) -> tuple[Any, list[str]]:
    """Read and combine the Parquet files at ``paths``, newest row per key.

    Returns ``(table, problems)``: ``table`` is ``None`` when no file could be
    read; ``problems`` has one line per path that was missing or unreadable.
    Duplicate paths are read once.
    """
    pa, pq = _pyarrow()
    tables = []
    problems: list[str] = []
    for path in dict.fromkeys(str(p) for p in paths):
        try:
            tables.append(pq.read_table(path))
        except FileNotFoundError:
            problems.append(f"{path}: file not found")
        except Exception as exc:  # noqa: BLE001 - any unreadable file is reported, not raised
            problems.append(f"{path}: {type(exc).__name__}: {exc}")
    if not tables:
        return None, problems
    table = pa.concat_tables(tables, promote_options="permissive")
    return _newest_per_key(table), problems


def _newest_per_key(table: Any) -> Any:
    import pyarrow.compute as pc

    if not all(name in table.column_names for name in KEY_COLUMNS) or table.num_rows == 0:
        return table
    if "recorded_at" in table.column_names:
        table = table.take(pc.sort_indices(table, sort_keys=[("recorded_at", "ascending")]))
    keys = zip(*(table.column(name).to_pylist() for name in KEY_COLUMNS), strict=True)
    newest: dict[Any, int] = {}
    unkeyed: list[int] = []
    for row, key in enumerate(keys):
        if key[0] is None:
            unkeyed.append(row)
        else:
            newest[key] = row
    table = table.take(sorted([*newest.values(), *unkeyed]))
    return table.take(pc.sort_indices(table, sort_keys=[(name, "ascending") for name in KEY_COLUMNS]))


def holoviews_bokeh() -> Any:
    """Import HoloViews with its Bokeh plotting backend loaded (no notebook side effects)."""
    import holoviews as hv
    import holoviews.plotting.bokeh  # noqa: F401 - registers the renderer that .opts() and panes need

    return hv


def message_panel(title: str, detail: str = "") -> Any:
    """Return a Panel pane that shows a short message; all text is HTML-escaped."""
    import panel as pn

    body = f"<strong>{html.escape(title)}</strong>"
    if detail:
        body += f"<pre style='white-space: pre-wrap; margin: 0.5em 0 0 0'>{html.escape(detail)}</pre>"
    return pn.pane.HTML(
        f"<div class='psnc-filter-message' style='padding: 0.75em 1em; border-left: 4px solid #76b900; background: rgba(118,185,0,0.08)'>{body}</div>",
        sizing_mode="stretch_width",
    )


class TabularStatsFilter(Filter[T]):
    """Base class of filters that record one row of statistics per item to Parquet.

    Subclasses implement :meth:`row`. Rows get the columns ``index`` (from the
    item, see :meth:`index_of`), ``item`` (position of the item within its
    index) and ``recorded_at`` (Unix seconds).

    Parameters
    ----------
    output : str
        Path of the merged Parquet file that ``gather_pipeline`` writes.
    """

    rows_per_shard: ClassVar[int] = 256
    """Rows per shard file; a worker starts a new shard when the current one is full."""

    def __init__(self, output: str | os.PathLike[str]) -> None:
        self.output = str(output)
        self._reset_worker_state()

    @classmethod
    def params(cls) -> list[Param]:
        return [Param("output", str, description="Parquet file the merged statistics are written to.")]

    # -- per item -----------------------------------------------------

    def row(self, item: T) -> dict[str, Any]:
        """Return the statistics of one item as a flat dict of scalars."""
        raise NotImplementedError(f"{type(self).__name__} must implement row(item)")

    def index_of(self, item: T) -> int | None:
        """Return the pipeline index an item belongs to: as its source recorded it, else the one running."""
        for attribute in ("metadata", "info"):
            mapping = getattr(item, attribute, None)
            if isinstance(mapping, Mapping):
                for key in ("index", "psnc_index"):
                    if key in mapping and mapping[key] is not None:
                        return int(mapping[key])
        return current_index()

    def __call__(self, items: Iterable[T]) -> Iterator[T]:
        if self._pending and self._reported:
            # The runner calls artifacts() after every index that succeeds, so
            # rows still pending when the next index starts belong to one that
            # failed in a later stage; its retry will record them again.
            logger.debug("%s dropped %d row(s) of a failed index", type(self).__name__, len(self._pending))
            self._pending = []
        for position, item in enumerate(items):
            row = {"index": self.index_of(item), "item": position}
            row.update(self.row(item))
            row["recorded_at"] = time.time()
            self._pending.append(row)
            yield item

    # -- lifecycle ----------------------------------------------------

    def artifacts(self) -> list[str]:
        """Write the rows of the index that just ran into this worker's shard; return its path."""
        self._reported = True
        if not self._pending:
            return []
        return self._write_pending()

    def flush(self) -> list[str]:
        """Write any rows still buffered and return every shard this worker wrote.

        The next rows this object sees go to new shards, so a second run in
        the same process never overwrites the first run's files.
        """
        if self._pending:
            self._write_pending()
        written = list(self._written)
        self._reset_worker_state()
        return written

    @classmethod
    def merge(cls, shard_paths: Sequence[str], config: Mapping[str, Any]) -> list[str]:
        """Combine worker shards into the ``output`` file named in ``config``; return ``[output]``.

        ``config`` is the filter's configuration (``{"output": ...}``, or a
        saved component entry with ``"params"``). Rows of an index seen more
        than once keep their newest version. Unreadable shards are skipped
        with a warning; with no readable shard nothing is written and ``[]``
        is returned.
        """
        params = config.get("params", config) if isinstance(config, Mapping) else {}
        output = params.get("output") if isinstance(params, Mapping) else None
        if not output:
            raise ValueError(f"{cls.__name__}.merge needs the filter's output path in config, got {config!r}.")
        output_path = Path(output)
        shard_paths = [p for p in shard_paths if Path(p) != output_path]
        if not shard_paths:
            return []
        table, problems = read_tables(shard_paths)
        for problem in problems:
            logger.warning("%s.merge skipped a shard: %s", cls.__name__, problem)
        if table is None:
            return []
        started = time.perf_counter()
        write_table_atomic(table, output_path)
        logger.info(
            "%s merged %d shards (%d rows) into %s in %.3f s", cls.__name__, len(shard_paths), table.num_rows, output_path, time.perf_counter() - started
        )
        return [str(output_path)]

    # -- internals ----------------------------------------------------

    def _reset_worker_state(self) -> None:
        self._pending: list[dict[str, Any]] = []
        self._shard_rows: list[dict[str, Any]] = []
        self._shard_path: Path | None = None
        self._shard_count = 0
        self._token: str | None = None
        self._written: list[str] = []
        self._reported = False

    def _write_pending(self) -> list[str]:
        # The token is made on first write, in the worker, so copies of this
        # filter sent to different processes never share a shard name.
        if self._token is None:
            host = "".join(c if c.isalnum() else "-" for c in socket.gethostname())[:32]
            self._token = f"{host}-{os.getpid()}-{uuid.uuid4().hex[:8]}"
        if self._shard_path is None or len(self._shard_rows) >= self.rows_per_shard:
            self._shard_path = shard_dir(self.output) / f"{self._token}-{self._shard_count:05d}.parquet"
            self._shard_count += 1
            self._shard_rows = []
        self._shard_rows.extend(self._pending)
        write_table_atomic(rows_to_table(self._shard_rows), self._shard_path)
        self._pending = []
        path = str(self._shard_path)
        if path not in self._written:
            self._written.append(path)
        return [path]

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        for key in ("_pending", "_shard_rows", "_shard_path", "_shard_count", "_token", "_written", "_reported"):
            state.pop(key, None)
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._reset_worker_state()
