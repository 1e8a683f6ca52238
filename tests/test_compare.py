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
