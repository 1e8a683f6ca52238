"""The classification trainer: regimes, frozen backbone, best-checkpoint restore, cache, determinism."""

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from marsbench.errors import MarsbenchError
from marsbench.runs.spec import RunSpec
from marsbench.runs.store import ResultsStore
from marsbench.training import features as feature_cache
from marsbench.training.loop import fit
from marsbench.training.run import run_experiment

FAST = dict(max_epochs=2, patience=0, batch_size=8, lr=1e-3, options={"input_size": "32"})


pytestmark = pytest.mark.usefixtures("isolated_cache")  # tests/conftest.py


def spec_for(synth_suite, name, regime, **kw):
    root = synth_suite["folder"][name].parent
    options = {**FAST, **kw}
    extra = dict(options.pop("options"))
    extra.update(options.pop("more_extra", {}))
    return RunSpec(dataset=name, model="efficientnet_lite0", regime=regime, data_root=str(root),
                   options=extra, **options)


def test_fit_restores_the_best_validation_weights():
    module = torch.nn.Linear(1, 1, bias=False)
    losses = iter([3.0, 1.0, 2.0, 5.0, 6.0])  # best at epoch 2
    snapshots = []

    def train_epoch(opt):
        with torch.no_grad():
            module.weight += 1.0
        snapshots.append(module.weight.item())
        return 0.0

    result = fit(module, train_epoch=train_epoch, val_loss=lambda: next(losses),
                 optimizer="sgd", lr=0.1, weight_decay=0.0, scheduler="none", max_epochs=5,
                 patience=2)
    assert result.best_epoch == 2 and result.epochs_run == 4  # stopped by patience
    assert module.weight.item() == pytest.approx(snapshots[1])


@pytest.mark.parametrize("name", ["mb-frost_cls", "mb-landmark_cls", "mb-surface_multi_label_cls",
                                  "mb-change_cls_ctx"])
@pytest.mark.parametrize("regime", ["scratch", "feature_extraction", "fine_tuning"])
def test_regimes_train_and_score(synth_suite, name, regime):
    spec = spec_for(synth_suite, name, regime)
    record = run_experiment(spec)
    assert record.ok and record.epochs_run == 2 and record.best_epoch in (1, 2)
    test = record.metrics["test"]
    assert 0.0 <= test["f1_weighted"] <= 1.0 and "per_class_f1" in test
    assert np.isfinite(record.metrics["val"]["loss"])
    assert record.extra["split_sizes"]["train"] > 0
    assert record.timings["total_s"] >= record.timings["training_s"]


def test_feature_extraction_freezes_backbone_for_real(synth_suite):
    """Online path (backbone run every step, augmentation on): backbone weights and BatchNorm
    running statistics are unchanged, the head changed."""
    from marsbench.models.classifier import build_classifier
    from marsbench.training.run import open_splits, train

    spec = spec_for(synth_suite, "mb-landmark_cls", "feature_extraction",
                    more_extra={"fe_path": "online"})
    splits = open_splits(spec)
    model = build_classifier("efficientnet_lite0", 8, "feature_extraction")
    before = {k: v.clone() for k, v in model.backbone.state_dict().items()}
    head_before = model.head.weight.clone()
    train(spec, splits, model=model, device="cpu")
    after = model.backbone.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)  # incl. running_mean/var
    assert not torch.equal(head_before, model.head.weight)
    assert not any(p.requires_grad for p in model.backbone.parameters())


def test_cached_features_skip_the_backbone_on_later_runs(synth_suite, monkeypatch):
    first = run_experiment(spec_for(synth_suite, "mb-frost_cls", "feature_extraction"))
    assert first.extra["feature_cache_hits"] == {"train": False, "val": False, "test": False}
    feature_cache.clear_memory_cache()  # later runs read the disk cache

    def no_backbone(*a, **k):
        raise AssertionError("backbone ran although its features were cached")

    monkeypatch.setattr("marsbench.training.classification.compute_features", no_backbone)
    other = run_experiment(spec_for(synth_suite, "mb-frost_cls", "feature_extraction",
                                    lr=1e-4, seed=7))
    assert other.extra["feature_cache_hits"] == {"train": True, "val": True, "test": True}
    assert other.timings["feature_extraction_s"] < first.timings["feature_extraction_s"]


@pytest.mark.parametrize("regime,fe_path", [("feature_extraction", "cached"),
                                            ("fine_tuning", None)])
def test_same_spec_and_seed_give_identical_metrics(synth_suite, regime, fe_path):
    extra = {"fe_path": fe_path} if fe_path else {}
    spec = spec_for(synth_suite, "mb-landmark_cls", regime, more_extra=extra)
    a = run_experiment(spec)
    feature_cache.clear_memory_cache()
    b = run_experiment(spec)
    assert a.metrics == b.metrics and a.val_loss == b.val_loss


def test_cached_and_fresh_features_give_the_same_run(synth_suite):
    """A run that finds its features cached (and builds no backbone) equals one that computed
    them: the head's init depends on the seed only."""
    spec = spec_for(synth_suite, "mb-frost_cls", "feature_extraction")
    fresh = run_experiment(spec)
    cached = run_experiment(spec)
    assert cached.extra["feature_cache_hits"]["train"] and not fresh.extra["feature_cache_hits"]["train"]
    assert cached.metrics == fresh.metrics


def test_run_cli_records_and_recognises_a_repeat(synth_suite, tmp_path):
    from marsbench.cli.main import app

    root = synth_suite["folder"]["mb-frost_cls"].parent
    store = tmp_path / "results.sqlite"
    args = ["run", "--dataset", "mb-frost_cls", "--model", "efficientnet_lite0", "--regime",
            "feature_extraction", "--root", str(root), "--max-epochs", "2", "--store", str(store),
            "--out", str(tmp_path / "out"), "--quiet"]
    first = CliRunner().invoke(app, args, terminal_width=200)
    assert first.exit_code == 0, first.output
    assert "f1_weighted" in first.output
    records = ResultsStore(store).records()
    assert len(records) == 1 and records[0].ok
    rec = records[0]
    assert rec.spec.dataset == "mb-frost_cls" and rec.best_epoch and rec.code_fingerprint
    assert rec.data_fingerprint and rec.versions["torch"] and rec.device == "cpu"
    preds = (tmp_path / "out" / "predictions" / f"{rec.spec.short_key}.csv").read_text()
    assert preds.splitlines()[0].startswith("split,id,true,pred,p_")
    second = CliRunner().invoke(app, args, terminal_width=200)
    assert second.exit_code == 0 and "already in" in second.output
    assert len(ResultsStore(store).records()) == 1


def test_failed_run_is_recorded_with_its_error(synth_suite, tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "empty-torch-home"))
    store = ResultsStore(tmp_path / "r.sqlite")
    spec = spec_for(synth_suite, "mb-frost_cls", "feature_extraction").replace(model="resnet101")
    with pytest.raises(MarsbenchError, match="resnet101"):
        run_experiment(spec, store=store)  # missing weights: an environment error, not a result
    assert store.records() == []

    def broken(*args, **kwargs):
        raise RuntimeError("CUDA error: an illegal memory access was encountered")

    monkeypatch.setattr("marsbench.training.engine.train_task", broken)
    with pytest.raises(RuntimeError, match="illegal memory access"):
        run_experiment(spec_for(synth_suite, "mb-frost_cls", "scratch"), store=store)
    (record,) = store.records()
    assert record.status == "failed" and "illegal memory access" in record.error


def test_feature_cache_survives_same_seed_writers_and_corrupt_files(tmp_path):
    """Two workers with the same seed once shared a temporary file name and corrupted the
    cache; an unreadable entry is recomputed, not fatal."""
    torch.manual_seed(0)
    feature_cache.cached_features("k", tmp_path, lambda: torch.ones(2, 3))
    names_a = {p.name for p in tmp_path.iterdir()}
    (tmp_path / "k.pt").write_bytes(b"not a tensor file")
    feature_cache.clear_memory_cache()
    with pytest.warns(UserWarning, match="unreadable"):
        feats, hit = feature_cache.cached_features("k", tmp_path, lambda: torch.zeros(2, 3))
    assert not hit and torch.equal(feats, torch.zeros(2, 3))
    feature_cache.clear_memory_cache()
    again, hit = feature_cache.cached_features("k", tmp_path, lambda: torch.ones(1))
    assert hit and torch.equal(again, torch.zeros(2, 3))
    assert names_a == {"k.pt"}  # no temporary file left behind


@pytest.mark.parametrize("profile, outputs", [("marsbench", 2), ("paper", 1)])
def test_binary_ce_is_two_logit_ce_except_under_the_paper_profile(synth_suite, profile, outputs):
    """The reference's cross_entropy on a binary task is one-logit BCE (fidelity row 13): under
    profile paper loss=ce builds one output, under marsbench two (softmax CE)."""
    from marsbench.runs.data import open_splits
    from marsbench.training.run import default_model

    spec = spec_for(synth_suite, "mb-frost_cls", "scratch", loss="ce").replace(profile=profile)
    model = default_model(spec, open_splits(spec))
    with torch.no_grad():
        assert model.eval()(torch.zeros(2, 3, 32, 32)).shape == (2, outputs)
