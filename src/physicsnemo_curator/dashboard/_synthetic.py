"""Synthetic run stores of any size, written straight into the schema.

Used by the dashboard's tests, benchmarks and example notebook to get a store
with known content in milliseconds: every row is written in one transaction,
following :mod:`physicsnemo_curator.core.schema`.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from physicsnemo_curator.core.store import open_writable

DEFAULT_STAGES = (("source", "source"), ("Normalize", "filter"), ("MeanFilter", "filter"), ("sink", "sink"))


def _fill(pattern: str, index: int) -> str:
    # Plain replacement, not str.format, so patterns may contain any braces.
    return pattern.replace("{idx}", str(index)).replace("{idx:07d}", f"{index:07d}")


def write_store(
    path: str | os.PathLike[str],
    n: int,
    *,
    total: int | None = None,
    error_every: int = 0,
    stages: Sequence[tuple[str, str]] = DEFAULT_STAGES,
    source_name: str = "SyntheticSource",
    config: dict | None = None,
    host: str = "localhost",
    error_message: str = "synthetic failure on index {idx}",
    output_pattern: str = "/data/out/{idx:07d}.npz",
    artifact_paths: dict[int, Sequence[str]] | None = None,
    flush_artifacts: dict[int, Sequence[str]] | None = None,
    n_workers: int = 2,
    running: bool = False,
    seed: int = 0,
    start: int = 0,
    with_gpu: bool = False,
) -> Path:
    """Write a run store with indices ``start .. start + n - 1``.

    Parameters
    ----------
    path : str or Path
        The database file; created (with its schema) when missing, extended when present.
    n : int
        How many indices to record.
    total : int, optional
        The source length recorded in ``meta`` (default ``start + n``).
    error_every : int
        Every ``error_every``-th index fails (0: none fail).
    artifact_paths : dict, optional
        ``{stage position: [paths]}`` recorded for every index (``{idx}`` is formatted).
    flush_artifacts : dict, optional
        ``{stage position: [paths]}`` recorded as worker flushes (``idx`` NULL).
    running : bool
        Leave the run's status as ``running`` with fresh worker heartbeats.
    """
    path = Path(path)
    conn = open_writable(path)
    rng = np.random.default_rng(seed + start)
    now = time.time()
    try:
        conn.execute("BEGIN IMMEDIATE")
        known = dict(conn.execute("SELECT key, value FROM meta").fetchall())
        if "config_hash" not in known:
            cfg = config or {"source": {"type": f"synthetic:{source_name}", "params": {}}, "filters": [], "sink": None}
            conn.executemany(
                "INSERT OR REPLACE INTO meta (key, value) VALUES (?, ?)",
                [
                    ("config_hash", "0123456789abcdef" * 4),
                    ("config", json.dumps(cfg)),
                    ("source_name", source_name),
                    ("created_at", repr(now - 60)),
                    ("generation", "0"),
                ],
            )
            conn.executemany(
                "INSERT INTO stages (position, name, kind) VALUES (?,?,?)",
                [(i, name, kind) for i, (name, kind) in enumerate(stages)],
            )
        conn.execute(
            "INSERT OR REPLACE INTO meta (key, value) VALUES ('total', ?)", (str(total if total is not None else start + n),)
        )
        run = conn.execute("SELECT max(run_id) FROM runs").fetchone()[0]
        if run is None:
            run = conn.execute(
                "INSERT INTO runs (started_at, finished_at, status, backend, n_jobs, requested, host, pid) "
                "VALUES (?,?,?,?,?,?,?,?)",
                (now - 60, None if running else now, "running" if running else "finished", "process_pool",
                 n_workers, total if total is not None else start + n, host, os.getpid()),
            ).lastrowid
        else:
            conn.execute(
                "UPDATE runs SET status=?, finished_at=? WHERE run_id=?",
                ("running" if running else "finished", None if running else now, run),
            )
        if conn.execute("SELECT count(*) FROM workers").fetchone()[0] == 0:
            conn.executemany(
                "INSERT INTO workers (run_id, pid, host, backend, started_at, heartbeat_at, status, current_index, n_done) "
                "VALUES (?,?,?,?,?,?,?,?,?)",
                [(run, 1000 + w, host, "process_pool", now - 60, now, "busy" if running else "stopped", None, 0)
                 for w in range(n_workers)],
            )
        else:
            conn.execute("UPDATE workers SET heartbeat_at=?, status=?", (now, "busy" if running else "stopped"))

        idx = np.arange(start, start + n, dtype=np.int64)
        n_stages = len(stages)
        stage_ns = rng.gamma(2.0, 2e6, size=(n, n_stages)).astype(np.int64) + 1000
        wall = stage_ns.sum(axis=1) + rng.integers(0, 100_000, size=n)
        peak = rng.lognormal(16, 1.0, size=n).astype(np.int64)
        rss = peak + 50_000_000
        gpu = rng.lognormal(20, 0.5, size=n).astype(np.int64) if with_gpu else None
        started = now - 60 + (idx - start) * (60.0 / max(n, 1))
        failed = np.zeros(n, dtype=bool) if error_every <= 0 else (idx % error_every == error_every - 1)
        worker = (idx % n_workers) + 1
        rows = []
        for i in range(n):
            ix = int(idx[i])
            bad = bool(failed[i])
            rows.append((
                ix, "error" if bad else "completed", run, int(worker[i]), float(started[i]), int(wall[i]), int(wall[i]) // 2,
                int(peak[i]), int(rss[i]), None if gpu is None else int(gpu[i]),
                "ValueError" if bad else None,
                _fill(error_message, ix) if bad else None,
                ("Traceback (most recent call last):\n  ...\nValueError: " + _fill(error_message, ix)) if bad else None,
            ))
        conn.executemany(
            "INSERT OR REPLACE INTO indices (idx, status, run_id, worker_id, started_at, wall_ns, cpu_ns, peak_mem, "
            "rss_peak, gpu_mem, error_type, error_message, traceback) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?)",
            rows,
        )
        del rows
        ok = ~failed
        conn.executemany(
            "INSERT OR REPLACE INTO stage_times (idx, position, wall_ns, cpu_ns) VALUES (?,?,?,?)",
            ((int(idx[i]), p, int(stage_ns[i, p]), int(stage_ns[i, p]) // 2) for i in range(n) if ok[i] for p in range(n_stages)),
        )
        if output_pattern:
            conn.executemany(
                "INSERT INTO outputs (idx, path) VALUES (?,?)",
                ((int(idx[i]), _fill(output_pattern, int(idx[i]))) for i in range(n) if ok[i]),
            )
        if artifact_paths:
            conn.executemany(
                "INSERT INTO artifacts (idx, position, worker_id, path) VALUES (?,?,?,?)",
                ((int(idx[i]), pos, int(worker[i]), _fill(p, int(idx[i])))
                 for i in range(n) if ok[i] for pos, paths in artifact_paths.items() for p in paths),
            )
        if flush_artifacts:
            conn.executemany(
                "INSERT INTO artifacts (idx, position, worker_id, path) VALUES (NULL,?,?,?)",
                [(pos, 1, p) for pos, paths in flush_artifacts.items() for p in paths],
            )
        conn.execute("UPDATE workers SET n_done = n_done + ? ", (n // max(n_workers, 1),))
        conn.execute("COMMIT")
    except BaseException:
        try:
            conn.execute("ROLLBACK")
        finally:
            conn.close()
        raise
    conn.close()
    return path
