"""Class-imbalance strategies (run option ``imbalance``): exact weights, samplers and losses on
planted label distributions, library oracles (scikit-learn, torchvision), a synthetic long-tail
task where re-weighting must raise tail recall, the option's refusals and identity."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from marsbench.errors import OptionError
from marsbench.runs.options import build_options
from marsbench.runs.spec import RunSpec
from marsbench.training import imbalance as imb

PLANTED = np.array([0] * 6 + [1] * 3 + [2] * 1)  # counts 6 / 3 / 1, class 3 absent


def _plan(strategy, labels=PLANTED, classes=4, multilabel=False, outputs=None, seed=0):
    outputs = outputs or classes
    return imb.plan_for(strategy, labels, num_classes=classes, multilabel=multilabel,
                        num_outputs=outputs, seed=seed)


# -- numbers ------------------------------------------------------------------------------------

def test_loss_weights_are_exact_on_a_planted_distribution():
    from sklearn.utils.class_weight import compute_class_weight

    w = _plan("inverse_frequency").weights()
    np.testing.assert_allclose(w, [10 / 18, 10 / 9, 10 / 3, 0.0])  # N / (C n_c), C = 3 present
    np.testing.assert_allclose(w[:3], compute_class_weight("balanced", classes=np.arange(3),
                                                           y=PLANTED))
    b = imb.BETA
    raw = np.array([(1 - b) / (1 - b ** n) for n in (6, 3, 1)])
    np.testing.assert_allclose(_plan("effective_number").weights(),
                               [*(raw * 3 / raw.sum()), 0.0])
    # beta -> 0 gives equal weights; the record keeps the effective parameters
    np.testing.assert_allclose(imb.effective_number_weights(np.array([6, 3, 1]), 1e-9), 1.0)
    record = _plan("effective_number").record()
    assert record["beta"] == imb.BETA and record["train_counts"] == [6, 3, 1, 0]


def test_multilabel_weights_are_per_label_negatives_and_positives():
    labels = np.array([[1, 0], [1, 0], [0, 1], [1, 0], [0, 0]])  # label 0: 3 of 5, label 1: 1
    w = _plan("inverse_frequency", labels, classes=2, multilabel=True).weights()
    np.testing.assert_allclose(w, [[5 / 4, 5 / 8], [5 / 6, 5 / 2]])  # rows: negatives, positives
    logits = torch.tensor([[0.3, -1.0], [2.0, 0.5], [-0.2, 1.5], [0.0, 0.0], [1.0, -2.0]])
    y = torch.as_tensor(labels, dtype=torch.float32)
    elem = torch.where(y > 0, torch.tensor(w[1], dtype=torch.float32),
                       torch.tensor(w[0], dtype=torch.float32))
    expected = F.binary_cross_entropy_with_logits(logits, y, weight=elem, reduction="sum") \
        / elem.sum()
    got = _plan("inverse_frequency", labels, classes=2, multilabel=True).loss(None)(logits, y)
    assert float(got) == pytest.approx(float(expected), rel=1e-6)


def test_weighted_ce_is_torch_cross_entropy_with_the_weights():
    logits, y = torch.randn(10, 4, generator=torch.Generator().manual_seed(0)), \
        torch.as_tensor(PLANTED)
    plan = _plan("inverse_frequency")
    expected = F.cross_entropy(logits, y, weight=torch.tensor(plan.weights(), dtype=torch.float32))
    assert float(plan.loss(None)(logits, y)) == pytest.approx(float(expected))


def test_balanced_sampler_weights_and_frequencies():
    sampler = _plan("balanced_sampler").sampler()
    np.testing.assert_allclose(sampler.weights.numpy(), [1 / 6] * 6 + [1 / 3] * 3 + [1.0])
    # each present class carries the same total weight: equally likely per draw
    totals = np.bincount(PLANTED, weights=sampler.weights.numpy())
    np.testing.assert_allclose(totals, 1.0)
    assert len(sampler) == 10 and sampler.replacement
    draws = torch.multinomial(sampler.weights, 30_000, replacement=True,
                              generator=torch.Generator().manual_seed(0))
    freq = np.bincount(PLANTED[draws.numpy()], minlength=3) / 30_000
    np.testing.assert_allclose(freq, 1 / 3, atol=0.015)
    # seeded from the run seed: the same draws for the same seed, other draws for another
    again = list(_plan("balanced_sampler").sampler())
    assert list(_plan("balanced_sampler").sampler()) == again
    assert list(_plan("balanced_sampler", seed=1).sampler()) != again


def test_over_and_under_sampling_counts_are_exact_and_reproducible():
    over = _plan("oversample").indices()
    assert np.bincount(PLANTED[over]).tolist() == [6, 6, 6]
    assert set(range(10)) <= set(over.tolist())  # every original image kept
    under = _plan("undersample").indices()
    assert np.bincount(PLANTED[under]).tolist() == [1, 1, 1]
    assert len(set(under.tolist())) == 3  # without replacement
    np.testing.assert_array_equal(_plan("oversample").indices(), over)
    np.testing.assert_array_equal(_plan("undersample").indices(), under)
    labels = np.repeat([0, 1, 2], [50, 20, 5])
    seeds = {tuple(imb.undersample_indices(labels, s)) for s in range(5)}
    assert len(seeds) > 1  # another seed draws other images
    record = _plan("oversample").record()
    assert record["resampled_counts"] == [6, 6, 6, 0] and record["resampled_images"] == 18


# -- losses -------------------------------------------------------------------------------------

def test_logit_adjustment_equals_the_formula():
    logits = torch.randn(10, 4, generator=torch.Generator().manual_seed(1))
    y = torch.as_tensor(PLANTED)
    prior = torch.tensor([6, 3, 1, 1]) / 10  # the absent class counts as one image
    expected = F.cross_entropy(logits + imb.TAU * torch.log(prior), y)
    assert float(_plan("logit_adjustment").loss(None)(logits, y)) == pytest.approx(
        float(expected), rel=1e-6)
    # one-logit binary: the log-odds of the prior
    yb = np.array([0] * 8 + [1] * 2)
    z = torch.randn(10, 1, generator=torch.Generator().manual_seed(2))
    expected = F.binary_cross_entropy_with_logits(z.view(-1) + np.log(2 / 8),
                                                  torch.as_tensor(yb, dtype=torch.float32))
    got = _plan("logit_adjustment", yb, classes=2, outputs=1).loss(None)(z, torch.as_tensor(yb))
    assert float(got) == pytest.approx(float(expected), rel=1e-6)


def test_focal_equals_torchvision_and_reduces_to_ce_at_gamma_zero():
    from torchvision.ops import sigmoid_focal_loss

    g = torch.Generator().manual_seed(3)
    labels = (torch.rand(12, 3, generator=g) < 0.3).float()
    logits = torch.randn(12, 3, generator=g)
    plan = _plan("focal", labels.numpy(), classes=3, multilabel=True)
    expected = sigmoid_focal_loss(logits, labels, alpha=-1, gamma=imb.GAMMA, reduction="mean")
    assert float(plan.loss(None)(logits, labels)) == pytest.approx(float(expected))
    # softmax focal: cross-entropy at gamma 0, and the hand formula at gamma 2
    x, y = torch.randn(10, 4, generator=g), torch.as_tensor(PLANTED)
    assert float(imb.softmax_focal_loss(x, y, gamma=0.0)) == pytest.approx(
        float(F.cross_entropy(x, y)), rel=1e-6)
    p_t = F.softmax(x, 1)[torch.arange(10), y]
    hand = (-(1 - p_t) ** 2 * torch.log(p_t)).mean()
    assert float(_plan("focal").loss(None)(x, y)) == pytest.approx(float(hand), rel=1e-6)


def test_none_and_samplers_keep_the_base_loss():
    base = torch.nn.CrossEntropyLoss()
    for strategy in ("none", "balanced_sampler", "oversample", "undersample"):
        assert _plan(strategy).loss(base) is base


def test_reweighting_raises_tail_recall_on_a_long_tail():
    """Gaussian classes at 95 / 4 / 1 %, a linear head trained full-batch: without re-weighting
    the tail class is mostly swallowed by the head class; with it the tail is recalled."""
    rng = np.random.default_rng(0)
    means = np.array([[0.0, 0.0], [2.0, 0.0], [0.0, 2.0]])

    def draw(counts):
        y = np.repeat(np.arange(3), counts)
        return torch.tensor(means[y] + rng.normal(size=(len(y), 2)), dtype=torch.float32), y

    x_train, y_train = draw([950, 40, 10])
    x_test, y_test = draw([300, 300, 300])

    def tail_recall(strategy):
        torch.manual_seed(0)
        head = torch.nn.Linear(2, 3)
        criterion = _plan(strategy, y_train, classes=3).loss(torch.nn.CrossEntropyLoss())
        opt = torch.optim.Adam(head.parameters(), lr=0.05)
        target = torch.as_tensor(y_train)
        for _ in range(300):
            opt.zero_grad()
            criterion(head(x_train), target).backward()
            opt.step()
        pred = head(x_test).argmax(1).numpy()
        return float((pred[y_test == 2] == 2).mean())

    none = tail_recall("none")
    for strategy in ("inverse_frequency", "effective_number", "logit_adjustment"):
        assert tail_recall(strategy) > none + 0.3, strategy


# -- the option ---------------------------------------------------------------------------------

def test_the_option_refuses_bad_values_and_regimes_in_one_line():
    with pytest.raises(OptionError) as err:
        build_options("classification", {"imbalance": "smote"})
    assert "smote" in str(err.value) and "inverse_frequency" in str(err.value)
    for regime in ("knn", "few_shot_episodes"):
        with pytest.raises(OptionError) as err:
            build_options("classification", {"imbalance": "focal"}, regime=regime)
        assert f"regime {regime}" in str(err.value) and "\n" not in str(err.value)
    with pytest.raises(OptionError, match="class weights only"):
        build_options("classification", {"imbalance": "oversample"}, regime="linear_probe")
    assert build_options("classification", {"imbalance": "effective_number"},
                         regime="linear_probe").imbalance == "effective_number"
    with pytest.raises(OptionError, match="not a segmentation one"):
        build_options("segmentation", {"imbalance": "focal"})
    with pytest.raises(OptionError) as err:
        _plan("oversample", np.eye(3)[[0, 1, 2, 0]], classes=3, multilabel=True)
    assert "multi-label" in str(err.value) and "\n" not in str(err.value)


def test_imbalance_none_keeps_the_key_and_others_are_in_key_and_label():
    base = dict(dataset="mb-frost_cls", model="resnet18", regime="feature_extraction")
    plain = RunSpec(**base)
    assert RunSpec(**base, options={"imbalance": "none"}).key == plain.key
    focal = RunSpec(**base, options={"imbalance": "focal"})
    assert focal.key != plain.key and "imbalance=focal" in focal.label
    assert "imbalance" not in plain.label


# -- through the trainer ------------------------------------------------------------------------

@pytest.fixture(scope="module")
def synth_root(tmp_path_factory):
    from marsbench.sources.synth import generate

    root = tmp_path_factory.mktemp("imbalance_synth")
    for name in ("mb-landmark_cls", "mb-surface_multi_label_cls"):
        generate(name, root, scale=0.3)
    return root


def _run(root, dataset, regime, **options):
    from marsbench.training.run import run_experiment

    spec = RunSpec(dataset=dataset, model="efficientnet_lite0", regime=regime,
                   data_root=str(root), max_epochs=1, patience=0, batch_size=8,
                   options={"input_size": 32, **options})
    return run_experiment(spec)


@pytest.mark.usefixtures("isolated_cache")
def test_the_trainer_applies_and_records_each_path(synth_root):
    cached = _run(synth_root, "mb-landmark_cls", "feature_extraction",
                  imbalance="inverse_frequency")
    assert cached.ok, cached.error
    info = cached.extra["imbalance"]
    counts = np.asarray(info["train_counts"])
    np.testing.assert_allclose(info["weights"], imb.inverse_frequency_weights(counts), atol=1e-6)
    assert "recall_tail" in cached.metrics["test"]
    online = _run(synth_root, "mb-landmark_cls", "scratch", imbalance="oversample")
    assert online.ok, online.error
    resampled = online.extra["imbalance"]["resampled_counts"]
    assert set(c for c in resampled if c) == {max(info["train_counts"])}
    multi = _run(synth_root, "mb-surface_multi_label_cls", "feature_extraction",
                 imbalance="focal")
    assert multi.ok and multi.extra["imbalance"]["gamma"] == imb.GAMMA
    with pytest.raises(OptionError, match="multi-label"):
        _run(synth_root, "mb-surface_multi_label_cls", "feature_extraction",
             imbalance="undersample")


@pytest.mark.usefixtures("isolated_cache")
def test_linear_probe_weights_are_scikit_learns_balanced(synth_root):
    from sklearn.utils.class_weight import compute_class_weight

    from marsbench.training.probes import ProbeTask
    from marsbench.training.run import default_model, open_splits
    from marsbench.training.task import EngineContext

    spec = RunSpec(dataset="mb-landmark_cls", model="efficientnet_lite0", regime="linear_probe",
                   data_root=str(synth_root),
                   options={"input_size": 32, "imbalance": "inverse_frequency"})
    splits = open_splits(spec)
    task = ProbeTask(EngineContext(spec, torch.device("cpu")), splits,
                     lambda: default_model(spec, splits))
    task.setup()
    y = task.y["train"].astype(int)
    present = np.unique(y)
    expected = dict(zip(present.tolist(), compute_class_weight("balanced", classes=present, y=y)))
    got = task.balance.class_weight()
    assert got.keys() == expected.keys()
    np.testing.assert_allclose([got[c] for c in expected], list(expected.values()))
    assert task._linear(1.0)[-1].class_weight == got


# -- the report section -------------------------------------------------------------------------

def test_report_section_pairs_seeds_and_names_the_winner():
    from types import SimpleNamespace

    from marsbench.report.imbalance import imbalance_table

    base = dict(dataset="mb-landmark_cls", model="resnet101", regime="feature_extraction")
    matched = {}
    planted = {"none": (0.0, 0.0), "focal": (0.10, 0.30), "oversample": (-0.02, 0.05)}
    for strategy, (gain, tail_gain) in planted.items():
        for seed, f1, tail in ((0, 0.5, 0.1), (1, 0.6, 0.2), (2, 0.7, 0.0)):
            spec = RunSpec(**base, seed=seed, options={"imbalance": strategy})
            metrics = {"test": {"f1_weighted": f1 + gain + 0.01 * seed * (strategy == "oversample"),
                                "recall_tail": tail + tail_gain}}
            matched[(spec.label, spec.dataset, spec.regime, "full", seed)] = SimpleNamespace(
                spec=spec, metrics=metrics)
    table, notes = imbalance_table(matched, {"mb-landmark_cls": "f1_weighted"}, rounds=500,
                                   seed=0, confidence=0.95)
    rows = table.set_index("strategy")
    assert rows.loc["focal", "delta_headline"] == pytest.approx(0.10)
    assert rows.loc["focal", "delta_tail"] == pytest.approx(0.30)
    assert rows.loc["focal", "headline_low"] == pytest.approx(0.10)  # the same gain every seed
    assert bool(rows.loc["focal", "best"]) and bool(rows.loc["focal", "ci_excludes_zero"])
    assert rows.loc["oversample", "delta_headline"] == pytest.approx(-0.01)
    assert rows.loc["oversample", "seeds"] == 3 and not rows.loc["oversample", "best"]
    assert set(rows["model"]) == {"resnet101"}  # grouped on the label without imbalance
    assert len(notes) == 1 and "Best: focal; its interval excludes 0" in notes[0]
    assert "focal +0.100 [+0.100, +0.100], tail +0.300" in notes[0]
    only_none = {k: v for k, v in matched.items() if v.spec.options.imbalance == "none"}
    empty, no_notes = imbalance_table(only_none, {}, rounds=10, seed=0, confidence=0.95)
    assert empty.empty and no_notes == []


@pytest.mark.usefixtures("isolated_cache")
def test_sampled_cached_runs_are_reproducible(synth_root):
    first = _run(synth_root, "mb-landmark_cls", "feature_extraction", imbalance="balanced_sampler")
    again = _run(synth_root, "mb-landmark_cls", "feature_extraction", imbalance="balanced_sampler")
    assert first.ok and again.ok
    assert first.metrics["test"] == again.metrics["test"]
    assert first.extra["imbalance"]["sampler"]["seed"] == first.spec.seed


def test_the_report_shows_the_winner_from_run_records():
    from marsbench.aggregate import default_normaliser, results_table
    from marsbench.report import build_report_data, render_markdown
    from marsbench.runs import RunRecord

    rows, records = [], []
    for strategy, gain in (("none", 0.0), ("inverse_frequency", 0.05)):
        for seed in (0, 1, 2):
            spec = RunSpec(dataset="mb-landmark_cls", model="resnet101",
                           regime="feature_extraction", seed=seed,
                           options={"imbalance": strategy})
            value = 0.6 + 0.01 * seed + gain
            rows.append(dict(model=spec.label, dataset=spec.dataset, task="classification",
                             regime=spec.regime, variant="full", seed=seed,
                             metric="f1_weighted", value=value))
            records.append(RunRecord.success(spec, task="classification", metrics={
                "test": {"f1_weighted": value, "recall_tail": 0.2 + 2 * gain}}))
    data = build_report_data(results_table(rows), normaliser=default_normaliser(), rounds=100,
                             records=records)
    table = data.sections.imbalance
    assert table["strategy"].tolist() == ["inverse_frequency"]
    assert table["delta_tail"].iloc[0] == pytest.approx(0.10)
    text = render_markdown(data, [], "figures", "t")
    assert "Best: inverse_frequency; its interval excludes 0" in text
    # and as a table in both renderers
    assert "### Class imbalance" in text and "| inverse_frequency |" in text
    assert "best, CI excludes 0" in text
    from marsbench.report import render_html

    assert "Change over imbalance=none (test)" in render_html(data, [])
