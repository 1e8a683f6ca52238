"""Environment errors are not results: missing data or weights stop a sweep before (or at) the
first run, with one line, and nothing is written into the store as a failed run."""

from __future__ import annotations

import pytest
from typer.testing import CliRunner

from marsbench.cli.main import app
from marsbench.protocol import parse_experiment, run_sweep
from marsbench.protocol.sweep import SweepEnvironmentError
from marsbench.runs import ResultsStore

runner = CliRunner()

EXPERIMENT = """
name: env-check
datasets: [mb-frost_cls]
models: [{model}]
regimes: [{regime}]
grid_defaults: single
grid: {{lr: [1.0e-3, 1.0e-2], max_epochs: [1], batch_size: [8]}}
seeds: [0, 1]
options: {{input_size: 32}}
"""


@pytest.fixture(scope="module")
def frost_root(tmp_path_factory):
    from marsbench.sources.synth import generate

    root = tmp_path_factory.mktemp("env_data")
    generate("mb-frost_cls", root, "folder")
    return root


def test_missing_data_is_one_line_before_the_store_exists(tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    store = tmp_path / "s.sqlite"
    result = runner.invoke(app, ["sweep", "paper:demo_synthetic", "--root", str(empty),
                                 "--store", str(store)])
    assert result.exit_code == 2
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: 2 dataset(s)")
    assert f"marsbench datasets download mb-frost_cls mb-landmark_cls --root {empty}" in lines[0]
    assert not store.exists()
    dry = runner.invoke(app, ["sweep", "paper:demo_synthetic", "--root", str(empty),
                              "--store", str(store), "--dry-run"])
    assert dry.exit_code == 2 and "cannot be read" in dry.output and not store.exists()


def test_missing_weights_stop_the_sweep_and_record_nothing(tmp_path, frost_root, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "empty-torch-home"))
    monkeypatch.setenv("MARSBENCH_CACHE", str(tmp_path / "cache"))
    exp = parse_experiment(EXPERIMENT.format(model="resnet101", regime="fine_tuning")
                           ).with_overrides(data_root=str(frost_root))
    store = ResultsStore(tmp_path / "s.sqlite")
    with pytest.raises(SweepEnvironmentError, match="resnet101") as err:
        run_sweep(exp, store)
    assert "\n" not in str(err.value) and "run the same command again" in str(err.value)
    assert store.records() == [] and store.claims() == []  # nothing stored, nothing held


def test_a_bad_run_among_good_ones_is_still_a_result(tmp_path, frost_root, monkeypatch):
    """Only environment errors stop a sweep; a run that raises anything else is recorded as
    failed and the sweep goes on (one diverging configuration must not stop a study)."""
    from marsbench.protocol import executors

    monkeypatch.setenv("MARSBENCH_CACHE", str(tmp_path / "cache"))
    real = executors.execute

    def flaky(task):
        if task.spec.lr == 1e-2:
            from marsbench.runs import RunRecord

            return RunRecord.failure(task.spec, FloatingPointError("training loss became nan"))
        return real(task)

    monkeypatch.setattr(executors, "execute", flaky)
    exp = parse_experiment(EXPERIMENT.format(model="efficientnet_lite0", regime="scratch")
                           ).with_overrides(data_root=str(frost_root))
    store = ResultsStore(tmp_path / "s.sqlite")
    summary = run_sweep(exp, store)
    statuses = sorted(r.status for r in store.records())
    assert statuses.count("failed") == 1 and statuses.count("ok") == 2  # grid 2 + 1 more seed
    assert summary.progress.failed == 1
