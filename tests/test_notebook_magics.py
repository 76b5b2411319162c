"""``%load_ext psnc`` and ``%psnc_monitor`` in a real IPython shell (in a child process: IPython keeps global state)."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

pytest.importorskip("IPython")
pytest.importorskip("anywidget")

from pipeline_parts import RangeSource, TextSink  # noqa: E402

from physicsnemo_curator import Pipeline, run_pipeline  # noqa: E402

TESTS_DIR = Path(__file__).resolve().parent

SCRIPT = """
import json, sys, threading
from IPython.core.error import UsageError
from IPython.core.interactiveshell import InteractiveShell

ip = InteractiveShell.instance()
ip.run_line_magic("load_ext", "psnc")
out = {"dashboard_registered": "psnc_dashboard" in ip.magics_manager.magics["line"]}
for name, line in json.loads(sys.argv[1]).items():
    try:
        widget = ip.run_line_magic("psnc_monitor", line)
        widget.refresh()
        out[name] = {"path": widget.db_path, "state": widget.store_state["state"],
                     "completed": widget.progress.get("completed"), "interval": widget.interval}
    except UsageError as exc:
        out[name] = {"error": str(exc)}
before = threading.active_count()
ip.run_line_magic("unload_ext", "psnc")
out["threads_closed"] = before - threading.active_count()
out["magic_removed"] = "psnc_monitor" not in ip.magics_manager.magics["line"]
out["dashboard_removed"] = "psnc_dashboard" not in ip.magics_manager.magics["line"]
print("RESULT" + json.dumps(out))
"""


def _run_magics(lines: dict[str, str], cache_dir: Path, cwd: Path) -> dict:
    env = {"PSNC_CACHE_DIR": str(cache_dir), "PATH": "/usr/bin:/bin", "HOME": str(cwd), "PYTHONPATH": str(TESTS_DIR)}
    done = subprocess.run(
        [sys.executable, "-c", SCRIPT, json.dumps(lines)], env=env, cwd=cwd, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    line = next(line for line in done.stdout.splitlines() if line.startswith("RESULT"))
    return json.loads(line[len("RESULT"):])


def test_psnc_monitor_resolves_targets(tmp_path, cache_dir):
    older = Pipeline(source=RangeSource(3), sink=TextSink(str(tmp_path / "a")), db_dir=cache_dir)
    run_pipeline(older, progress=False)
    newer = Pipeline(source=RangeSource(5), sink=TextSink(str(tmp_path / "b")), db_dir=cache_dir)
    run_pipeline(newer, progress=False)
    yaml_file = newer.save(tmp_path / "pipeline.yaml")
    notes = tmp_path / "notes.db"
    notes.write_text("my notes")
    explicit = tmp_path / "explicit.db"
    run_pipeline(Pipeline(source=RangeSource(2), sink=TextSink(str(tmp_path / "c")), db_file=explicit), progress=False)

    result = _run_magics(
        {
            "path": f"{explicit} --interval 0.5",
            "quoted": f'"{explicit}"',
            "latest": "",
            "prefix": newer.config_hash[:10],
            "pipeline": str(yaml_file),
            "future": str(tmp_path / "not_yet.db"),
            "not_a_store": str(notes),
            "unknown": "zzzz_nothing",
            "bad_option": "--intervals 3",
        },
        cache_dir,
        tmp_path,
    )
    assert result["path"] == {"path": str(explicit), "state": "finished", "completed": 2, "interval": 0.5}
    assert result["quoted"]["path"] == str(explicit)
    assert result["latest"]["path"] == str(newer.db_path)
    assert result["latest"]["completed"] == 5
    assert result["prefix"]["path"] == str(newer.db_path)
    assert result["pipeline"]["path"] == str(newer.db_path)
    assert result["future"] == {"path": str(tmp_path / "not_yet.db"), "state": "waiting", "completed": None, "interval": 1.0}
    assert result["not_a_store"] == {"path": str(notes), "state": "invalid", "completed": None, "interval": 1.0}
    assert "No run store matches 'zzzz_nothing'" in result["unknown"]["error"]
    assert str(cache_dir) in result["unknown"]["error"]
    assert "unrecognized arguments: --intervals" in result["bad_option"]["error"]
    assert "Usage: %psnc_monitor" in result["bad_option"]["error"]
    assert result["threads_closed"] >= 0
    assert result["magic_removed"] is True
    assert result["dashboard_registered"] is True
    assert result["dashboard_removed"] is True


def test_empty_cache_names_directory(tmp_path, cache_dir):
    result = _run_magics({"latest": ""}, cache_dir, tmp_path)
    assert result["latest"]["error"].startswith(f"No run store found in the cache directory {cache_dir}")


def test_importing_psnc_loads_nothing_heavy(tmp_path):
    code = textwrap.dedent(
        """
        import sys, psnc
        heavy = [m for m in ("IPython", "anywidget", "numpy", "physicsnemo_curator", "traitlets") if m in sys.modules]
        print(heavy)
        """
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"
