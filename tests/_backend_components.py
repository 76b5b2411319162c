"""Pipeline components for the backend, crash and heartbeat tests.

They live in an importable module (not in a test file) so that worker
processes started by loky and Dask can unpickle them. Every execution of an
index leaves a file in ``marker_dir``, so tests count what really ran.
"""

from __future__ import annotations

import logging
import os
import time
import uuid
import warnings
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any

from physicsnemo_curator.core.base import Filter, Sink, Source

logger = logging.getLogger("psnc_tests.components")


class RangeSource(Source[dict]):
    """Indices ``0 .. n-1``; index ``i`` yields one item ``{"index": i, "value": i * i}``."""

    def __init__(self, n: int, groups: list[list[int]] | None = None) -> None:
        self.n = n
        self.groups = groups

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, index: int) -> Iterator[dict]:
        yield {"index": index, "value": index * index}

    def partition_indices(self, indices: Sequence[int]) -> list[list[int]] | None:
        return self.groups


class MarkFilter(Filter[dict]):
    """Leaves ``<index>.<pid>.<uuid>.ran`` in ``marker_dir`` for every index it runs.

    On ``pause_index`` it writes its pid to ``<marker_dir>/paused-<index>.pid`` and
    sleeps ``pause_seconds`` (a test kills it or watches its heartbeat), once:
    when that file exists, the index runs without pausing. On
    ``log_index`` it logs one warning, and ``warn_count`` Python warnings.
    ``fail_index`` raises ValueError.
    """

    def __init__(
        self,
        marker_dir: str,
        pause_index: int = -1,
        pause_seconds: float = 0.0,
        log_index: int = -1,
        warn_count: int = 0,
        fail_index: int = -1,
        delay: float = 0.0,
    ) -> None:
        self.marker_dir = marker_dir
        self.pause_index = pause_index
        self.pause_seconds = pause_seconds
        self.log_index = log_index
        self.warn_count = warn_count
        self.fail_index = fail_index
        self.delay = delay

    def __call__(self, items: Iterable[dict]) -> Iterator[dict]:
        for item in items:
            index = item["index"]
            Path(self.marker_dir, f"{index}.{os.getpid()}.{uuid.uuid4().hex}.ran").touch()
            if self.delay:
                time.sleep(self.delay)
            if index == self.log_index:
                logger.warning("index %d looks odd", index)
                for k in range(self.warn_count):
                    # The marker directory keeps the text unique per run: Python shows
                    # a repeated warning only once per process, and workers are reused.
                    warnings.warn(f"odd value number {k} ({self.marker_dir})", UserWarning, stacklevel=1)
            target = Path(self.marker_dir, f"paused-{index}.pid")
            if index == self.pause_index and not target.exists():
                tmp = target.with_suffix(".tmp")
                tmp.write_text(str(os.getpid()))
                tmp.rename(target)
                time.sleep(self.pause_seconds)
            if index == self.fail_index:
                raise ValueError(f"index {index} is bad")
            yield {"index": index, "value": item["value"] + 1}


class ShardFilter(Filter[dict]):
    """Sums values per worker; :meth:`flush` writes the sum to a shard file, :meth:`merge` adds the shards."""

    def __init__(self, shard_dir: str) -> None:
        self.shard_dir = shard_dir
        self._total = 0
        self._count = 0

    def __call__(self, items: Iterable[dict]) -> Iterator[dict]:
        for item in items:
            self._total += item["value"]
            self._count += 1
            yield item

    def flush(self) -> list[str]:
        if not self._count:
            return []
        path = Path(self.shard_dir, f"shard-{os.getpid()}-{uuid.uuid4().hex[:8]}.txt")
        path.write_text(f"{self._total} {self._count}")
        self._total = self._count = 0
        return [str(path)]

    @classmethod
    def merge(cls, shard_paths: Sequence[str], config: dict[str, Any]) -> list[str]:
        total = count = 0
        for shard in shard_paths:
            value, n = Path(shard).read_text().split()
            total += int(value)
            count += int(n)
        out = Path(config["shard_dir"], "merged.txt")
        out.write_text(f"{total} {count}")
        return [str(out)]


class TextSink(Sink[dict]):
    """Writes one small text file per index and returns its path."""

    def __init__(self, out_dir: str) -> None:
        self.out_dir = out_dir

    def __call__(self, items: Iterable[dict], index: int) -> list[str]:
        path = Path(self.out_dir, f"{index:06d}.txt")
        values = [str(item["value"]) for item in items]
        path.write_text(" ".join(values))
        return [str(path)]


class NullSink(Sink[dict]):
    """Consumes the items and writes nothing."""

    def __call__(self, items: Iterable[dict], index: int) -> list[str]:
        for _ in items:
            pass
        return []


def ran_indices(marker_dir: str | os.PathLike[str]) -> list[int]:
    """Every index execution recorded in ``marker_dir`` (an index run twice appears twice)."""
    return sorted(int(p.name.split(".", 1)[0]) for p in Path(marker_dir).glob("*.ran"))
