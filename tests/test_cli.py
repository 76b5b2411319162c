"""The ``psnc`` command line: help for every subcommand, clean errors, runs and metrics."""

from __future__ import annotations

import argparse
import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from physicsnemo_curator import cli
from physicsnemo_curator.dashboard._synthetic import write_store

PSNC = Path(sys.executable).with_name("psnc")


def _subcommands() -> dict[str, argparse.ArgumentParser]:
    parser = cli.build_parser()
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            return dict(action.choices)
    raise AssertionError("psnc has no subcommands")


@pytest.fixture
def cache(tmp_path, monkeypatch):
    directory = tmp_path / "cache"
    directory.mkdir()
    monkeypatch.setenv("PSNC_CACHE_DIR", str(directory))
    return directory


def test_console_script_help():
    result = subprocess.run([str(PSNC), "--help"], capture_output=True, text=True, timeout=60, check=False)
    assert result.returncode == 0, result.stderr
    for name in ("dashboard", "runs", "metrics", "demo"):
        assert name in result.stdout


def test_every_subcommand_has_help(capsys):
    commands = _subcommands()
    assert set(commands) >= {"dashboard", "runs", "metrics", "demo"}
    parser = cli.build_parser()
    listed = {a.dest: a.help for a in parser._actions if isinstance(a, argparse._SubParsersAction)}
    assert listed
    choices = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))._choices_actions
    helps = {c.dest: c.help for c in choices}
    for name in commands:
        assert helps.get(name), f"subcommand {name} has no help line"
        with pytest.raises(SystemExit) as info:
            cli.main([name, "--help"])
        assert info.value.code == 0
        out = capsys.readouterr().out
        assert out.startswith(f"usage: psnc {name}"), out
        assert len(out.splitlines()) > 2


def test_dashboard_help_lists_options(capsys):
    with pytest.raises(SystemExit):
        cli.main(["dashboard", "--help"])
    out = capsys.readouterr().out
    for option in ("--port", "--host", "--no-browser", "127.0.0.1", "5006"):
        assert option in out


def test_no_command_prints_help(capsys):
    assert cli.main([]) == cli.EXIT_USAGE
    assert "usage: psnc" in capsys.readouterr().out


def test_missing_store_is_one_clean_line(cache):
    result = subprocess.run(
        [str(PSNC), "dashboard", "--no-browser", "a1b2"],
        capture_output=True, text=True, timeout=60, check=False, env={**os.environ, "PSNC_CACHE_DIR": str(cache)},
    )
    assert result.returncode == cli.EXIT_USAGE
    assert "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("psnc: error: No run store matches 'a1b2'")
    assert str(cache) in lines[0]


def test_not_a_store_and_ambiguous_are_clean(cache, tmp_path, capsys):
    bad = tmp_path / "bad.db"
    bad.write_text("plain text, not SQLite" * 10)
    assert cli.main(["metrics", str(bad)]) == cli.EXIT_USAGE
    err = capsys.readouterr().err
    assert "not an SQLite database" in err
    assert "Traceback" not in err
    write_store(cache / "abcd000000000000.db", 1)
    write_store(cache / "abcd111111111111.db", 1)
    assert cli.main(["metrics", "abcd"]) == cli.EXIT_USAGE
    err = capsys.readouterr().err
    assert "ambiguous" in err
    assert "abcd000000000000.db" in err
    assert "abcd111111111111.db" in err


def test_runs_lists_stores(cache, capsys):
    write_store(cache / "a1b2c3d4e5f60718.db", 12, error_every=4, source_name="Alpha")
    write_store(cache / "ffee000011112222_20260101T000000_000000Z.db", 3, source_name="Beta")
    assert cli.main(["runs"]) == 0
    out = capsys.readouterr().out
    header, *rows = [line for line in out.splitlines() if line.strip()]
    assert header.split()[:5] == ["HASH", "SOURCE", "COMPLETED", "FAILED", "TOTAL"]
    alpha = next(r for r in rows if "Alpha" in r).split()
    assert alpha[:5] == ["0123456789abcdef", "Alpha", "9", "3", "12"]
    assert "2 run store(s) in" in out


def test_runs_empty_dir(cache, capsys):
    assert cli.main(["runs"]) == 0
    assert "No run stores in" in capsys.readouterr().out


def test_metrics_console_json_csv(cache, tmp_path, capsys):
    db = write_store(cache / "a1b2c3d4e5f60718.db", 6, error_every=3)
    assert cli.main(["metrics", str(db)]) == 0
    assert capsys.readouterr().out.strip()

    out_json = tmp_path / "m.json"
    assert cli.main(["metrics", "a1b2", "--json", str(out_json)]) == 0
    data = json.loads(out_json.read_text())
    assert "6" in capsys.readouterr().out
    assert data

    out_csv = tmp_path / "m.csv"
    assert cli.main(["metrics", str(db), "--csv", str(out_csv)]) == 0
    rows = list(csv.DictReader(out_csv.open()))
    assert len(rows) == 6


def test_metrics_json_and_csv_are_exclusive(cache, capsys):
    with pytest.raises(SystemExit) as info:
        cli.main(["metrics", "x", "--json", "a", "--csv", "b"])
    assert info.value.code == 2


def test_demo_without_atm_extra_names_it(monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "physicsnemo_curator.domains.atm.demo", None)
    package = sys.modules.get("physicsnemo_curator.domains.atm")
    if package is not None:
        monkeypatch.delattr(package, "demo", raising=False)
    assert cli.main(["demo"]) == cli.EXIT_FAILURE
    err = capsys.readouterr().err
    assert "'atm' extra" in err
    assert 'pip install "physicsnemo-curator[atm]"' in err
    assert "Traceback" not in err


def test_metrics_reads_without_writing(cache):
    db = write_store(cache / "a1b2c3d4e5f60718.db", 4)
    before = db.read_bytes()
    assert cli.main(["metrics", str(db)]) == 0
    assert db.read_bytes() == before


def test_dashboard_on_busy_port_is_one_clean_line(cache, tmp_path):
    import socket

    db = write_store(tmp_path / "busy.db", 3)
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        port = taken.getsockname()[1]
        result = subprocess.run(
            [str(PSNC), "dashboard", str(db), "--port", str(port), "--no-browser"],
            capture_output=True, text=True, timeout=120, check=False,
        )
    assert result.returncode == cli.EXIT_FAILURE
    assert "Traceback" not in result.stderr
    assert f"psnc: error: port {port} on 127.0.0.1 is already in use" in result.stderr


def test_bad_output_and_port_are_clean(cache, tmp_path, capsys):
    db = write_store(cache / "a1b2c3d4e5f60718.db", 3)

    assert cli.main(["metrics", str(db), "--csv", str(tmp_path)]) != 0
    err = capsys.readouterr().err
    assert err.startswith("psnc: error: IsADirectoryError")
    assert "Traceback" not in err

    with pytest.raises(SystemExit) as exited:
        cli.main(["dashboard", str(db), "--port", "99999"])
    assert exited.value.code == 2
    assert "invalid port 99999" in capsys.readouterr().err
