"""The shared training engine: precision, loaders and determinism, for every task."""

from __future__ import annotations

import json

import re

import pytest
import torch

from marsbench.runs import RunSpec
from marsbench.training.engine import Precision, Stepper, default_workers, eval_batch_size
from marsbench.training.run import run_experiment


pytestmark = pytest.mark.usefixtures("isolated_cache")  # tests/conftest.py


def test_precision_resolution():
    cpu, cuda = torch.device("cpu"), torch.device("cuda")
    assert Precision.resolve("auto", cpu).name == "fp32"
    assert Precision.resolve("auto", cuda).name == "bf16"
    assert Precision.resolve("fp16", cpu).scaler() is None  # loss scaling is for CUDA fp16
    with Precision.resolve("bf16", cpu).autocast():
        y = torch.nn.Linear(4, 4)(torch.randn(2, 4))
    assert y.dtype == torch.bfloat16


def test_stepper_trains_under_bf16_and_keeps_fp32_parameters():
    torch.manual_seed(0)
    model = torch.nn.Linear(8, 1)
    x, y = torch.randn(64, 8), torch.randn(64, 1)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    stepper = Stepper(Precision.resolve("bf16", torch.device("cpu")))
    losses = [stepper.step(opt, lambda: torch.nn.functional.mse_loss(model(x).float(), y))
              for _ in range(30)]
    assert losses[-1] < 0.8 * losses[0]
    assert model.weight.dtype == torch.float32


def test_worker_and_batch_defaults(monkeypatch):
    monkeypatch.setenv("MARSBENCH_WORKERS", "3")
    assert default_workers(torch.device("cpu")) == 3
    monkeypatch.setenv("MARSBENCH_WORKERS", "many")
    with pytest.raises(ValueError, match="MARSBENCH_WORKERS"):
        default_workers(torch.device("cpu"))
    monkeypatch.delenv("MARSBENCH_WORKERS")
    assert eval_batch_size(torch.device("cuda"), 32) == 256  # no-gradient passes: large
    assert eval_batch_size(torch.device("cpu"), 128) == 128
    monkeypatch.setenv("MARSBENCH_EVAL_BATCH", "64")
    assert eval_batch_size(torch.device("cuda"), 32) == 64


@pytest.mark.parametrize("variable", ["MARSBENCH_WORKERS", "MARSBENCH_EVAL_BATCH"])
@pytest.mark.parametrize("text", ["-1", "inf", "nan", "x", "2.5", "99999999999999999999"])
def test_a_bad_loader_setting_in_the_environment_is_refused_never_ignored(monkeypatch, variable,
                                                                         text):
    """A negative worker count was clamped to 0 and a bad eval batch silently replaced by the
    default: the user's setting must be used or refused, naming the variable."""
    monkeypatch.setenv(variable, text)
    read = default_workers if variable == "MARSBENCH_WORKERS" else eval_batch_size
    with pytest.raises(ValueError, match=rf"^{variable} must be an integer from \d+ to \d+ "
                                         rf"\(environment\): {re.escape(text)}; e\.g\."):
        read(torch.device("cpu"))


def _cls(synth_suite, **kw) -> RunSpec:
    name = "mb-frost_cls"
    return RunSpec(dataset=name, model="efficientnet_lite0", regime="fine_tuning",
                   data_root=str(synth_suite["folder"][name].parent), max_epochs=2, patience=0,
                   batch_size=8, lr=1e-3, options={"input_size": 32}, **kw)


def test_same_seed_same_metrics_with_and_without_loader_workers(synth_suite, monkeypatch):
    monkeypatch.setenv("MARSBENCH_WORKERS", "0")
    a = run_experiment(_cls(synth_suite, precision="fp32"))
    monkeypatch.setenv("MARSBENCH_WORKERS", "2")
    b = run_experiment(_cls(synth_suite, precision="fp32"))
    assert a.metrics == b.metrics and a.val_loss == b.val_loss
    assert a.extra["precision"] == "fp32"


@pytest.mark.slow
def test_bf16_on_the_cpu_is_close_to_fp32(synth_suite, monkeypatch):
    monkeypatch.setenv("MARSBENCH_WORKERS", "0")
    fp32 = run_experiment(_cls(synth_suite, precision="fp32"))
    bf16 = run_experiment(_cls(synth_suite, precision="bf16"))
    assert bf16.extra["precision"] == "bf16" and bf16.spec.key != fp32.spec.key
    assert bf16.val_loss == pytest.approx(fp32.val_loss, rel=0.1)
    # the first epoch starts from the same weights on the same batches: bf16 rounding only
    # (later epochs follow their own trajectories on this 10-image set)
    first32, first16 = fp32.extra["history"][0], bf16.extra["history"][0]
    assert first16["train_loss"] == pytest.approx(first32["train_loss"], rel=0.05)
    assert first16["val_loss"] == pytest.approx(first32["val_loss"], rel=0.05)
    # the synthetic test split is tiny: at most one image may change its predicted class
    n_test = fp32.extra["split_sizes"]["test"]
    assert abs(bf16.metrics["test"]["accuracy"] - fp32.metrics["test"]["accuracy"]) \
        <= 1 / n_test + 1e-9


def test_auto_precision_is_fp32_on_the_cpu_and_keeps_the_key(synth_suite):
    spec = _cls(synth_suite)
    assert spec.key == _cls(synth_suite, precision="auto").key
    assert "precision" not in spec.identity()  # the default never re-keys older runs
    assert _cls(synth_suite, precision="bf16").label.endswith(" precision=bf16]")


def _fit(profile: str, losses: list[float], *, patience: int = 2, scheduler: str = "none"):
    from marsbench.training.loop import fit

    module = torch.nn.Linear(1, 1, bias=False)
    seen = iter(losses)
    epoch = [0]

    def train_epoch(opt) -> float:
        epoch[0] += 1
        with torch.no_grad():
            module.weight.fill_(float(epoch[0]))  # the weights say which epoch made them
        return 1.0

    result = fit(module, train_epoch=train_epoch, val_loss=lambda: next(seen),
                 optimizer="sgd", lr=0.1, weight_decay=0.0, scheduler=scheduler,
                 max_epochs=len(losses), patience=patience, profile=profile)
    return result, float(module.weight.detach())


def test_paper_profile_early_stopping_needs_min_delta_and_tests_the_last_epoch():
    losses = [1.0, 0.995, 0.992, 0.991, 0.5]
    ours, weight = _fit("marsbench", losses)
    assert ours.epochs_run == 5 and ours.best_epoch == 5 and weight == 5.0
    paper, weight = _fit("paper", losses)
    # 0.995 and 0.992 do not beat 1.0 by more than 0.01: two stale epochs stop the run
    assert paper.epochs_run == 3 and paper.best_epoch == 1
    assert paper.tested_epoch == 3 and weight == 3.0  # the reference tests the last weights
    ours, weight = _fit("marsbench", [1.0, 0.5, 0.9, 0.8])
    assert ours.tested_epoch == 2 and weight == 2.0  # ours restores the best checkpoint


@pytest.mark.parametrize("profile, name, expected", [
    ("marsbench", "cosine", dict(T_max=7, eta_min=0.0)),
    ("paper", "cosine", dict(T_max=100, eta_min=1e-6)),
    ("marsbench", "plateau", dict(patience=2)),
    ("paper", "plateau", dict(patience=5)),
    ("marsbench", "step", dict(step_size=2)),
    ("paper", "step", dict(step_size=10)),
])
def test_schedulers_follow_the_profile(profile, name, expected):
    from marsbench.runs.profiles import loop_settings
    from marsbench.training.loop import make_scheduler

    opt = torch.optim.SGD(torch.nn.Linear(1, 1).parameters(), lr=0.1)
    sched = make_scheduler(name, opt, 7, loop_settings(profile))
    for key, value in expected.items():
        assert getattr(sched, key) == value, key


def test_a_paper_profile_run_tests_the_last_epoch_and_records_it(synth_suite, monkeypatch):
    monkeypatch.setenv("MARSBENCH_WORKERS", "0")
    record = run_experiment(_cls(synth_suite, profile="paper", precision="fp32").replace(
        max_epochs=3, patience=0))
    assert record.spec.profile == "paper" and record.extra["tested_epoch"] == 3
    assert record.extra["tested_epoch"] == record.epochs_run


def test_shuffle_order_does_not_depend_on_workers():
    from marsbench.training.engine import make_loader

    def orders(workers: int) -> list[list[int]]:
        loader = make_loader(list(range(32)), batch_size=4, device=torch.device("cpu"),
                             shuffle=True, seed=7, collate_fn=list, workers=workers)
        state = torch.random.get_rng_state()
        out = [[i for batch in loader for i in batch] for _ in range(3)]  # three epochs
        assert torch.equal(state, torch.random.get_rng_state())  # the global RNG untouched
        return out

    in_process = orders(0)
    assert orders(2) == in_process  # persistent workers: the same epochs
    assert in_process[0] != in_process[1] and sorted(in_process[0]) == list(range(32))


def _backbone_bn_stats(model) -> list[torch.Tensor]:
    return [m.running_mean.clone() for m in model.backbone.modules()
            if isinstance(m, torch.nn.BatchNorm2d)]


@pytest.mark.parametrize("profile, drifts", [("marsbench", False), ("paper", True)])
def test_a_frozen_backbone_keeps_its_statistics_except_under_the_paper_profile(
        synth_suite, monkeypatch, profile, drifts):
    """The reference never calls .eval() on a frozen backbone: BatchNorm normalises with batch
    statistics and updates its running ones. marsbench's own profile keeps frozen frozen."""
    from marsbench.models.classifier import build_classifier

    monkeypatch.setenv("MARSBENCH_WORKERS", "0")
    built = []

    def spy(*args, **kwargs):
        model = build_classifier(*args, **kwargs)
        built.append((model, _backbone_bn_stats(model)))
        return model

    # run_experiment imports the builder when it runs: the spy sees the model it trains
    monkeypatch.setattr("marsbench.models.classifier.build_classifier", spy)
    spec = _cls(synth_suite, profile=profile, precision="fp32").replace(
        regime="feature_extraction", options={"input_size": 32, "fe_path": "online"})
    record = run_experiment(spec)
    assert record.ok
    (model, before), = built
    after = _backbone_bn_stats(model)
    assert before and any(not torch.equal(a, b) for a, b in zip(before, after)) == drifts
    assert all(not p.requires_grad for p in model.backbone.parameters())  # frozen either way


# -- the task protocol: one engine for every task ---------------------------------------------

class _Planted:
    """A least-squares task with a known answer, through the `TaskTrainer` protocol."""

    def __new__(cls, ctx, fail_export=False):
        from marsbench.training.task import TaskTrainer

        class Planted(TaskTrainer):
            def setup(self):
                g = torch.Generator().manual_seed(0)
                self.x = torch.randn(64, 4, generator=g)
                self.y = self.x @ torch.tensor([[1.0], [-2.0], [0.5], [3.0]])
                self.model = torch.nn.Sequential(torch.nn.Dropout(0.1), torch.nn.Linear(4, 1))
                torch.manual_seed(1)
                self.model[1].reset_parameters()
                return self.model

            @property
            def steps_per_epoch(self):
                return 4

            def train_batches(self):
                self.model.train()
                for i in range(4):
                    x, y = self.x[i * 16:(i + 1) * 16], self.y[i * 16:(i + 1) * 16]
                    yield (lambda x=x, y=y: torch.nn.functional.mse_loss(self.model(x), y)), 16

            def val_loss(self):
                self.model.eval()
                with torch.no_grad():
                    return float(torch.nn.functional.mse_loss(self.model(self.x), self.y))

            def evaluate(self, split):
                return {"mse": self.val_loss()}

            def export(self):
                if fail_export:
                    import errno

                    raise OSError(errno.ENOSPC, "No space left on device", "/out/p.csv")
                return None

        return Planted(ctx, {})


def _planted_run(fail_export=False, progress=None, **kw):
    from marsbench.training.engine import train_task
    from marsbench.training.task import EngineContext

    spec = RunSpec(dataset="mb-frost_cls", model="efficientnet_lite0", regime="scratch",
                   max_epochs=5, patience=0, lr=0.05, optimizer="adam", **kw)
    ctx = EngineContext(spec, torch.device("cpu"))
    return train_task(_Planted(ctx, fail_export), progress)


def test_engine_trains_a_planted_task_and_reports_every_stage():
    calls = []

    class Progress:
        def __call__(self, epoch, train_loss, val_loss):
            calls.append(("epoch", epoch))

        def batch(self, done, total):
            calls.append(("batch", done, total))

    result = _planted_run(progress=Progress())
    history = [h["val_loss"] for h in result.info["history"]]
    assert history[-1] < 0.5 * history[0]  # it learns
    assert result.metrics["val"]["loss"] == result.val_loss == min(history)
    assert calls[:5] == [("batch", i, 4) for i in range(1, 5)] + [("epoch", 1)]
    assert {"setup_s", "training_s", "evaluation_s", "feature_extraction_s"} <= set(
        result.timings)
    assert result.info["precision"] == "fp32" and result.info["compiled"] is False


def test_engine_epochs_do_not_depend_on_the_global_random_state():
    """Each epoch's dropout draws come from (seed, epoch): whatever consumed the global stream
    before the run, the same seed gives the same run; another seed another one."""
    torch.manual_seed(123)
    a = _planted_run()
    torch.rand(1000)
    b = _planted_run()
    c = _planted_run(seed=1)
    assert a.info["history"] == b.info["history"]
    assert a.info["history"] != c.info["history"]


def test_engine_keeps_the_metrics_when_the_predictions_cannot_be_written():
    with pytest.warns(RuntimeWarning, match="predictions could not be written"):
        result = _planted_run(fail_export=True)
    problem = result.info["predictions_error"]
    assert "No space left" in problem and "/out/p.csv" in problem and "\n" not in problem
    assert result.predictions_path is None and "mse" in result.metrics["test"]


def test_one_regime_freezes_every_task_model_alike():
    """Classifier and dense models share `RegimeModel`: frozen parts take no gradients, stay in
    eval mode under train() (unless the paper profile asks otherwise), and a run snapshots only
    what it trains."""
    from marsbench.models.classifier import build_classifier
    from marsbench.models.regime import RegimeModel
    from marsbench.models.segmentation import build_segmenter

    models = [build_classifier("efficientnet_lite0", 3, "feature_extraction"),
              build_segmenter("unet_efficientnet_lite0", 3, "feature_extraction")]
    for model in models:
        assert isinstance(model, RegimeModel) and model.frozen_names
        trained = {id(p) for p in model.trained().parameters()}
        assert trained == {id(p) for p in model.parameters() if p.requires_grad}
        assert 0 < len(trained) < len(list(model.parameters()))
        frozen = model.frozen_modules[0]
        model.train()
        assert not frozen.training
        model.frozen_in_train_mode = True
        model.train()
        assert frozen.training
        # its BatchNorm statistics now move: a best-epoch snapshot must hold them
        assert model.trained().state_dict().keys() == model.state_dict().keys()
    tuned = build_classifier("efficientnet_lite0", 3, "fine_tuning")
    assert tuned.trained() is tuned and not tuned.frozen_names
    with pytest.raises(ValueError, match="scratch"):
        build_segmenter("unet_efficientnet_lite0", 3, "scratch", weights="x.pt")


@pytest.mark.parametrize("dataset,model,options", [
    ("mb-crater_binary_seg", "unet_efficientnet_lite0",
     {"input_policy": "reference", "input_size": "32"}),
    ("mb-boulder_det", "fasterrcnn_efficientnet_lite0",
     {"input_policy": "reference", "input_size": "64"}),
])
def test_same_seed_same_metrics_for_dense_tasks(synth_suite, dataset, model, options):
    spec = RunSpec(dataset=dataset, model=model, regime="fine_tuning", precision="fp32",
                   data_root=str(synth_suite["folder"][dataset].parent), max_epochs=2,
                   patience=0, batch_size=8, lr=1e-3, options=options)
    torch.manual_seed(5)
    a = run_experiment(spec)
    torch.rand(100)
    b = run_experiment(spec)
    # NaN-aware (mAP of an absent object size is NaN): equal JSON text
    assert json.dumps(a.metrics, sort_keys=True) == json.dumps(b.metrics, sort_keys=True)
    assert a.val_loss == b.val_loss and a.extra["history"] == b.extra["history"]


def test_paper_profile_resizes_without_antialiasing(synth_suite):
    """The reference resizes with cv2 INTER_LINEAR (no antialiasing); the paper profile does,
    and records it; marsbench's profile keeps antialiasing."""
    ours = run_experiment(_cls(synth_suite).replace(max_epochs=1))
    paper = run_experiment(_cls(synth_suite).replace(max_epochs=1, profile="paper"))
    assert ours.extra["preprocessing"]["antialias"] is True
    assert paper.extra["preprocessing"]["antialias"] is False


def test_paper_profile_normalises_every_rgb_model_with_imagenet_statistics():
    from marsbench.models.preprocess import IMAGENET_MEAN, IMAGENET_STD, Preprocessing, for_profile

    dpt_like = Preprocessing(input_size=224, mean=(0.5,) * 3, std=(0.5,) * 3)
    paper = for_profile(dpt_like, "paper")
    assert (paper.mean, paper.std, paper.antialias) == (IMAGENET_MEAN, IMAGENET_STD, False)
    assert for_profile(dpt_like, "marsbench") is dpt_like
    six_bands = Preprocessing(input_size=224, in_channels=6, mean=(0.1,) * 6, std=(0.2,) * 6)
    assert for_profile(six_bands, "paper").mean == (0.1,) * 6  # its own statistics


def test_reference_generalised_dice_weights_an_absent_class_1e10():
    """The reference clamps class volumes at 1e-5: an absent class weighs 1e10 (hand-computed
    on a 2x2 image, class 1 absent)."""
    from marsbench.training.segmentation import SegmentationLoss, reference_generalized_dice

    onehot = torch.zeros(1, 2, 2, 2)
    onehot[0, 0] = 1.0  # every pixel class 0
    probs = torch.full((1, 2, 2, 2), 0.5)
    w0, w1 = 1 / 16, 1 / (1e-5) ** 2  # volumes 4 and the clamped 1e-5
    inter = w0 * 2.0 + w1 * 0.0  # 4 pixels x 0.5 for class 0, nothing for class 1
    union = w0 * (2.0 + 4.0) + w1 * (2.0 + 0.0)
    expected = 1 - (2 * inter + 1e-5) / (union + 1e-5)
    assert float(reference_generalized_dice(probs, onehot)) == pytest.approx(expected, rel=1e-6)
    assert expected > 0.999  # the absent class dominates, as in the reference
    loss = SegmentationLoss("dice", 2, "square", reference_dice=True)
    assert "reference clamp" in loss.description
    logits = torch.zeros(1, 2, 2, 2)  # softmax 0.5 everywhere
    assert float(loss(logits, torch.zeros(1, 2, 2, dtype=torch.long))) == pytest.approx(
        expected, rel=1e-5)
