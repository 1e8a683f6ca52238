"""Shared fixtures: the real data in ../shared/data and the synthetic suite.

Tests that read ../shared/data (real imagery, the published result CSVs) skip, naming the
folder, when it is absent: a fresh clone with nothing beside it runs everything else. The folder
is ``$MARSBENCH_SHARED_DATA`` when set, else ``shared/data`` beside the repository. A test run
that must not skip them (the project's CI, which has the folder) sets
``MARSBENCH_REQUIRE_SHARED_DATA=1``, which turns the skips into failures. (A bare ``CI``
variable is not used for this: every hosted CI sets it, including a fork's with no shared data.)
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = Path(os.environ.get("MARSBENCH_SHARED_DATA", REPO.parent / "shared" / "data"))


def need_shared(relative: str = "") -> Path:
    """``SHARED_DATA / relative``; skips the test (fails under MARSBENCH_REQUIRE_SHARED_DATA=1)
    when that folder is missing."""
    path = SHARED_DATA / relative if relative else SHARED_DATA
    if not path.is_dir():
        message = (f"needs the shared data folder {path}, which is absent (set "
                   "MARSBENCH_SHARED_DATA to where it is)")
        if os.environ.get("MARSBENCH_REQUIRE_SHARED_DATA") == "1":
            pytest.fail(message)
        pytest.skip(message)
    return path


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """../shared/data (read-only); see the module docstring for when it is missing."""
    return need_shared()


@pytest.fixture(scope="session")
def reference_results() -> Path:
    """../shared/data/reference-results: the published per-run CSVs and their PROVENANCE.md."""
    return need_shared("reference-results")


@pytest.fixture
def writable_copy(tmp_path, shared_data):
    """Copy one shared dataset folder into tmp_path (shared/ is read-only in CI)."""

    def copy(name: str) -> Path:
        dest = tmp_path / name
        shutil.copytree(shared_data / name, dest)
        for path in dest.rglob("*"):
            path.chmod(0o755 if path.is_dir() else 0o644)
        return dest

    return copy


@pytest.fixture(scope="session", autouse=True)
def private_cache_root(tmp_path_factory):
    """Every cache a test fills (features, pixels, content-hash memo) lives in a temporary
    folder, never in the user's ~/.cache; tests that need their own set MARSBENCH_CACHE."""
    previous = os.environ.get("MARSBENCH_CACHE")
    os.environ["MARSBENCH_CACHE"] = str(tmp_path_factory.mktemp("marsbench-cache"))
    yield
    if previous is None:
        os.environ.pop("MARSBENCH_CACHE", None)
    else:
        os.environ["MARSBENCH_CACHE"] = previous


@pytest.fixture
def isolated_cache(tmp_path, monkeypatch):
    """A cache folder of this test's own and an empty in-memory feature cache (runs that must
    compute, not find, their features)."""
    from marsbench.training import features as feature_cache

    monkeypatch.setenv("MARSBENCH_CACHE", str(tmp_path / "cache"))
    feature_cache.clear_memory_cache()
    yield
    feature_cache.clear_memory_cache()


@pytest.fixture(scope="session")
def synth_suite(tmp_path_factory):
    """The synthetic 20-dataset suite in both layouts: {"folder": {name: path}, "hf": {...}}."""
    from marsbench.sources.synth import generate_suite

    out = {}
    for fmt in ("folder", "hf"):
        base = tmp_path_factory.mktemp(f"synth_{fmt}")
        out[fmt] = {p.name: p for p in generate_suite(base, fmt)}
    return out
