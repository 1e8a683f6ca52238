"""Shared fixtures: the real data in ../shared/data and the synthetic suite."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = Path(os.environ.get("MARSBENCH_SHARED_DATA", REPO.parent / "shared" / "data"))


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """../shared/data (read-only). Missing is a failure in CI, a skip elsewhere."""
    if not SHARED_DATA.is_dir():
        if os.environ.get("CI"):
            pytest.fail(f"shared data not found at {SHARED_DATA}")
        pytest.skip(f"shared data not found at {SHARED_DATA} (set MARSBENCH_SHARED_DATA)")
    return SHARED_DATA


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


@pytest.fixture(scope="session")
def synth_suite(tmp_path_factory):
    """The synthetic 20-dataset suite in both layouts: {"folder": {name: path}, "hf": {...}}."""
    from marsbench.sources.synth import generate_suite

    out = {}
    for fmt in ("folder", "hf"):
        base = tmp_path_factory.mktemp(f"synth_{fmt}")
        out[fmt] = {p.name: p for p in generate_suite(base, fmt)}
    return out
