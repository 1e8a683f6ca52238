"""Probe regimes on the cached frozen features: kNN, logistic regression, MLP, few-shot
episodes; scikit-learn and brute force as oracles; each probe its own regime."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from marsbench.errors import OptionError
from marsbench.runs import ResultsStore, RunSpec
from marsbench.training.run import open_splits, run_experiment

pytestmark = pytest.mark.usefixtures("isolated_cache")  # tests/conftest.py


def _spec(synth_suite, dataset="mb-landmark_cls", regime="knn", **kw):
    root = synth_suite["folder"][dataset].parent
    kw.setdefault("options", {"input_size": 32})
    return RunSpec(dataset=dataset, model="efficientnet_lite0", regime=regime,
                   data_root=str(root), max_epochs=2, batch_size=8, **kw)


def _fitted(spec):
    from marsbench.training.probes import FewShotTask, ProbeTask
    from marsbench.training.run import default_model
    from marsbench.training.task import EngineContext

    splits = open_splits(spec)
    cls = FewShotTask if spec.regime == "few_shot_episodes" else ProbeTask
    task = cls(EngineContext(spec, torch.device("cpu")), splits,
               lambda: default_model(spec, splits))
    task.setup()
    task.fit()
    return task


def test_linear_probe_equals_scikit_learn_on_the_same_features(synth_suite):
    from sklearn.linear_model import LogisticRegression
    from sklearn.preprocessing import StandardScaler

    from marsbench.training.probes import LINEAR_MAX_ITER

    task = _fitted(_spec(synth_suite, regime="linear_probe"))
    c = task.info["probe"]["C"]
    scaler = StandardScaler().fit(task.x["train"])
    oracle = LogisticRegression(C=c, solver="lbfgs", max_iter=LINEAR_MAX_ITER).fit(
        scaler.transform(task.x["train"]), task.y["train"])
    for split in ("val", "test"):
        expected = oracle.predict_proba(scaler.transform(task.x[split]))
        ours = np.exp(task.logits(split)[0].numpy())[:, oracle.classes_]
        np.testing.assert_allclose(ours, expected, rtol=1e-6, atol=1e-7)
    # C was chosen on validation log-loss: no C of the grid does better there
    assert task.info["probe"]["val_losses"][f"{c:g}"] == min(
        task.info["probe"]["val_losses"].values())


def test_knn_equals_a_brute_force_cosine_vote(synth_suite):
    task = _fitted(_spec(synth_suite, regime="knn"))
    k = task.info["probe"]["k"]
    train, y = task.x["train"], task.y["train"].astype(int)
    unit = train / np.linalg.norm(train, axis=1, keepdims=True)
    classes = task.splits["train"].num_classes
    for split in ("val", "test"):
        q = task.x[split] / np.linalg.norm(task.x[split], axis=1, keepdims=True)
        nearest = np.argsort(-(q @ unit.T), axis=1, kind="stable")[:, :k]
        votes = np.stack([np.bincount(y[row], minlength=classes) for row in nearest]) / k
        ours = np.exp(task.logits(split)[0].numpy())
        ours[ours < 1e-6] = 0.0
        np.testing.assert_allclose(ours, votes, atol=1e-6)


def test_few_shot_episodes_on_planted_features(synth_suite):
    """Separated class clusters: every episode right; random features: about 1 / ways."""
    task = _fitted(_spec(synth_suite, regime="few_shot_episodes",
                         options={"input_size": 32, "episodes": 50, "ways": 3, "shots": 2,
                                  "queries": 3}))
    rng = np.random.default_rng(0)
    centres = rng.normal(size=(task.splits["train"].num_classes, 16)) * 10
    for split in ("train", "val", "test"):
        labels = task.y[split].astype(int)
        task.x[split] = centres[labels] + rng.normal(size=(len(labels), 16)) * 0.01
    task.fit()
    result = task.evaluate("test")
    assert result["accuracy"] == 1.0 and result["f1_weighted"] == 1.0
    assert result["ways"] == 3 and result["episodes"] == 50
    for split in ("train", "val", "test"):
        task.x[split] = rng.normal(size=task.x[split].shape)
    task.fit()
    noise = task.evaluate("test")
    assert noise["accuracy_ci_low"] <= noise["accuracy"] <= noise["accuracy_ci_high"]
    assert 0.1 < noise["accuracy"] < 0.6  # chance is 1/3


@pytest.mark.parametrize("regime", ["knn", "linear_probe", "mlp_probe", "few_shot_episodes"])
def test_each_probe_runs_end_to_end_as_its_own_regime(synth_suite, regime, tmp_path):
    store = ResultsStore(tmp_path / "s.sqlite")
    spec = _spec(synth_suite, regime=regime, options={"input_size": 32, "episodes": 20}
                 if regime == "few_shot_episodes" else {"input_size": 32})
    record = run_experiment(spec, store=store, out_dir=tmp_path / "out")
    assert record.ok and record.spec.regime == regime
    assert 0.0 <= record.metrics["test"]["f1_weighted"] <= 1.0
    assert np.isfinite(record.val_loss)
    assert record.extra["probe"]["name"] == regime
    fe = run_experiment(_spec(synth_suite, regime="feature_extraction"), store=store)
    assert fe.spec.key != record.spec.key
    table = store.to_table()
    assert set(table["regime"]) == {regime, "feature_extraction"}  # reported apart
    if regime == "mlp_probe":
        assert record.extra["history"] and record.epochs_run >= 1
    if regime in ("knn", "linear_probe"):
        assert (tmp_path / "out" / "predictions" / f"{spec.short_key}.csv").is_file()


def test_probes_read_the_features_feature_extraction_cached(synth_suite):
    first = run_experiment(_spec(synth_suite, regime="feature_extraction"))
    assert not any(first.extra["feature_cache_hits"].values())
    probe = run_experiment(_spec(synth_suite, regime="linear_probe"))
    assert all(probe.extra["feature_cache_hits"].values())


def test_multi_label_probes_and_few_shot_refusal(synth_suite):
    record = run_experiment(_spec(synth_suite, "mb-surface_multi_label_cls", "linear_probe"))
    assert record.ok and "f1_weighted" in record.metrics["test"]
    with pytest.raises(OptionError, match="single-label"):
        _spec(synth_suite, "mb-surface_multi_label_cls", "few_shot_episodes")


def test_probe_options_are_checked(synth_suite):
    with pytest.raises(OptionError, match="few_shot_episodes only"):
        _spec(synth_suite, regime="knn", options={"shots": 3})
    with pytest.raises(OptionError, match="classification probe"):
        RunSpec(dataset="mb-boulder_seg", model="unet", regime="linear_probe")
    with pytest.raises(OptionError, match="fe_path"):
        _spec(synth_suite, regime="knn", options={"fe_path": "online"})


def test_probe_suite_plans_every_probe_and_says_what_it_skips(synth_suite, tmp_path):
    from marsbench.protocol import load_experiment, make_plan

    root = synth_suite["folder"]["mb-frost_cls"].parent
    exp = load_experiment("paper:probe_suite").with_overrides(data_root=str(root))
    plan = make_plan(exp, ResultsStore(tmp_path / "s.sqlite"), check_data=False)
    regimes = {s.run.spec.regime for s in plan.grid}
    assert regimes == {"knn", "linear_probe", "mlp_probe", "few_shot_episodes"}
    assert len(plan.grid) == 9 * 6 * 4 - 6
    assert any("few_shot_episodes on mb-surface_multi_label_cls not planned" in w
               for w in plan.warnings)


def test_episode_f1_equals_scikit_learn():
    from sklearn.metrics import f1_score

    from marsbench.training.probes import weighted_f1

    rng = np.random.default_rng(3)
    for classes in (2, 3, 5):
        for _ in range(20):
            y, p = rng.integers(0, classes, 30), rng.integers(0, classes, 30)
            assert weighted_f1(y, p, classes) == pytest.approx(
                f1_score(y, p, average="weighted", zero_division=0), abs=1e-12)
