"""The Jupyter side of the dashboard: the server extension's backend and the %psnc_dashboard magic."""

from __future__ import annotations

import subprocess
import sys
import textwrap
import urllib.error
import urllib.request
from urllib.parse import quote

import pytest

pytest.importorskip("panel_material_ui")
pytest.importorskip("jupyter_server")

from physicsnemo_curator.dashboard._magic import dashboard_link
from physicsnemo_curator.dashboard._synthetic import write_store
from physicsnemo_curator.dashboard.jupyter_extension import SECRET_HEADER, _Backends, _strip_token


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args, **kwargs):  # noqa: ANN002, ANN003, ANN201
        return None


def test_backend_rejects_requests_without_the_secret(tmp_path):
    db = write_store(tmp_path / "b.db", 5)
    backends = _Backends("/")
    backend = backends.get_or_start(db.resolve())
    try:
        assert backends.get_or_start(db.resolve()) is backend
        assert backend.server.daemon
        url = f"http://127.0.0.1:{backend.port}/psnc/app/{backend.key}/"
        opener = urllib.request.build_opener(_NoRedirect)
        with pytest.raises(urllib.error.HTTPError) as refused:
            opener.open(url, timeout=60)
        assert refused.value.code in (302, 401, 403)
        request = urllib.request.Request(url, headers={SECRET_HEADER: backend.secret})
        with opener.open(request, timeout=60) as page:
            assert page.status == 200
            assert b"PhysicsNeMo Curator" in page.read()
    finally:
        backends.stop_all()


def test_strip_token_keeps_other_arguments():
    assert _strip_token("/psnc/app/abc/?token=T&x=1") == "/psnc/app/abc/?x=1"
    assert _strip_token("/psnc/app/abc/static/x.js?token=T") == "/psnc/app/abc/static/x.js"


def test_dashboard_link_uses_base_url(tmp_path):
    db = write_store(tmp_path / "with space.db", 2)
    path, url = dashboard_link(str(db), base_url="/user/ana/")
    assert path == db.resolve()
    assert url == "/user/ana/psnc/dashboard?db=" + quote(str(db.resolve()), safe="")


def test_notebook_magic_prints_link(tmp_path):
    from physicsnemo_curator.dashboard._synthetic import write_store

    db = write_store(tmp_path / "magic.db", 3)
    code = textwrap.dedent(
        f"""
        from IPython.testing.globalipapp import start_ipython
        from physicsnemo_curator.dashboard._magic import register
        ip = start_ipython()
        register(ip)
        ip.run_line_magic("psnc_dashboard", {str(db)!r})
        try:
            ip.run_line_magic("psnc_dashboard", "no_such_prefix_zz")
        except Exception as exc:
            print("ERROR:", type(exc).__name__, exc)
        """
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=False)
    assert result.returncode == 0, result.stderr
    assert "/psnc/dashboard?db=" + quote(str(db), safe="") in result.stdout
    assert "ERROR: UsageError No run store matches 'no_such_prefix_zz'" in result.stdout
