"""The run store's SQLite schema and its forward-only migrations.

One database file holds one pipeline configuration's runs. The schema is a
public contract, readable with any SQLite client:

``meta(key, value)``
    ``config_hash``, ``config`` (the pipeline configuration as JSON),
    ``source_name``, ``total`` (``len(source)``), ``created_at`` (Unix seconds)
    and ``generation`` (bumped by every reset, so readers know to reload).
``runs(run_id, started_at, finished_at, status, backend, n_jobs, requested, host, pid)``
    One row per ``run_pipeline`` call; ``status`` is ``running``,
    ``finished``, ``failed`` or ``interrupted``.
``stages(position, name, kind)``
    The pipeline's stages in order: ``source``, each filter, ``sink``;
    ``kind`` is ``source``, ``filter`` or ``sink``. Repeated names are kept.
``workers(worker_id, run_id, pid, host, backend, started_at, heartbeat_at, status, current_index, n_done, ended_at, exit_reason)``
    ``status`` is ``idle``, ``busy``, ``stopped`` or ``dead``; a watcher
    calls a worker stale when ``heartbeat_at`` is older than a few heartbeat
    periods.
``indices(seq, idx, status, run_id, worker_id, started_at, wall_ns, cpu_ns, peak_mem, rss_peak, gpu_mem, error_type, error_message, traceback, exception)``
    One row per recorded index; ``seq`` grows with every write, so readers
    fetch ``seq > cursor``. ``status`` is ``completed`` or ``error``.
    Times are nanoseconds, memory is bytes (``peak_mem``: tracemalloc peak
    above the index's starting point; ``rss_peak``: the process's peak
    resident set size during the index; ``gpu_mem``: CUDA peak above the
    starting allocation). ``exception`` is the pickled exception, when it
    pickles.
``stage_times(idx, position, wall_ns, cpu_ns)``
    The own time of each stage of an index (chain subtraction).
``outputs(idx, path)``
    The paths a sink returned for an index.
``artifacts(idx, position, worker_id, path)``
    Files written by the filter at stage ``position``; ``idx`` is NULL for
    files written by a worker's final flush.
``logs(seq, ts, idx, worker_id, level, logger, message)``
    Warnings and log records emitted by components while an index ran.
"""

from __future__ import annotations

SCHEMA_VERSION = 1

APPLICATION_ID = 0x70736E63  # "psnc"


_V1 = """
        CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT) WITHOUT ROWID;
        CREATE TABLE runs (
            run_id INTEGER PRIMARY KEY,
            started_at REAL NOT NULL,
            finished_at REAL,
            status TEXT NOT NULL,
            backend TEXT,
            n_jobs INTEGER,
            requested INTEGER,
            host TEXT,
            pid INTEGER
        );
        CREATE TABLE stages (
            position INTEGER PRIMARY KEY,
            name TEXT NOT NULL,
            kind TEXT NOT NULL
        );
        CREATE TABLE workers (
            worker_id INTEGER PRIMARY KEY,
            run_id INTEGER,
            pid INTEGER,
            host TEXT,
            backend TEXT,
            started_at REAL,
            heartbeat_at REAL,
            status TEXT,
            current_index INTEGER,
            n_done INTEGER DEFAULT 0,
            ended_at REAL,
            exit_reason TEXT
        );
        CREATE TABLE indices (
            seq INTEGER PRIMARY KEY AUTOINCREMENT,
            idx INTEGER NOT NULL UNIQUE,
            status TEXT NOT NULL,
            run_id INTEGER,
            worker_id INTEGER,
            started_at REAL,
            wall_ns INTEGER,
            cpu_ns INTEGER,
            peak_mem INTEGER,
            rss_peak INTEGER,
            gpu_mem INTEGER,
            error_type TEXT,
            error_message TEXT,
            traceback TEXT,
            exception BLOB
        );
        CREATE TABLE stage_times (
            idx INTEGER NOT NULL,
            position INTEGER NOT NULL,
            wall_ns INTEGER,
            cpu_ns INTEGER,
            PRIMARY KEY (idx, position)
        ) WITHOUT ROWID;
        CREATE TABLE outputs (idx INTEGER NOT NULL, path TEXT NOT NULL);
        CREATE INDEX outputs_idx ON outputs (idx);
        CREATE INDEX outputs_path ON outputs (path);
        CREATE TABLE artifacts (
            idx INTEGER,
            position INTEGER NOT NULL,
            worker_id INTEGER,
            path TEXT NOT NULL
        );
        CREATE INDEX artifacts_idx ON artifacts (idx);
        CREATE TABLE logs (
            seq INTEGER PRIMARY KEY,
            ts REAL NOT NULL,
            idx INTEGER,
            worker_id INTEGER,
            level INTEGER NOT NULL,
            logger TEXT,
            message TEXT NOT NULL
        );
        CREATE INDEX logs_idx ON logs (idx);
"""


# Entry ``i`` is the SQL script that upgrades a database from version ``i`` to ``i + 1``.
MIGRATIONS: list[str] = [_V1]

assert len(MIGRATIONS) == SCHEMA_VERSION
