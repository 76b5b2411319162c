"""The ``psnc demo`` job on a small subset of the structures shipped with ASE."""

from __future__ import annotations

import argparse
import json
import math
import re
import socket
import subprocess
import sys
import urllib.request
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("ase")
pq = pytest.importorskip("pyarrow.parquet")

import ase.collections  # noqa: E402
import ase.io  # noqa: E402

import physicsnemo_curator.run  # noqa: E402
from physicsnemo_curator.core.pipeline_store import PipelineStore  # noqa: E402
from physicsnemo_curator.domains.atm import demo  # noqa: E402

FEW = "g2/H2O,g2/CH4,s22/Water_dimer,dcdft/Si,dcdft/Cu"


def _args(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="psnc demo")
    demo.add_arguments(parser)
    return parser.parse_args(list(argv))


def _structure(full_name: str):
    collection, name = full_name.split("#")[0].split("/")
    return getattr(ase.collections, collection)[name]


def _check_rows_against_ase(rows: list[dict], expected_names: list[str]) -> None:
    """Every structure has one row whose composition matches ASE's own copy of it."""
    assert sorted(r["name"] for r in rows) == sorted(expected_names)
    for row in rows:
        atoms = _structure(row["name"])
        assert row["n_atoms"] == len(atoms)
        counts = {s: atoms.get_chemical_symbols().count(s) for s in set(atoms.get_chemical_symbols())}
        assert json.loads(row["species"]) == counts
        assert row["periodic"] == bool(atoms.pbc.all())


def _db_of(out: Path) -> Path:
    (db,) = out.glob("demo-*.db")
    return db


def test_demo_options_have_the_documented_defaults():
    args = _args()
    assert (args.backend, args.n_jobs, args.out, args.no_serve, args.port) == ("process_pool", 2, "./psnc-demo", False, 5006)
    assert args.subset is None
    assert args.structures is None
    assert args.repeat is None
    assert _args("--no-serve", "--subset", "5").no_serve is True


def test_demo_spreads_the_collections_over_the_run(tmp_path):
    every = [f"{c}/{n}" for c, n in demo.build_pipeline(tmp_path).source.entries]
    subset = [f"{c}/{n}" for c, n in demo.build_pipeline(tmp_path, subset=12).source.entries]

    assert len(every) == len(set(every)) == 255
    assert {name.split("/")[0] for name in every[:20]} == {"g2", "s22", "dcdft"}  # crystals spread, not bunched at the end
    assert len(subset) == len(set(subset)) == 12
    assert {name.split("/")[0] for name in subset} == {"g2", "s22", "dcdft"}


def test_full_demo_covers_every_structure_several_times(tmp_path):
    pipeline = demo.build_pipeline(tmp_path, repeat=demo.DEFAULT_REPEAT)
    assert len(pipeline) == 255 * demo.DEFAULT_REPEAT
    assert pipeline.source.config()["names"] is None  # a compact configuration, not 255 names
    assert [type(f).__name__ for f in pipeline.filters] == ["AtomicStatsFilter", "SupercellRDFFilter"]
    assert Path(pipeline.db_path).parent == tmp_path


def test_demo_runs_sequentially_with_correct_values(tmp_path, capsys):
    out = tmp_path / "demo"
    argv = ["--no-serve", "--backend", "sequential", "--n-jobs", "1", "--out", str(out), "--structures", FEW, "--format", "extxyz", "--target-atoms", "100"]
    code = demo.run(_args(*argv))
    printed = capsys.readouterr().out

    assert code == 0, printed
    db = _db_of(out)
    assert "Curated 5 of 5 structures" in printed
    assert "Pipeline metrics: 5 indices (5 completed, 0 failed)" in printed
    for stage in ("source", "Atomic Statistics", "Supercell + RDF", "sink"):
        assert re.search(rf"^\s+{re.escape(stage)}\s+\d", printed, re.M), stage
    assert f"Database:   {db}" in printed
    assert f"Outputs:    {out / 'structures'}/ (5 files)" in printed
    assert f"Artifacts:  {out / 'artifacts' / 'atomic_stats.parquet'}" in printed

    with PipelineStore.from_db(db) as store:
        assert store.completed_indices() == [0, 1, 2, 3, 4]
    rows = pq.read_table(out / "artifacts" / "atomic_stats.parquet").to_pylist()
    assert len(rows) == 5
    _check_rows_against_ase(rows, FEW.split(","))

    # Water, against its g2 geometry computed here: 3 atoms, O-H about 0.97 Angstrom.
    (water,) = [r for r in rows if r["name"] == "g2/H2O"]
    oxygen, hydrogen = ase.collections.g2["H2O"].positions[:2]
    oh = float(np.linalg.norm(oxygen - hydrogen))
    assert water["n_atoms"] == 3
    assert water["formula"] == "H2O"
    assert oh == pytest.approx(0.97, abs=0.01)
    assert water["min_distance"] == pytest.approx(oh, abs=1e-9)
    assert math.isnan(water["density"])
    # Silicon: the diamond bond is a * sqrt(3) / 4 for the cubic cell of side a.
    (silicon,) = [r for r in rows if r["name"] == "dcdft/Si"]
    side = ase.collections.dcdft["Si"].cell.lengths()[0]
    assert silicon["min_distance"] == pytest.approx(side * math.sqrt(3) / 4, rel=1e-6)
    assert silicon["cell_volume"] == pytest.approx(side**3, rel=1e-6)

    written = sorted((out / "structures").glob("structure_*.extxyz"))
    assert len(written) == 5
    si_supercell = ase.io.read(written[3])
    assert len(si_supercell) >= 100
    assert si_supercell.info["rdf_kind"] == "g(r)"


@pytest.mark.slow
def test_demo_runs_with_process_pool_through_psnc(tmp_path):
    out = tmp_path / "demo"
    psnc = [sys.executable, "-c", "from physicsnemo_curator.cli import main; raise SystemExit(main())"]
    command = [*psnc, "demo", "--no-serve", "--subset", "12", "--out", str(out), "--format", "extxyz", "--target-atoms", "100"]

    done = subprocess.run(command, capture_output=True, text=True, timeout=300)

    assert done.returncode == 0, done.stdout + done.stderr
    assert "backend process_pool with 2 job(s)" in done.stdout
    assert "Curated 12 of 12 structures" in done.stdout
    with PipelineStore.from_db(_db_of(out)) as store:
        assert store.completed_indices() == list(range(12))
        pid_of_worker = {w["worker_id"]: w["pid"] for w in store.workers()}
        ran = {pid_of_worker[m.worker_id] for m in store.metrics().indices}
    assert len(pid_of_worker) == 2
    assert len(set(pid_of_worker.values())) == 2
    rows = pq.read_table(out / "artifacts" / "atomic_stats.parquet").to_pylist()
    assert [r["index"] for r in rows] == list(range(12))
    _check_rows_against_ase(rows, [f"{c}/{n}" for c, n in demo.build_pipeline(tmp_path, subset=12).source.entries])
    shards = sorted((out / "artifacts" / "atomic_stats.shards").glob("*.parquet"))
    assert {int(p.stem.rsplit("-", 3)[1]) for p in shards} == ran  # one shard per worker that ran structures


def test_demo_serves_the_dashboard_while_it_runs(tmp_path, capsys, monkeypatch):
    pytest.importorskip("panel")
    real_run = physicsnemo_curator.run.run_pipeline
    seen: dict[str, object] = {}

    def run_while_checking_the_page(*args, **kwargs):
        printed = capsys.readouterr().out
        seen["printed"] = printed
        url = re.search(r"dashboard: (http://127\.0\.0\.1:\d+/)", printed).group(1)
        with urllib.request.urlopen(url, timeout=60) as response:
            seen["status"] = response.status
            seen["page"] = response.read().decode()
        seen["url"] = url
        return real_run(*args, **kwargs)

    monkeypatch.setattr(physicsnemo_curator.run, "run_pipeline", run_while_checking_the_page)
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        code = demo.run(_args("--backend", "sequential", "--port", str(port), "--out", str(tmp_path), "--structures", "g2/H2O", "--format", "extxyz"))

    assert code == 0
    assert f"port {port} is taken" in seen["printed"]
    assert not seen["url"].endswith(f":{port}/")
    assert seen["status"] == 200
    assert "<html" in seen["page"].lower()
    with pytest.raises(OSError):  # the server is stopped when the run is over (stdin is not a terminal)
        urllib.request.urlopen(seen["url"], timeout=5)


def test_demo_runs_without_the_dashboard_package(tmp_path, capsys, monkeypatch):
    monkeypatch.setitem(sys.modules, "physicsnemo_curator.dashboard", None)  # makes the import fail

    code = demo.run(_args("--backend", "sequential", "--out", str(tmp_path), "--structures", "g2/H2O", "--format", "extxyz"))
    captured = capsys.readouterr()

    assert code == 0
    assert "dashboard: not available" in captured.err
    assert 'pip install "physicsnemo-curator[dashboard]"' in captured.err
    assert "Curated 1 of 1 structures" in captured.out


def test_demo_reports_an_interrupted_run(tmp_path, capsys, monkeypatch):
    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(physicsnemo_curator.run, "run_pipeline", interrupted)
    assert demo.run(_args("--no-serve", "--out", str(tmp_path), "--structures", "g2/H2O")) == 130
    assert "Interrupted: 0 of 1 structures are recorded in" in capsys.readouterr().err


def test_demo_reports_bad_options(tmp_path, capsys):
    assert demo.run(_args("--no-serve", "--out", str(tmp_path), "--structures", "g2/Kryptonite")) == 2
    assert "ASE collection 'g2' has no structure 'Kryptonite'" in capsys.readouterr().err
    assert demo.run(_args("--no-serve", "--out", str(tmp_path), "--subset", "0")) == 2
    assert "subset must be 1 or more, got 0" in capsys.readouterr().err
    assert not list(tmp_path.iterdir())
