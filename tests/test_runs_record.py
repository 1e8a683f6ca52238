"""RunRecord round trips and provenance; code, git and data fingerprints."""

from __future__ import annotations

import importlib.metadata
import json
import math
import os
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

import marsbench
from marsbench.runs import RunRecord, RunSpec, code_fingerprint, fingerprint_files, git_commit
from marsbench.runs.fingerprint import PACKAGE_DIR, package_versions
from marsbench.sources.errors import DataError

SPEC = RunSpec("mb-landmark_cls", "efficientnet_lite0", "feature_extraction", seed=1)


def full_record(**changes) -> RunRecord:
    values = dict(
        metrics={"val": {"f1_weighted": np.float32(0.5), "loss": 0.7},
                 "test": {"f1_weighted": 0.81, "accuracy": np.float64(0.9),
                          "per_class_f1": {"crater": 0.75, "spider": 0.0}, "diverged": float("nan")}},
        best_epoch=np.int64(3), epochs_run=8, val_loss=0.41,
        timings={"feature_extraction_s": 1.5, "training_s": 2.0, "total_s": 3.6},
        data_fingerprint="content:ab12", device="cpu", predictions_path=Path("/tmp/pred.csv"),
        extra={"class_names": ("crater", "spider"), "confusion": np.eye(2, dtype=int)},
    )
    return RunRecord.success(SPEC, **{**values, **changes})


def test_success_stamps_provenance_and_task():
    r = full_record()
    assert r.ok and r.status == "ok" and r.spec_key == SPEC.key
    assert r.task == "classification"  # from the catalog card
    assert r.code_fingerprint == code_fingerprint() and len(r.code_fingerprint) == 64
    assert r.versions["numpy"] == np.__version__
    assert r.versions["marsbench"] == importlib.metadata.version("marsbench")
    assert r.versions["python"].count(".") == 2
    assert r.created_at.endswith("+00:00")


def test_json_round_trip_keeps_every_field():
    r = full_record()
    text = r.to_json()
    back = RunRecord.from_json(text)
    assert back.to_dict() == json.loads(text)  # nan != nan, so compare the JSON values
    assert back.spec == SPEC and back.spec_key == SPEC.key
    assert back.metrics["test"]["per_class_f1"] == {"crater": 0.75, "spider": 0.0}
    assert math.isnan(back.metrics["test"]["diverged"])
    assert back.metrics["val"]["f1_weighted"] == pytest.approx(0.5)
    assert back.best_epoch == 3 and type(back.best_epoch) is int
    assert back.extra["confusion"] == [[1, 0], [0, 1]]
    assert back.predictions_path == "/tmp/pred.csv"
    assert back.metric("f1_weighted") == 0.81
    with pytest.raises(KeyError, match="f1_macro"):
        back.metric("f1_macro")


def test_failure_keeps_the_traceback():
    def train():
        raise RuntimeError("CUDA out of memory on batch 3")

    try:
        train()
    except RuntimeError as e:
        r = RunRecord.failure(SPEC, e, device="cuda:0")
    assert r.status == "failed" and not r.ok
    assert "CUDA out of memory on batch 3" in r.error and "in train" in r.error
    assert RunRecord.from_json(r.to_json()).error == r.error
    with pytest.raises(ValueError, match="error text"):
        RunRecord(SPEC, status="failed")
    with pytest.raises(ValueError, match="status"):
        RunRecord(SPEC, status="done")


def test_task_for_datasets_outside_the_catalog():
    with pytest.raises(ValueError, match="unknown dataset .*my-own-craters"):
        RunSpec("my-own-craters", "resnet101", "scratch")  # neither catalog nor folder
    spec = RunSpec("my-own-craters", "resnet101", "scratch", task="classification")
    assert RunRecord.success(spec).task == "classification"
    assert RunRecord.failure(spec, "no such dataset").task == "classification"


def test_values_json_cannot_hold_are_refused():
    with pytest.raises(TypeError, match="object"):
        full_record(extra={"model": object()}).to_json()


# -- fingerprints -----------------------------------------------------------------------------


def test_code_fingerprint_tracks_source_content(tmp_path):
    pkg = tmp_path / "marsbench"
    shutil.copytree(PACKAGE_DIR / "runs", pkg / "runs")
    first = code_fingerprint(pkg)
    (pkg / "runs" / "__pycache__").mkdir(exist_ok=True)
    (pkg / "runs" / "__pycache__" / "x.pyc").write_bytes(b"junk")
    (pkg / "runs" / "notes.txt").write_text("not code")
    code_fingerprint.cache_clear()
    assert code_fingerprint(pkg) == first  # caches and non-code files do not count
    with (pkg / "runs" / "spec.py").open("a") as f:
        f.write("\n# a change\n")
    code_fingerprint.cache_clear()
    changed = code_fingerprint(pkg)
    assert changed != first
    (pkg / "runs" / "spec.py").rename(pkg / "runs" / "spec2.py")
    code_fingerprint.cache_clear()
    assert code_fingerprint(pkg) not in (first, changed)  # a rename is a change too
    code_fingerprint.cache_clear()


def test_git_commit_outside_and_inside_a_checkout(tmp_path):
    assert git_commit(tmp_path) is None  # no repository: None, never an error
    git = ["git", "-c", "user.email=t@example.com", "-c", "user.name=t", "-c", "commit.gpgsign=false"]
    subprocess.run([*git, "init", "-q", str(tmp_path)], check=True)
    (tmp_path / "a.py").write_text("x = 1\n")
    subprocess.run([*git, "-C", str(tmp_path), "add", "a.py"], check=True)
    subprocess.run([*git, "-C", str(tmp_path), "commit", "-qm", "init"], check=True)
    head = subprocess.run(["git", "-C", str(tmp_path), "rev-parse", "HEAD"], capture_output=True,
                          text=True, check=True).stdout.strip()
    git_commit.cache_clear()
    assert git_commit(tmp_path) == head
    (tmp_path / "a.py").write_text("x = 2\n")
    git_commit.cache_clear()
    assert git_commit(tmp_path) == head + "+dirty"
    git_commit.cache_clear()


def test_package_versions_without_importing_torch():
    v = package_versions(["numpy", "surely-not-installed-pkg"])
    assert v["numpy"] == np.__version__ and v["surely-not-installed-pkg"] is None
    assert set(package_versions()) >= {"python", "torch", "torchvision", "timm", "numpy", "marsbench"}
    assert marsbench.__version__ == package_versions()["marsbench"]


def test_data_fingerprint_follows_content_not_location(tmp_path, shared_data):
    LANDMARK = shared_data / "mb-landmark_cls-mini"  # real images; skipped without ../shared
    files = sorted((LANDMARK / "data").rglob("*.jpg"))[:12]
    assert len(files) == 12, f"expected real images under {LANDMARK}"
    original = fingerprint_files(files, root=LANDMARK)
    assert original.startswith("content:")  # a small set is hashed byte by byte
    copy = tmp_path / "copy"
    for f in files:
        dest = copy / f.relative_to(LANDMARK)
        dest.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(f, dest)  # new mtimes, new folder
    copied = sorted(copy.rglob("*.jpg"))
    assert fingerprint_files(copied, root=copy) == original
    assert fingerprint_files(reversed(copied), root=copy) == original  # order does not matter
    data = bytearray(copied[3].read_bytes())
    data[-5] ^= 1  # one flipped bit
    copied[3].write_bytes(bytes(data))
    assert fingerprint_files(copied, root=copy) != original
    assert fingerprint_files(copied[:-1], root=copy) != fingerprint_files(copied, root=copy)


def test_touched_files_keep_their_content_fingerprint(tmp_path, monkeypatch):
    """Times are not content: a touched file keeps its fingerprint, a same-size edit does not."""
    monkeypatch.setenv("MARSBENCH_CACHE", str(tmp_path / "cache"))
    a, b = tmp_path / "a.png", tmp_path / "b.png"
    a.write_bytes(b"x" * 10)
    b.write_bytes(b"y" * 10)
    first = fingerprint_files([a, b])
    st = b.stat()
    os.utime(b, ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000_000))
    assert fingerprint_files([a, b]) == first
    b.write_bytes(b"z" * 10)
    os.utime(b, ns=(st.st_atime_ns, st.st_mtime_ns))  # same name, size and mtime as before
    assert fingerprint_files([a, b]) != first


def test_data_fingerprint_errors(tmp_path):
    with pytest.raises(DataError, match="missing.png"):
        fingerprint_files([tmp_path / "missing.png"])
    with pytest.raises(ValueError, match="no files"):
        fingerprint_files([])
