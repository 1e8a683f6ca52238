"""Named classification heads: the SqueezeNet1.1 reference head (docs/fidelity.md row 12) next
to marsbench's Linear head, and the paper profile choosing it."""

from __future__ import annotations

import pytest
import torch
import torchvision
from torch import nn

from marsbench.errors import OptionError
from marsbench.models import build_classifier, get_spec
from marsbench.models.heads import ConvPoolHead, NormLinearHead
from marsbench.models.registry import spec_for_run
from marsbench.runs import RunSpec
from marsbench.training.run import run_experiment

REF = "squeezenet1_1_reference_head"


@pytest.fixture
def squeezenet_weights(tmp_path, monkeypatch):
    """A random SqueezeNet1.1 state dict where torchvision's cache holds the published file
    (downloads off): the 'pretrained' weights of the feature_extraction / fine_tuning tests."""
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    monkeypatch.setenv("MARSBENCH_OFFLINE", "1")
    url = torchvision.models.get_model_weights("squeezenet1_1")["IMAGENET1K_V1"].url
    checkpoints = tmp_path / "torch" / "hub" / "checkpoints"
    checkpoints.mkdir(parents=True)
    torch.manual_seed(1)
    state = torchvision.models.squeezenet1_1().state_dict()
    torch.save(state, checkpoints / url.rsplit("/", 1)[-1])
    return state


def test_reference_head_equals_torchvision_squeezenet_with_the_same_weights(tmp_path) -> None:
    """The oracle is torchvision's own SqueezeNet1.1 with a 3-class classifier, which is what
    the reference trains; its state dict (native names) loads into the reference variant."""
    torch.manual_seed(0)
    oracle = torchvision.models.squeezenet1_1(num_classes=3).eval()
    torch.save(oracle.state_dict(), tmp_path / "sq.pth")
    model = build_classifier(REF, 3, "fine_tuning", weights=tmp_path / "sq.pth").eval()
    assert not model.load_report.shape_mismatch and "head.1.weight" in model.load_report.loaded
    x = torch.randn(4, 3, 64, 64)
    with torch.no_grad():
        got = model(x)
        assert torch.allclose(got, oracle(x), atol=1e-6)
        assert got.shape == (4, 3) and (got >= 0).all()
        assert model.backbone(x).shape == (4, 512, 3, 3)  # the map the head (and cache) sees


def test_reference_head_is_dropout_conv_relu_pool() -> None:
    torch.manual_seed(0)
    head = ConvPoolHead(8, 2)
    by_hand = nn.Sequential(nn.Dropout(0.5), nn.Conv2d(8, 2, 1), nn.ReLU(),
                            nn.AdaptiveAvgPool2d(1), nn.Flatten(1))
    by_hand.load_state_dict(head.state_dict())
    x = torch.randn(5, 8, 3, 3)
    head.eval(), by_hand.eval()
    assert torch.equal(head(x), by_hand(x)) and (head(x) >= 0).all()
    assert (head.in_features, head.out_features) == (8, 2)
    head.train()
    assert not torch.equal(head(x), head(x))  # dropout on while training, as the reference


def test_the_two_squeezenet_heads_are_named_apart() -> None:
    base, ref = get_spec("squeezenet1_1"), get_spec(REF)
    assert (base.head.name, ref.head.name) == ("linear", "squeezenet_reference")
    assert base.to_dict()["head"] != ref.to_dict()["head"]
    linear = build_classifier(base, 3, "scratch")
    conv = build_classifier(ref, 3, "scratch")
    assert isinstance(linear.head, nn.Linear) and isinstance(conv.head, ConvPoolHead)
    assert linear.describe()["head"] == "linear" and conv.describe()["head"] != "linear"
    assert linear.feature_key() != conv.feature_key()  # a map is not a pooled vector
    # the paper profile builds the reference head where a head trains; probes keep the pooled one
    for regime in ("scratch", "feature_extraction", "fine_tuning"):
        assert spec_for_run(base, "paper", regime) is ref
        assert spec_for_run(base, "marsbench", regime) is base
    assert spec_for_run(base, "paper", "linear_probe") is base
    with pytest.raises(OptionError, match="no pooled features for a probe.*use squeezenet1_1 "
                                          "for probes"):
        spec_for_run(ref, "marsbench", "linear_probe")


def _spec(synth_suite, model: str, regime: str, **kw) -> RunSpec:
    name = "mb-frost_cls"
    return RunSpec(dataset=name, model=model, regime=regime,
                   data_root=str(synth_suite["folder"][name].parent), max_epochs=1, patience=0,
                   batch_size=16, lr=1e-3, precision="fp32", options={"input_size": 64}, **kw)


@pytest.mark.usefixtures("isolated_cache")
@pytest.mark.parametrize("regime", ["feature_extraction", "fine_tuning", "scratch"])
def test_a_reference_head_run_trains_in_every_regime(synth_suite, squeezenet_weights, regime,
                                                     monkeypatch) -> None:
    monkeypatch.setenv("MARSBENCH_WORKERS", "0")
    record = run_experiment(_spec(synth_suite, REF, regime))
    assert record.extra["head"] == "squeezenet_reference" and record.epochs_run == 1
    assert 0.0 <= record.metrics["test"]["accuracy"] <= 1.0
    if regime == "feature_extraction":  # the cached 512-channel maps, the head trained on them
        assert record.extra["fe_path"] == "cached"
        again = run_experiment(_spec(synth_suite, REF, regime, seed=1))
        assert all(again.extra["feature_cache_hits"].values())
        assert again.extra["head"] == "squeezenet_reference"


@pytest.mark.usefixtures("isolated_cache")
def test_the_paper_profile_trains_squeezenet_with_the_reference_head(synth_suite,
                                                                     squeezenet_weights,
                                                                     monkeypatch) -> None:
    monkeypatch.setenv("MARSBENCH_WORKERS", "0")
    paper = run_experiment(_spec(synth_suite, "squeezenet1_1", "fine_tuning", profile="paper"))
    ours = run_experiment(_spec(synth_suite, "squeezenet1_1", "fine_tuning"))
    assert (paper.extra["head"], ours.extra["head"]) == ("squeezenet_reference", "linear")
    assert paper.spec.key != ours.spec.key and paper.spec.label != ours.spec.label
    assert paper.spec.model == ours.spec.model == "squeezenet1_1"  # the published name is kept


def test_norm_linear_head_is_layernorm_then_linear() -> None:
    head = NormLinearHead(6, 2)
    assert torch.equal(head.fc_norm.weight, torch.ones(6))
    assert torch.equal(head.fc_norm.bias, torch.zeros(6)) and head.fc_norm.eps == 1e-6
    x = torch.randn(3, 6)
    expected = head.fc(nn.functional.layer_norm(x, (6,), eps=1e-6))
    assert torch.allclose(head(x), expected)


def test_a_probe_on_the_feature_map_is_refused_in_one_line(synth_suite) -> None:
    with pytest.raises(OptionError) as info:
        run_experiment(_spec(synth_suite, REF, "linear_probe"))
    assert "\n" not in str(info.value) and "use squeezenet1_1 for probes" in str(info.value)
