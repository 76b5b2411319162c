"""Small pipeline components shared by the core tests (importable by worker processes)."""

from __future__ import annotations

import os
import time
from pathlib import Path

from physicsnemo_curator import Filter, Sink, Source


class RangeSource(Source[int]):
    """Yields ``i`` for index ``i``; optionally sleeps, counts its calls, or fails (while a marker file exists)."""

    name = "range"

    def __init__(
        self,
        n: int = 10,
        sleep: float = 0.0,
        fail_on: list[int] | None = None,
        count_dir: str | None = None,
        fail_while: str | None = None,
    ) -> None:
        self.n = n
        self.sleep = sleep
        self.fail_on = list(fail_on or [])
        self.count_dir = count_dir
        self.fail_while = fail_while

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, index: int):
        if self.count_dir:
            Path(self.count_dir, f"{index}-{os.getpid()}-{time.perf_counter_ns()}").touch()
        if self.sleep:
            time.sleep(self.sleep)
        if index in self.fail_on and (self.fail_while is None or os.path.exists(self.fail_while)):
            raise ValueError(f"index {index} is broken <b>bold</b>")
        yield index


class SleepFilter(Filter[int]):
    name = "sleepy"

    def __init__(self, sleep: float = 0.0) -> None:
        self.sleep = sleep

    def __call__(self, items):
        for item in items:
            if self.sleep:
                time.sleep(self.sleep)
            yield item


class AllocFilter(Filter[int]):
    """Allocates ``megabytes`` of Python memory (a bytearray) per item."""

    name = "alloc"

    def __init__(self, megabytes: int = 20) -> None:
        self.megabytes = megabytes

    def __call__(self, items):
        for item in items:
            block = bytearray(self.megabytes * 1024 * 1024)
            block[::4096] = b"x" * len(block[::4096])
            del block
            yield item


class TextSink(Sink[int]):
    """Writes ``<index>.txt`` with the item, and returns its path."""

    name = "text"

    def __init__(self, output_dir: str, sleep: float = 0.0) -> None:
        self.output_dir = output_dir
        self.sleep = sleep

    def __call__(self, items, index):
        paths = []
        for item in items:
            if self.sleep:
                time.sleep(self.sleep)
            path = Path(self.output_dir) / f"{index}.txt"
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(str(item))
            paths.append(str(path))
        return paths


class NullSink(Sink[int]):
    name = "null"

    def __call__(self, items, index):
        return [f"out/{index}.bin" for _ in items]
