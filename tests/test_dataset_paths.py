"""Which folder a dataset name or path reads: the one named, never another of the same name."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from marsbench.runs.data import open_splits
from marsbench.runs.spec import RunSpec
from marsbench.sources.errors import DataError
from marsbench.sources.open import local_folder, open_dataset, resolve
from marsbench.sources.synth import generate


@pytest.fixture
def two_copies(tmp_path, monkeypatch):
    """``here/mydata`` (the working directory's) and ``there/mydata`` with test rows cut."""
    made = generate("mb-landmark_cls", tmp_path / "gen", scale=0.05)
    for where in ("here", "there"):
        shutil.copytree(made, tmp_path / where / "mydata")
    csv = tmp_path / "there" / "mydata" / "annotation.csv"
    lines = csv.read_text().splitlines()
    tests = [line for line in lines if line.endswith(",test")]
    csv.write_text("\n".join([*(line for line in lines if not line.endswith(",test")),
                              *tests[:2]]) + "\n")
    monkeypatch.chdir(tmp_path / "here")
    return tmp_path, len(tests)


def test_an_absolute_path_reads_that_folder_not_the_working_directorys(two_copies):
    tmp_path, here_tests = two_copies
    assert here_tests > 2
    spec = RunSpec(dataset=str(tmp_path / "there" / "mydata"), model="efficientnet_lite0",
                   regime="feature_extraction")
    assert (spec.dataset, spec.data_root) == ("mydata", str(tmp_path / "there"))
    assert len(open_splits(spec)["test"]) == 2
    assert len(open_dataset("mydata", "test", root=tmp_path / "there")) == 2
    assert local_folder("mydata", tmp_path / "there") == tmp_path / "there" / "mydata"


def test_a_bare_folder_name_in_the_working_directory_is_read_by_run_as_by_check(two_copies):
    tmp_path, here_tests = two_copies
    spec = RunSpec(dataset="mydata", model="efficientnet_lite0", regime="feature_extraction")
    assert spec.data_root == str(tmp_path / "here")
    assert len(open_splits(spec)["test"]) == here_tests


def test_a_catalog_name_in_the_working_directory_is_read_there_unless_the_root_has_it_too(
        tmp_path, monkeypatch):
    """A bare catalog name is the working directory's folder when only it exists; with a copy
    in the data root too, nothing says which is meant: refused in one line naming both."""
    made = generate("mb-landmark_cls", tmp_path / "gen", scale=0.05)
    shutil.copytree(made, tmp_path / "here" / "mb-landmark_cls")
    monkeypatch.setenv("MARSBENCH_DATA", str(tmp_path / "root"))
    monkeypatch.chdir(tmp_path / "here")
    assert local_folder("mb-landmark_cls", None) == Path("mb-landmark_cls")
    spec = RunSpec(dataset="mb-landmark_cls", model="efficientnet_lite0",
                   regime="feature_extraction")
    assert spec.data_root == str(tmp_path / "here")
    shutil.copytree(made, tmp_path / "root" / "mb-landmark_cls")
    with pytest.raises(DataError, match=r"^two copies answer to this name \(mb-landmark_cls\): "
                       rf"{tmp_path / 'here' / 'mb-landmark_cls'} \(the working directory\) "
                       rf"and {tmp_path / 'root' / 'mb-landmark_cls'}; name the one you mean"):
        local_folder("mb-landmark_cls", None)
    assert local_folder("./mb-landmark_cls", None) is not None  # a path says which
    # with a root, a catalog name is the root's copy, found by the catalog flow
    assert local_folder("mb-landmark_cls", tmp_path / "root") is None
    _, _, location = resolve("mb-landmark_cls", root=tmp_path / "root")
    assert Path(location) == tmp_path / "root" / "mb-landmark_cls"
