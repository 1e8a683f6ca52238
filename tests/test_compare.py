"""`marsbench compare`: the verdict on planted score tables, and the CLI on a store."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from marsbench.aggregate.compare import CompareError, compare_models
from marsbench.cli.main import app
from marsbench.runs import ResultsStore, RunRecord, RunSpec

DATASETS = ["mb-frost_cls", "mb-landmark_cls", "mb-domars16k", "mb-surface_cls"]


def planted(gap: float, noise: float = 0.01, seeds: int = 5) -> pd.DataFrame:
    """Model A = model B + ``gap`` on every run (the same seed noise for both)."""
    rng = np.random.default_rng(0)
    rows = []
    for i, dataset in enumerate(DATASETS):
        for seed in range(seeds):
            value = 0.5 + 0.05 * i + rng.normal(0, noise)
            for model, offset in (("A", gap), ("B", 0.0)):
                rows.append({"model": model, "dataset": dataset, "task": "classification",
                             "regime": "feature_extraction", "variant": "full", "seed": seed,
                             "metric": "f1_weighted", "split": "test", "spec_key": "",
                             "value": value + offset})
    return pd.DataFrame(rows)


def test_a_clearly_better_model_wins_with_an_interval_above_zero():
    result = compare_models(planted(0.1), "A", "B", rounds=500)
    assert result.verdict == "A better"
    assert result.difference_ci[0] > 0 and result.probability_of_improvement > 0.95
    assert list(result.per_dataset["winner"]) == ["A"] * 4
    reverse = compare_models(planted(0.1), "B", "A", rounds=500)
    assert reverse.verdict == "A better" and reverse.difference == pytest.approx(
        -result.difference)


def test_equal_models_are_no_significant_difference():
    result = compare_models(planted(0.0, noise=0.02), "A", "B", rounds=500)
    assert result.verdict == "no significant difference"
    assert result.difference == 0 and result.difference_ci[0] <= 0 <= result.difference_ci[1]
    assert result.probability_of_improvement == pytest.approx(0.5)
    assert set(result.per_dataset["winner"]) == {"tie"}


def test_questions_the_table_cannot_answer_are_refused():
    table = planted(0.1)
    with pytest.raises(CompareError, match="choose from A, B"):
        compare_models(table, "a", "B")
    with pytest.raises(CompareError, match="share no dataset"):
        compare_models(table, "A", "B", datasets=["mb-cone"])


def test_cli_on_a_store(tmp_path):
    store = ResultsStore(tmp_path / "s.sqlite")
    rng = np.random.default_rng(1)
    for model, base in (("efficientnet_lite0", 0.8), ("squeezenet1_1", 0.5)):
        for dataset in DATASETS:
            for seed in range(3):
                spec = RunSpec(dataset=dataset, model=model, regime="feature_extraction",
                               seed=seed)
                score = base + rng.normal(0, 0.01)
                store.put(RunRecord.success(spec, task="classification", val_loss=1 - score,
                                            metrics={"val": {"loss": 1 - score},
                                                     "test": {"f1_weighted": score}}))
    runner = CliRunner()
    result = runner.invoke(app, ["compare", "efficientnet_lite0", "squeezenet1_1", "--store",
                                 str(store.path), "--rounds", "200", "--out",
                                 str(tmp_path / "cmp")])
    assert result.exit_code == 0, result.output
    assert "Verdict: efficientnet_lite0 better" in result.output
    assert (tmp_path / "cmp" / "compare.html").read_text().count("<tr>") == 1 + 4
    bad = runner.invoke(app, ["compare", "efficientnet_lite0", "resnet", "--store",
                              str(store.path)])
    assert bad.exit_code == 2 and bad.output.startswith("error: cannot compare")


# -- what a comparison covers, and --run -------------------------------------------------------

def test_the_scope_names_every_missing_model_dataset_seed_run():
    from marsbench.aggregate.compare import comparison_scope, describe_missing

    table = planted(0.1)
    table = table[~((table["model"] == "B") & (table["dataset"] == DATASETS[3]))]
    table = table[~((table["model"] == "A") & (table["dataset"] == DATASETS[0])
                    & (table["seed"] == 4))]
    scope = comparison_scope(table, ("A", "B"))
    assert (scope.regime, scope.datasets, scope.seeds) == (
        "feature_extraction", sorted(DATASETS), [0, 1, 2, 3, 4])
    assert scope.missing == [("A", DATASETS[0], 4)] + [("B", DATASETS[3], s) for s in range(5)]
    assert describe_missing(scope.missing) == (
        f"A on {DATASETS[0]} (seed 4); B on {DATASETS[3]} (seeds 0, 1, 2, 3, 4)")
    assert not comparison_scope(table, ("A", "B"), datasets=DATASETS[1:3], seeds=[0, 1]).missing
    with pytest.raises(CompareError, match="'C' has no full runs"):
        comparison_scope(table, ("A", "C"))
    absent = comparison_scope(table, ("A", "C"), allow_absent=True)
    assert [m for m in absent.missing if m[0] == "C"] == [
        ("C", d, s) for d in sorted(DATASETS) for s in range(5)]
    empty = table.iloc[:0]
    fresh = comparison_scope(empty, ("A", "B"), datasets=["mb-frost_cls"], allow_absent=True,
                             default_regime="linear_probe", default_seeds=[0, 1])
    assert (fresh.regime, len(fresh.missing)) == ("linear_probe", 4)


def test_cli_names_the_missing_runs_and_the_command_that_fills_them(tmp_path):
    store = ResultsStore(tmp_path / "s.sqlite")
    for model, datasets in (("efficientnet_lite0", DATASETS), ("squeezenet1_1", DATASETS[:3])):
        for dataset in datasets:
            for seed in range(3):
                spec = RunSpec(dataset=dataset, model=model, regime="feature_extraction",
                               seed=seed)
                store.put(RunRecord.success(spec, task="classification", val_loss=0.5,
                                            metrics={"test": {"f1_weighted": 0.5 + seed / 10}}))
    result = CliRunner().invoke(app, ["compare", "efficientnet_lite0", "squeezenet1_1",
                                      "--store", str(store.path), "--rounds", "200"])
    assert result.exit_code == 2 and "Verdict" not in result.output  # no partial verdict
    line = result.output.strip()
    assert "\n" not in line and line.startswith("error: the store lacks 3 of the comparison's")
    assert f"squeezenet1_1 on {DATASETS[3]} (seeds 0, 1, 2)" in line
    assert (f"marsbench compare efficientnet_lite0 squeezenet1_1 --store {store.path} --regime "
            f"feature_extraction --dataset {sorted(DATASETS)[0]}") in line
    assert "--seeds 0,1,2 --run" in line


@pytest.mark.usefixtures("isolated_cache")
def test_cli_run_fills_the_store_then_gives_the_verdict(tmp_path, synth_suite, monkeypatch):
    """Two labels of the one model whose weights install offline (EfficientNet-Lite0 at two
    input sizes) in the linear probe on a tiny synthetic dataset: --run runs the 4 missing
    runs, records them, compares; then the store alone answers, and a seed it lacks is named."""
    monkeypatch.setenv("MARSBENCH_WORKERS", "0")
    a, b = "efficientnet_lite0 [input_size=48]", "efficientnet_lite0 [input_size=32]"
    store = tmp_path / "runs" / "compare.sqlite"
    root = synth_suite["folder"]["mb-frost_cls"].parent
    args = ["compare", a, b, "--store", str(store), "--dataset", "mb-frost_cls", "--regime",
            "linear_probe", "--seeds", "0,1", "--rounds", "200"]
    runner = CliRunner()
    filled = runner.invoke(app, [*args, "--run", "--data-root", str(root)])
    assert filled.exit_code == 0, filled.output
    assert filled.output.count("running ") == 4 and "**Verdict: " in filled.output
    records = ResultsStore(store).records(status="ok")
    assert sorted((r.spec.label, r.spec.seed) for r in records) == [
        (b, 0), (b, 1), (a, 0), (a, 1)]
    assert all(r.spec.regime == "linear_probe" for r in records)
    again = runner.invoke(app, args)
    assert again.exit_code == 0 and "running " not in again.output
    assert again.output.split("**Verdict: ")[1].split("**")[0] == \
        filled.output.split("**Verdict: ")[1].split("**")[0]
    more = runner.invoke(app, [*args[:-4], "--seeds", "0,1,2"])
    assert more.exit_code == 2 and f"{a} on mb-frost_cls (seed 2)" in more.output


def test_a_dataset_folder_path_is_compared_by_its_name_and_runs_from_its_parent(tmp_path):
    from marsbench.cli.compare import _dataset_names
    from marsbench.errors import OptionError

    for name in ("mine_a", "mine_b"):
        (tmp_path / "root" / name).mkdir(parents=True)
    (tmp_path / "other" / "mine_c").mkdir(parents=True)
    names, root = _dataset_names([str(tmp_path / "root" / "mine_a"), "mine_b"], None)
    assert names == ["mine_a", "mine_b"] and root == (tmp_path / "root").resolve()
    with pytest.raises(OptionError, match="two data roots"):
        _dataset_names([str(tmp_path / "root" / "mine_a"), str(tmp_path / "other" / "mine_c")],
                       None)


@pytest.mark.parametrize("flags, expect", [
    (["--seeds", "-1"], "error: seeds must be from 0 to 4294967295 (--seeds): -1"),
    (["--seeds", "0,99999999999"], "99999999999 is out of range"),
    (["--seeds", "0,0"], "error: seed 0 is listed twice (--seeds): 0,0"),
    (["--regime", "scrach"], "error: unknown regime 'scrach' (--regime); did you mean 'scratch'"),
    (["--variant", "few_shot:-2"], "error: bad variant (--variant): few_shot:-2; use 'full'"),
    (["--dataset", "mb-frost_clss"], "error: the store has no runs of this dataset (--dataset): "
                                     "mb-frost_clss; did you mean 'mb-frost_cls'"),
])
def test_cli_refuses_bad_options_up_front(tmp_path, flags, expect):
    """One line naming the flag, before anything is read (and no `--run` command built
    from a bad value)."""
    store = ResultsStore(tmp_path / "s.sqlite")
    for model in ("efficientnet_lite0", "squeezenet1_1"):
        spec = RunSpec(dataset="mb-frost_cls", model=model, regime="feature_extraction")
        store.put(RunRecord.success(spec, task="classification", val_loss=0.5,
                                    metrics={"test": {"f1_weighted": 0.5}}))
    result = CliRunner().invoke(app, ["compare", "efficientnet_lite0", "squeezenet1_1",
                                      "--store", str(store.path), *flags])
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert result.exit_code == 2 and len(lines) == 1, result.output
    assert lines[0].startswith("error: ") and expect in lines[0], lines[0]
    assert "--run" not in lines[0]
