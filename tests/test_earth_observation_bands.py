"""Band adaptation for Earth-observation models: the exact values each strategy feeds a model,
mismatches refused, the learned adapter's start point, and strategy resolution from a run."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from marsbench.models import earth_observation as eo
from marsbench.models.bands import BandMismatchError, InputAdapter
from marsbench.models.preprocess import augment, normalize, prepare, preprocess


def _image(h: int, w: int, c: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (h, w, c), dtype=np.uint8)


def _u(image: np.ndarray, size: int) -> torch.Tensor:
    """The image resized by the one path, in [0, 1], (C, S, S)."""
    from marsbench.models.preprocess import Preprocessing, resize, to_uint8_tensor

    return resize(to_uint8_tensor(image), Preprocessing(input_size=size)).float() / 255.0


def test_replicate_copies_a_gray_image_into_every_band_in_each_models_units() -> None:
    gray = _image(40, 40, 1)
    # CROMA: inputs are the [0, 1] values themselves (mean 0, std 1), 12 identical bands.
    x = preprocess(gray, eo.CROMA_LARGE.preprocessing)
    u = _u(gray, 120)[0]
    assert x.shape == (12, 120, 120)
    for band in x:
        torch.testing.assert_close(band, u)
    # Prithvi: [0, 1] stands for mean +- 2 std, i.e. z = 4u - 2 in every one of its 6 bands.
    z = preprocess(gray, eo.PRITHVI_EO_V1_100.preprocessing)
    u224 = _u(gray, 224)[0]
    assert z.shape == (6, 224, 224)
    torch.testing.assert_close(z, (4 * u224 - 2).expand(6, -1, -1))
    # SatMAE (RGB): the fMoW mean/std of each channel.
    s = preprocess(gray, eo.SATMAE_VIT_L16.preprocessing)
    for c in range(3):
        torch.testing.assert_close(
            s[c], (u224 - eo.FMOW_RGB_MEAN[c]) / eo.FMOW_RGB_STD[c])


def test_visible_fills_the_other_bands_with_the_pretraining_mean() -> None:
    gray = _image(30, 50, 1, seed=1)
    x = preprocess(gray, eo.CROMA_LARGE.with_band_strategy("visible").preprocessing)
    u = _u(gray, 120)[0]
    names = eo.SENTINEL2_L1C_12.names
    for k, name in enumerate(names):
        if name in ("B02", "B03", "B04"):
            torch.testing.assert_close(x[k], u)
        else:  # CROMA's band mean is 0.5 by construction of its normalisation
            assert torch.all(x[k] == 0.5), name
    z = preprocess(gray, eo.PRITHVI_EO_V1_100.with_band_strategy("visible").preprocessing)
    assert torch.all(z[3:] == 0)  # NIR, SWIR1, SWIR2 at their pre-training mean: z = 0
    torch.testing.assert_close(z[:3], (4 * _u(gray, 224)[0] - 2).expand(3, -1, -1))


def test_rgb_images_keep_their_colours_in_the_visible_bands() -> None:
    rgb = _image(32, 32, 3, seed=2)
    u = _u(rgb, 120)
    x = preprocess(rgb, eo.CROMA_LARGE.preprocessing)  # replicate
    torch.testing.assert_close(x[3], u[0])  # B04 red
    torch.testing.assert_close(x[2], u[1])  # B03 green
    torch.testing.assert_close(x[1], u[2])  # B02 blue
    luma = 0.299 * u[0] + 0.587 * u[1] + 0.114 * u[2]
    torch.testing.assert_close(x[0], luma)  # B01 and every other band: the luminance
    torch.testing.assert_close(x[11], luma)
    # SatMAE is an RGB model: replicate and visible both pass the colours through unchanged.
    for strategy in ("replicate", "visible"):
        s = preprocess(rgb, eo.SATMAE_VIT_L16.with_band_strategy(strategy).preprocessing)
        u224 = _u(rgb, 224)
        for c in range(3):
            torch.testing.assert_close(s[c], (u224[c] - eo.FMOW_RGB_MEAN[c]) / eo.FMOW_RGB_STD[c])


@pytest.mark.parametrize("strategy", ["replicate", "visible", "adapter"])
def test_other_band_counts_are_refused_not_reshaped(strategy) -> None:
    seven = _image(16, 16, 7)  # e.g. an MMLS tile
    prep = eo.PRITHVI_EO_V1_100.with_band_strategy(strategy).preprocessing
    with pytest.raises(BandMismatchError, match="image has 7 bands"):
        prepare(seven, prep)
    with pytest.raises(BandMismatchError, match="image has 2 bands"):
        normalize(torch.zeros(2, 2, 8, 8, dtype=torch.uint8), prep)


def test_augmentation_acts_on_the_observed_bands_before_adaptation() -> None:
    prep = eo.CROMA_LARGE.preprocessing
    x = prepare(_image(64, 64, 1), prep)
    assert x.shape == (1, 120, 120) and x.dtype == torch.uint8  # Mars band, not 12 bands yet
    g = torch.Generator().manual_seed(0)
    out = normalize(augment(torch.stack([x, x]), g), prep)  # colour jitter works on 1 band
    assert out.shape == (2, 12, 120, 120)


@pytest.mark.parametrize("spec", [eo.CROMA_LARGE, eo.PRITHVI_EO_V1_100, eo.SATMAE_VIT_L16])
@pytest.mark.parametrize("channels", [1, 3])
def test_adapter_starts_as_replicate(spec, channels) -> None:
    image = _image(24, 24, channels, seed=3)
    adapter_spec = spec.with_band_strategy("adapter")
    x = preprocess(image, adapter_spec.preprocessing)
    assert x.shape[0] == 3  # the adapter takes 3 channels (gray copied into 3)
    adapter = InputAdapter(adapter_spec.band_adaptation, spec.mean, spec.std)
    with torch.no_grad():
        got = adapter(x[None])[0]
    torch.testing.assert_close(got, preprocess(image, spec.preprocessing), atol=1e-5, rtol=1e-5)


def test_strategy_is_part_of_the_preprocessing_key() -> None:
    keys = {eo.CROMA_LARGE.with_band_strategy(s).preprocessing.key()
            for s in ("replicate", "visible", "adapter")}
    assert len(keys) == 3  # frozen-feature caches never mix strategies
    assert '"strategy": "visible"' in eo.CROMA_LARGE.with_band_strategy("visible") \
        .preprocessing.key()


def test_resolve_model_spec_reads_the_strategy_from_the_run() -> None:
    spec = eo.resolve_model_spec("croma_large", {"band_strategy": "visible"}, "feature_extraction")
    assert spec.band_strategy == "visible" and spec.preprocessing.bands.strategy == "visible"
    assert eo.resolve_model_spec("croma_large").band_strategy == "replicate"  # the default
    assert eo.resolve_model_spec("vit_l_16", {}).name == "vit_l_16"
    with pytest.raises(ValueError, match="applies to Earth-observation models"):
        eo.resolve_model_spec("vit_l_16", {"band_strategy": "replicate"})
    with pytest.raises(ValueError, match="unknown band_strategy 'copy'"):
        eo.resolve_model_spec("croma_large", {"band_strategy": "copy"})
    with pytest.raises(ValueError, match="fe_path=online"):
        eo.resolve_model_spec("prithvi_eo_v1_100", {"band_strategy": "adapter"},
                              "feature_extraction")
    ok = eo.resolve_model_spec("prithvi_eo_v1_100",
                               {"band_strategy": "adapter", "fe_path": "online"},
                               "feature_extraction")
    assert "input adapter" in ok.backbone_rule


def test_specs_declare_bands_order_range_and_normalisation() -> None:
    rows = {s.name: s.to_dict() for s in eo.eo_specs()}
    assert set(rows) == {"satmae_vit_l16", "croma_large", "prithvi_eo_v1_100"}
    croma = rows["croma_large"]
    assert [b["name"] for b in croma["bands"]["bands"]] == [
        "B01", "B02", "B03", "B04", "B05", "B06", "B07", "B08", "B8A", "B09", "B11", "B12"]
    assert (croma["in_channels"], croma["input_size"]) == (12, 120)
    prithvi = rows["prithvi_eo_v1_100"]
    assert [b["common_name"] for b in prithvi["bands"]["bands"]] == [
        "blue", "green", "red", "nir narrow", "swir 1", "swir 2"]
    assert "T=1" in prithvi["temporal"] and "775.22" in prithvi["bands"]["value_range"]
    assert rows["satmae_vit_l16"]["band_strategy"] == "replicate"
    assert "Prithvi-EO-1.0-100M" in prithvi["weights"]
