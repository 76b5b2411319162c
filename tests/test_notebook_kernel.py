"""Polling threads end with the kernel: a real ipykernel, shut down the way Jupyter does it."""

from __future__ import annotations

import time

import pytest

jupyter_client = pytest.importorskip("jupyter_client")
pytest.importorskip("ipykernel")
pytest.importorskip("anywidget")

CODE = """
import logging
logging.basicConfig(filename={log!r}, level=logging.DEBUG, format="%(name)s %(message)s")
from physicsnemo_curator.notebook import MonitorWidget, ProgressWidget
widgets = [MonitorWidget({db!r}, interval=0.05), ProgressWidget({db!r}, interval=0.05)]
"""


@pytest.mark.slow
def test_pollers_stop_at_kernel_shutdown(tmp_path):
    log = tmp_path / "kernel.log"
    manager = jupyter_client.KernelManager(kernel_name="python3")
    manager.start_kernel(cwd=str(tmp_path))
    client = manager.client()
    client.start_channels()
    try:
        client.wait_for_ready(timeout=60)
        reply = client.execute_interactive(CODE.format(log=str(log), db=str(tmp_path / "none.db")), timeout=60)
        assert reply["content"]["status"] == "ok"
        time.sleep(0.5)
        reply = client.execute_interactive(
            "from physicsnemo_curator.notebook import _poller\nassert _poller.running() == 2, _poller.running()", timeout=30
        )
        assert reply["content"]["status"] == "ok"
    finally:
        client.stop_channels()
        manager.shutdown_kernel(now=False)
    stopped = [line for line in log.read_text().splitlines() if "Poller psnc-poll-none.db stopped after" in line]
    assert len(stopped) == 2, log.read_text()[-2000:]
    assert not manager.is_alive()
