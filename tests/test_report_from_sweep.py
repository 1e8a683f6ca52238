"""`marsbench report` on a store that sweeps wrote to: the protocol's seed runs of the selected
configurations, per experiment, never the grid candidates (which share labels and seeds with
them and used to collide: "2 runs share the key")."""

from __future__ import annotations

import pytest
from typer.testing import CliRunner

from marsbench.cli.main import app
from marsbench.protocol import Executor, final_keys, parse_experiment, run_sweep
from marsbench.runs import ResultsStore, RunRecord

runner = CliRunner()

TEMPLATE = """
name: {name}
datasets: [mb-frost_cls, mb-landmark_cls]
models: [efficientnet_lite0]
regimes: [{regime}]
grid_defaults: single
grid: {{lr: [1.0e-3, 1.0e-2]}}
seeds: [0, 1, 2]
"""


class Scripted(Executor):
    """Made-up records at once: the validation loss depends on lr, the scores on the seed."""

    name, capacity = "scripted", 2

    def __init__(self):
        self.pending = []

    def submit(self, task):
        self.pending.append(task)

    def wait(self, timeout=None):
        task = self.pending.pop(0)
        s = task.spec
        loss = (0.3 if s.lr == 1e-2 else 0.5) + 0.01 * s.seed
        # a fraction whatever the seed (the paper's reach 1234): a score over 1 is refused
        score = 0.6 + 0.2 * (s.seed % 101) / 100 + (0.1 if s.regime == "fine_tuning" else 0.0)
        record = RunRecord.success(
            s, task="classification", val_loss=loss,
            metrics={"val": {"loss": loss}, "test": {"f1_weighted": score, "accuracy": score}})
        record.extra["synthetic_data"] = True  # as runs on the synthetic suite record it
        return [(task, record)]

    @property
    def in_flight(self):
        return len(self.pending)


@pytest.fixture(scope="module")
def two_experiments(tmp_path_factory):
    store_path = tmp_path_factory.mktemp("sweeps") / "study.sqlite"
    store = ResultsStore(store_path)
    exps = {}
    for name, regime in (("probe", "feature_extraction"), ("tune", "fine_tuning")):
        exps[name] = parse_experiment(TEMPLATE.format(name=name, regime=regime))
        run_sweep(exps[name], store, executor=Scripted())
    return store_path, exps


def _keys_reported(store_path, *args):
    from marsbench.cli.report import _read_store

    table = _read_store(store_path, list(args), False)
    return set(table["spec_key"])


def test_a_store_of_two_sweeps_reports_their_seed_runs_only(two_experiments, tmp_path):
    store_path, exps = two_experiments
    store = ResultsStore(store_path)
    expected = set(final_keys(exps["probe"], store)) | set(final_keys(exps["tune"], store))
    assert len(expected) == 2 * 2 * 3  # experiments x datasets x seeds
    assert len(store) > len(expected)  # the losing grid runs are in the store too
    assert _keys_reported(store_path) == expected
    result = runner.invoke(app, ["report", "--store", str(store_path), "--out",
                                 str(tmp_path / "r"), "--baselines", "none", "--rounds", "50"])
    assert result.exit_code == 0, result.output
    assert "probe, tune (12 runs)" in result.output and "4 other run(s)" in result.output
    html = (tmp_path / "r" / "report.html").read_text()
    assert "SYNTHETIC DATA" in html  # the CLI hands the store's records to the report


def test_one_experiment_by_name_or_by_file(two_experiments, tmp_path):
    store_path, exps = two_experiments
    store = ResultsStore(store_path)
    assert _keys_reported(store_path, "tune") == set(final_keys(exps["tune"], store))
    exp_file = tmp_path / "probe.yaml"
    exp_file.write_text(TEMPLATE.format(name="probe-copy", regime="feature_extraction"))
    # a file the store never recorded: selected afresh from its grid runs
    assert _keys_reported(store_path, str(exp_file)) == set(final_keys(exps["probe"], store))


def test_an_unknown_experiment_is_one_line_naming_the_known_ones(two_experiments, tmp_path):
    store_path, _ = two_experiments
    result = runner.invoke(app, ["report", "--store", str(store_path), "--experiment", "tnue",
                                 "--out", str(tmp_path / "r")])
    assert result.exit_code == 2
    assert "no such experiment in the store" in result.output and "did you mean 'tune'" in result.output
    assert "Traceback" not in result.output


def test_all_runs_reads_every_run(two_experiments):
    from marsbench.cli.report import _read_store

    store_path, _ = two_experiments
    table = _read_store(store_path, [], True)
    assert table["spec_key"].nunique() == len(ResultsStore(store_path).records(status="ok"))
