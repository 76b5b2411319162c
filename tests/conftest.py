"""Shared fixtures: every test gets its own cache directory, so nothing lands in ~/.cache."""

from __future__ import annotations

import pytest


@pytest.fixture(autouse=True)
def _isolated_cache(tmp_path_factory, monkeypatch):
    cache = tmp_path_factory.mktemp("psnc-cache")
    monkeypatch.setenv("PSNC_CACHE_DIR", str(cache))
    return cache


@pytest.fixture
def cache_dir(_isolated_cache):
    return _isolated_cache
