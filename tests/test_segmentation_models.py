"""Segmentation models: registry, real Lite0 weights, missing-weights errors, frozen means frozen,
losses, and full-resolution (padded and tiled) inference."""

import dataclasses

import numpy as np
import pytest
import torch
from torch import nn

from marsbench.models import get_spec
from marsbench.models.builders import build_efficientnet_lite0
from marsbench.models.segmentation import DenseModel, build_segmenter
from marsbench.models.spec import Regime
from marsbench.models.weights import WeightsLoadError, WeightsUnavailableError
from marsbench.training.segmentation import (
    IGNORE,
    InputPolicy,
    SegmentationLoss,
    augment_pair,
    predict_logits,
)

TINY_DPT = "dpt:vit_tiny_patch16_224"


@pytest.fixture
def offline(monkeypatch, tmp_path):
    monkeypatch.setenv("MARSBENCH_OFFLINE", "1")
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "hf"))  # read at import time


@pytest.mark.parametrize("name", ["unet", "deeplabv3plus", "segformer", TINY_DPT,
                                  "unet:resnet18", "unet:tu-mobilenetv3_small_050"])
def test_scratch_models_build_and_keep_the_input_size(name):
    model = build_segmenter(name, 3, "scratch")
    assert model.weights_tag == "random"
    assert model.spec.head_names == ("decoder", "segmentation_head")
    model.eval()
    with torch.no_grad():
        out = model(torch.randn(1, 3, 64, 96))
    assert out.shape == (1, 3, 64, 96)


def test_reference_specs_declare_their_encoders():
    assert get_spec("unet").weights.hf_hub_id == "smp-hub/resnet34.imagenet"
    assert get_spec("dpt").weights.hf_hub_id == "timm/vit_base_patch16_224.augreg_in21k"
    assert get_spec("dpt").mean == (0.5, 0.5, 0.5)
    assert get_spec("unet").paper_baseline
    assert not get_spec("unet_efficientnet_lite0").paper_baseline
    with pytest.raises(KeyError, match="unknown model"):
        get_spec("unet:no_such_encoder_xyz")


@pytest.mark.parametrize("name", ["unet", "deeplabv3plus", "segformer", "dpt"])
@pytest.mark.parametrize("regime", ["feature_extraction", "fine_tuning"])
def test_missing_reference_weights_are_a_clear_error(offline, name, regime):
    with pytest.raises(WeightsUnavailableError, match="not cached.*MARSBENCH_OFFLINE=1"):
        build_segmenter(name, 2, regime)


def test_lite0_encoder_holds_the_package_weights():
    model = build_segmenter("unet_efficientnet_lite0", 2, "fine_tuning")
    reference = build_efficientnet_lite0(True).backbone.state_dict()
    encoder = model.net.encoder.model.state_dict()
    for key in ("conv_stem.weight", "blocks.3.1.conv_pw.weight", "bn1.running_var"):
        torch.testing.assert_close(encoder[key], reference[key])
    assert "efficientnet-lite0" in model.weights_tag


def _train_steps(model: DenseModel, steps: int = 2):
    opt = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=0.1)
    loss_fn = SegmentationLoss("combined", model.num_classes)
    model.train()
    for _ in range(steps):
        x = torch.randn(2, 3, 32, 32) * 3
        y = torch.randint(0, model.num_classes, (2, 32, 32))
        opt.zero_grad()
        loss_fn(model(x), y).backward()
        opt.step()


def _snapshot(module: nn.Module):
    return {k: v.clone() for k, v in module.state_dict().items()}


@pytest.mark.parametrize("name", ["unet_efficientnet_lite0", "deeplabv3plus_efficientnet_lite0",
                                  "segformer_efficientnet_lite0"])
def test_feature_extraction_freezes_the_encoder_for_real(name):
    model = build_segmenter(name, 3, "feature_extraction")
    encoder, decoder = _snapshot(model.net.encoder), _snapshot(model.net.decoder)
    _train_steps(model)
    assert model.net.encoder.training is False and model.net.decoder.training is True
    assert all(not p.requires_grad for p in model.net.encoder.parameters())
    for key, value in model.net.encoder.state_dict().items():  # weights and BN statistics
        torch.testing.assert_close(value, encoder[key], msg=key)
    assert any(not torch.equal(v, decoder[k]) for k, v in model.net.decoder.state_dict().items())


def test_fine_tuning_trains_the_encoder_and_its_statistics():
    model = build_segmenter("unet_efficientnet_lite0", 3, "fine_tuning")
    before = _snapshot(model.net.encoder.model)
    _train_steps(model, 1)
    after = model.net.encoder.model.state_dict()
    assert not torch.equal(after["conv_stem.weight"], before["conv_stem.weight"])
    assert not torch.equal(after["bn1.running_mean"], before["bn1.running_mean"])


def test_dpt_from_a_checkpoint_file_in_both_pretrained_regimes(tmp_path):
    source = build_segmenter(TINY_DPT, 3, "scratch")
    path = tmp_path / "vit_tiny_encoder.pth"
    torch.save(source.net.encoder.model.state_dict(), path)  # the bare timm ViT's own names
    frozen = build_segmenter(TINY_DPT, 4, "feature_extraction", weights=path)
    torch.testing.assert_close(frozen.net.encoder.model.pos_embed,
                               source.net.encoder.model.pos_embed)
    assert frozen.weights_tag.startswith("file:sha256:")
    before = _snapshot(frozen.net.encoder)
    _train_steps(frozen, 1)
    for key, value in frozen.net.encoder.state_dict().items():
        torch.testing.assert_close(value, before[key])
    tuned = build_segmenter(TINY_DPT, 4, "fine_tuning", weights=path)
    assert all(p.requires_grad for p in tuned.parameters())
    torch.save({"stem.weight": torch.zeros(3)}, tmp_path / "wrong.pth")
    with pytest.raises(WeightsLoadError):
        build_segmenter(TINY_DPT, 4, "feature_extraction", weights=tmp_path / "wrong.pth")
    with pytest.raises(ValueError, match="scratch"):
        build_segmenter(TINY_DPT, 4, "scratch", weights=path)


# -- losses --------------------------------------------------------------------------------------

def _gdl_numpy(probs, onehot, weighting):
    """Generalised Dice loss (Sudre et al. 2017) over the whole batch, written from the paper."""
    axes = (0, 2, 3)
    volume = onehot.sum(axes)
    with np.errstate(divide="ignore"):
        w = {"square": 1 / volume**2, "simple": 1 / volume,
             "uniform": np.ones_like(volume)}[weighting]
    w[np.isinf(w)] = w[np.isfinite(w)].max()  # MONAI's rule for classes absent from the target
    inter = (probs * onehot).sum(axes)
    denom = (probs + onehot).sum(axes)
    return 1 - (2 * (w * inter).sum() + 1e-5) / ((w * denom).sum() + 1e-5)


@pytest.mark.parametrize("weighting", ["square", "simple", "uniform"])
def test_generalised_dice_matches_the_formula_and_ignores_ignored_pixels(weighting):
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(2, 3, 8, 8, generator=g, dtype=torch.float64)
    target = torch.randint(0, 3, (2, 8, 8), generator=g)
    target[0, :3] = IGNORE
    loss = SegmentationLoss("dice", 3, weighting)(logits, target)
    valid = (target != IGNORE).numpy()[:, None]
    probs = logits.softmax(1).numpy() * valid
    onehot = np.eye(3)[target.clamp(min=0).numpy()].transpose(0, 3, 1, 2) * valid
    assert float(loss) == pytest.approx(_gdl_numpy(probs, onehot, weighting), rel=1e-6)
    changed = logits.clone()
    changed[0, :, :3] = 100 * torch.randn(3, 3, 8, generator=g, dtype=torch.float64)
    assert float(SegmentationLoss("combined", 3, weighting)(changed, target)) == pytest.approx(
        float(SegmentationLoss("combined", 3, weighting)(logits, target)))


def test_combined_is_ce_plus_dice_and_an_all_ignored_batch_is_zero():
    logits = torch.randn(1, 2, 4, 4)
    target = torch.randint(0, 2, (1, 4, 4))
    ce = torch.nn.functional.cross_entropy(logits, target)
    dice = SegmentationLoss("dice", 2)(logits, target)
    assert float(SegmentationLoss("combined", 2)(logits, target)) == pytest.approx(float(ce + dice))
    assert float(SegmentationLoss("ce", 2)(logits, torch.full((1, 4, 4), IGNORE))) == 0.0
    with pytest.raises(ValueError, match="segmentation loss"):
        SegmentationLoss("bce", 2)


# -- inference at full resolution ----------------------------------------------------------------

class PixelwiseNet(nn.Module):
    """A 1x1 convolution: its output at a pixel depends on that pixel only, so tiled and whole
    image inference must agree exactly where tiles overlap or not."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 1)

    def forward(self, x):
        return self.conv(x)


def _pixelwise_model():
    spec = get_spec("unet_efficientnet_lite0")
    net = PixelwiseNet()
    return DenseModel(net, dataclasses.replace(spec, head_names=("conv",)), Regime.SCRATCH, 4,
                      "random")


def test_tiled_inference_returns_the_full_resolution_mask():
    model = _pixelwise_model().eval()
    image = torch.randint(0, 256, (3, 100, 70), dtype=torch.uint8)
    prep = model.preprocessing
    tiled = predict_logits(model, image, prep, InputPolicy("tile", 32, 0.25), torch.device("cpu"))
    whole = predict_logits(model, image, prep, InputPolicy("native"), torch.device("cpu"))
    assert tiled.shape == whole.shape == (4, 100, 70)
    torch.testing.assert_close(tiled, whole, atol=1e-4, rtol=1e-4)
    unet = build_segmenter("unet", 2, "scratch").eval()
    out = predict_logits(unet, image, prep, InputPolicy("tile", 64, 0.5), torch.device("cpu"))
    assert out.shape == (2, 100, 70)
    assert predict_logits(unet, image, prep, InputPolicy("native"), torch.device("cpu")).shape == (
        2, 100, 70)


def test_joint_augmentation_moves_mask_with_image():
    g = torch.Generator().manual_seed(3)
    image = torch.arange(2 * 5 * 7, dtype=torch.uint8).reshape(2, 5, 7)
    mask = image[0].long() % 3
    mask[0, 0] = IGNORE
    for _ in range(6):
        out_image, out_mask = augment_pair(image, mask, g)
        expected = torch.where(out_image[0] == 0, IGNORE, out_image[0].long() % 3)
        assert torch.equal(out_mask, expected)


def test_policy_options_are_checked():
    from marsbench.runs.options import build_options

    def policy(**values):
        return InputPolicy.from_options(build_options("segmentation", values), 224)

    assert policy().name == "native"
    assert policy(input_policy="reference").size == 224
    assert (policy(input_policy="tile").size, policy(input_policy="tile").overlap) == (512, 0.25)
    with pytest.raises(ValueError, match="multiple of 32"):
        policy(input_policy="tile", tile_size="100")
    with pytest.raises(ValueError, match="input_policy"):
        policy(input_policy="crop")
