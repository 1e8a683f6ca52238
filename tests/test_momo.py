"""MOMO (Mars orbital MAE ViTs): registry names, the published checkpoint format loaded through
the real Hugging Face cache lookup, key mapping and refusals, offline errors, normalisation.

Nothing is downloaded: each test writes a checkpoint in MOMO's exact format (``{"model": MAE
state dict, "args": Namespace}``, key names spelled out from MOMO's ``models/mae.py``) into a
temporary Hugging Face cache laid out as huggingface_hub lays it out."""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import os
from pathlib import Path

import numpy as np
import pytest
import torch

from marsbench.models import (
    WeightsUnavailableError,
    build_classifier,
    get_spec,
    list_specs,
    preprocess,
)
from marsbench.models import momo
from marsbench.models.segmentation import build_segmenter

TINY = momo.MomoArch(embed_dim=32, depth=2, num_heads=2, patch_size=16, img_size=32)


def mae_state(arch: momo.MomoArch, dec_dim: int = 16, dec_depth: int = 1, in_chans: int = 3,
              device: str = "cpu", seed: int = 0) -> dict[str, torch.Tensor]:
    """A MaskedAutoencoderViT state dict with MOMO's names (models/mae.py): encoder, then
    ``mask_token`` and the ``decoder_*`` parts."""
    d, p, n = arch.embed_dim, arch.patch_size, arch.num_tokens
    g = torch.Generator().manual_seed(seed)

    def t(*shape: int) -> torch.Tensor:
        if device == "meta":
            return torch.empty(shape, device="meta")
        return torch.randn(shape, generator=g) * 0.05

    def block(prefix: str, dim: int) -> dict[str, torch.Tensor]:
        return {f"{prefix}.norm1.weight": t(dim), f"{prefix}.norm1.bias": t(dim),
                f"{prefix}.attn.qkv.weight": t(3 * dim, dim), f"{prefix}.attn.qkv.bias": t(3 * dim),
                f"{prefix}.attn.proj.weight": t(dim, dim), f"{prefix}.attn.proj.bias": t(dim),
                f"{prefix}.norm2.weight": t(dim), f"{prefix}.norm2.bias": t(dim),
                f"{prefix}.mlp.fc1.weight": t(4 * dim, dim), f"{prefix}.mlp.fc1.bias": t(4 * dim),
                f"{prefix}.mlp.fc2.weight": t(dim, 4 * dim), f"{prefix}.mlp.fc2.bias": t(dim)}

    state = {"cls_token": t(1, 1, d), "pos_embed": t(1, n, d),
             "patch_embed.proj.weight": t(d, in_chans, p, p), "patch_embed.proj.bias": t(d)}
    for i in range(arch.depth):
        state |= block(f"blocks.{i}", d)
    state |= {"norm.weight": t(d), "norm.bias": t(d),
              "decoder_embed.weight": t(dec_dim, d), "decoder_embed.bias": t(dec_dim),
              "mask_token": t(1, 1, dec_dim), "decoder_pos_embed": t(1, n, dec_dim)}
    for i in range(dec_depth):
        state |= block(f"decoder_blocks.{i}", dec_dim)
    state |= {"decoder_norm.weight": t(dec_dim), "decoder_norm.bias": t(dec_dim),
              "decoder_pred.weight": t(p * p * in_chans, dec_dim),
              "decoder_pred.bias": t(p * p * in_chans)}
    return state


def decoder_keys(state: dict) -> list[str]:
    return sorted(k for k in state if k.startswith("decoder_") or k == "mask_token")


@pytest.fixture
def hf_cache(tmp_path, monkeypatch):
    """An empty Hugging Face cache, no download possible (the loader must not try one)."""
    import huggingface_hub
    import huggingface_hub.constants

    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path / "hf"))
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", False, raising=False)
    monkeypatch.setenv("MARSBENCH_OFFLINE", "1")

    def no_download(*args, **kwargs):
        raise AssertionError(f"hf_hub_download called offline: {args} {kwargs}")

    monkeypatch.setattr(huggingface_hub, "hf_hub_download", no_download)
    monkeypatch.setattr(momo, "host_reachable", lambda url, timeout=5.0: pytest.fail(
        f"network probed offline: {url}"))
    return tmp_path / "hf"


def put_in_hf_cache(cache: Path, filename: str, payload: dict, revision: str = "main") -> Path:
    """Save ``payload`` as huggingface_hub caches a file: blobs/<sha256>, a snapshot symlink,
    refs/<revision> -> commit."""
    repo = cache / f"models--{momo.MOMO_REPO.replace('/', '--')}"
    staging = cache / "staging.pth"
    staging.parent.mkdir(parents=True, exist_ok=True)
    torch.save(payload, staging)
    digest = hashlib.sha256(staging.read_bytes()).hexdigest()
    blob = repo / "blobs" / digest
    blob.parent.mkdir(parents=True, exist_ok=True)
    os.replace(staging, blob)
    commit = "0123456789abcdef0123456789abcdef01234567"
    link = repo / "snapshots" / commit / filename
    link.parent.mkdir(parents=True, exist_ok=True)
    link.symlink_to(os.path.relpath(blob, link.parent))
    (repo / "refs").mkdir(exist_ok=True)
    (repo / "refs" / revision).write_text(commit)
    return link


def momo_file(state: dict) -> dict:
    """MOMO's utils/misc.save_model layout."""
    return {"model": state, "args": argparse.Namespace(train_model="vit-b-16", mask_ratio=0.75)}


def tiny(name: str = "momo_vit_b16") -> momo.MomoSpec:
    spec = get_spec(name)
    return dataclasses.replace(spec, name=f"test-tiny-{name}", arch=TINY, input_size=TINY.img_size)


# -- registry ------------------------------------------------------------------------------------

def test_registry_lists_every_size_checkpoint_and_normalisation() -> None:
    names = {s.name for s in list_specs() if s.family == "momo"}
    expected = set()
    for size in ("s", "b", "l"):
        for ckpt in ("momo", "ctx", "hirise", "themis", "hirise_ctx_themis"):
            base = f"momo_vit_{size}16" + ("" if ckpt == "momo" else f"_{ckpt}")
            expected |= {base, f"{base}_instrument", f"dpt_{base}", f"{base}_lp",
                         f"{base}_instrument_lp"}
            assert get_spec(f"{base}_instrument_lp").head.name == "momo_linear_probe"
            assert get_spec(f"{base}_instrument_lp").weights == get_spec(base).weights
            spec = get_spec(base)
            assert spec.task == "classification" and spec.input_size == 224
            assert spec.weights.hf_hub_id == "Mirali33/MOMO"
            assert spec.weights.filename == f"vit-{size}-16/{ckpt}.pth"
            assert spec.weights.revision == momo.MOMO_REVISION
            assert get_spec(f"dpt_{base}").task == "segmentation"
            assert get_spec(f"dpt_{base}").weights.filename == spec.weights.filename
    assert names == expected and len(names) == 75  # 60 classification, 15 segmentation
    assert [get_spec(f"momo_vit_{s}16").arch for s in "sbl"] == [
        momo.MomoArch(384, 12, 6), momo.MomoArch(768, 12, 12), momo.MomoArch(1024, 24, 16)]


@pytest.mark.parametrize("size", ["s", "b", "l"])
def test_full_size_models_read_exactly_the_published_layout(size) -> None:
    """On the meta device (no memory): every tensor of the classifier encoder and of the DPT
    encoder is in MOMO's file with its shape, and every file tensor not used is a known drop."""
    from marsbench.models.segmentation import Encoder, build_smp

    arch = momo.SIZES[size]
    with torch.device("meta"):
        source = mae_state(arch, dec_dim=512, dec_depth=8, device="meta")
        vit = momo.build_momo_vit(arch)
        encoder = Encoder(momo.TIMM_VIT[size], "timm", momo.momo_weights(size, "momo"))
        dpt = build_smp("dpt", encoder, False, 2)
    for target in (vit.state_dict(), dpt.encoder.model.state_dict()):
        for key, tensor in target.items():
            if key.startswith("fc_norm."):
                continue
            assert source[key].shape == tensor.shape, key
        unused = [k for k in source if k not in target]
        assert all(momo.dropped_reason(k, target) for k in unused), unused
    assert "norm.weight" not in vit.state_dict() and "fc_norm.weight" in vit.state_dict()


# -- loading through the real cache lookup ---------------------------------------------------------

def test_checkpoint_loads_exactly_and_reports_dropped_keys(hf_cache) -> None:
    spec = tiny("momo_vit_b16")
    state = mae_state(TINY)
    put_in_hf_cache(hf_cache, "vit-b-16/momo.pth", momo_file(state))
    parts = spec.builder(True)
    own = parts.backbone.state_dict()
    for key, tensor in own.items():
        if key.startswith("fc_norm."):
            continue
        assert torch.equal(tensor, state[key]), key
    assert torch.equal(own["fc_norm.weight"], torch.ones(TINY.embed_dim))
    assert torch.equal(own["fc_norm.bias"], torch.zeros(TINY.embed_dim))
    report = parts.backbone.load_report
    assert sorted(report.missing) == ["fc_norm.bias", "fc_norm.weight"]
    assert sorted(report.unexpected) == sorted(decoder_keys(state) + ["norm.bias", "norm.weight"])
    assert "mask_token" in report.unexpected and len(report.loaded) == len(own) - 2
    assert parts.weights_tag.startswith("hf:Mirali33/MOMO@main:vit-b-16/momo.pth:sha256:")
    # the whole classifier, frozen backbone, features = fc_norm(mean of patch tokens)
    model = build_classifier(spec, num_classes=3, regime="feature_extraction")
    x = torch.randn(2, 3, 32, 32)
    assert model(x).shape == (2, 3)
    backbone = model.backbone
    assert not any(p.requires_grad for p in backbone.parameters())
    with torch.no_grad():
        tokens = backbone.blocks(backbone._pos_embed(backbone.patch_embed(x)))
        expected = torch.nn.functional.layer_norm(tokens[:, 1:].mean(1), (TINY.embed_dim,),
                                                  eps=1e-6)
        torch.testing.assert_close(backbone(x), expected)


def test_sensor_checkpoint_and_instrument_variant_read_their_file(hf_cache) -> None:
    state = mae_state(TINY, seed=3)
    put_in_hf_cache(hf_cache, "vit-l-16/hirise_ctx_themis.pth", momo_file(state))
    spec = tiny("momo_vit_l16_hirise_ctx_themis_instrument")
    parts = spec.builder(True)
    assert torch.equal(parts.backbone.state_dict()["blocks.1.attn.qkv.weight"],
                       state["blocks.1.attn.qkv.weight"])
    assert isinstance(parts.backbone.input_norm, momo.MinMaxInstrumentNorm)
    assert (parts.backbone.input_norm.mean, parts.backbone.input_norm.std) == (0.5006, 0.1664)
    assert "vit-l-16/hirise_ctx_themis.pth" in parts.weights_tag


def test_download_goes_through_hf_hub_download_at_the_pinned_revision(hf_cache, monkeypatch):
    import huggingface_hub

    monkeypatch.delenv("MARSBENCH_OFFLINE")
    monkeypatch.setattr(momo, "host_reachable", lambda url, timeout=5.0: True)
    calls = []

    def fake_download(repo_id, filename, revision=None, cache_dir=None, **kwargs):
        calls.append((repo_id, filename, revision, cache_dir))
        return str(put_in_hf_cache(Path(cache_dir), filename, momo_file(mae_state(TINY))))

    monkeypatch.setattr(huggingface_hub, "hf_hub_download", fake_download)
    parts = tiny("momo_vit_s16_themis").builder(True)
    assert calls == [("Mirali33/MOMO", "vit-s-16/themis.pth", momo.MOMO_REVISION, str(hf_cache))]
    assert parts.weights_tag.startswith("hf:Mirali33/MOMO@main:vit-s-16/themis.pth:")


# -- refusals ----------------------------------------------------------------------------------

@pytest.mark.parametrize("env", ["MARSBENCH_OFFLINE", "HF_HUB_OFFLINE"])
def test_offline_missing_file_is_one_line_naming_repo_file_revision(hf_cache, monkeypatch, env):
    monkeypatch.delenv("MARSBENCH_OFFLINE")
    monkeypatch.setenv(env, "1")
    with pytest.raises(WeightsUnavailableError) as info:
        tiny("momo_vit_b16_ctx").builder(True)
    message = str(info.value)
    assert "\n" not in message
    for part in ("Mirali33/MOMO", "vit-b-16/ctx.pth", f"revision {momo.MOMO_REVISION}",
                 str(hf_cache), f"{env}=1",
                 f"hf download Mirali33/MOMO vit-b-16/ctx.pth --revision {momo.MOMO_REVISION}"):
        assert part in message, (part, message)


def test_scratch_needs_no_file(hf_cache) -> None:
    model = build_classifier(tiny("momo_vit_b16"), num_classes=2, regime="scratch")
    assert model.weights_tag == "random"


@pytest.mark.parametrize("change, match", [
    (lambda s: s.update({"blocks.0.attn.extra": torch.zeros(3)}), "does not have: blocks.0.attn"),
    (lambda s: s.pop("blocks.1.mlp.fc2.bias"), "no tensor 'blocks.1.mlp.fc2.bias'"),
    (lambda s: s.update({"pos_embed": torch.zeros(1, 50, TINY.embed_dim)}),
     r"'pos_embed' has shape \(1, 50, 32\), expected \(1, 5, 32\)"),
    (lambda s: s.update({"blocks.0.attn.qkv.weight": torch.zeros(96, 16)}),
     "'blocks.0.attn.qkv.weight' has shape"),
])
def test_wrong_keys_and_shapes_are_refused(hf_cache, change, match) -> None:
    state = mae_state(TINY)
    change(state)
    put_in_hf_cache(hf_cache, "vit-b-16/momo.pth", momo_file(state))
    with pytest.raises(WeightsUnavailableError, match=match) as info:
        tiny("momo_vit_b16").builder(True)
    assert "vit-b-16/momo.pth" in str(info.value) or "momo.pth" in str(info.value)


def test_a_file_without_model_entry_or_with_pickled_code_is_refused(hf_cache) -> None:
    put_in_hf_cache(hf_cache, "vit-b-16/momo.pth", {"state_dict": mae_state(TINY)})
    with pytest.raises(WeightsUnavailableError, match="no 'model' state dict"):
        tiny("momo_vit_b16").builder(True)
    put_in_hf_cache(hf_cache, "vit-s-16/momo.pth", {"model": mae_state(TINY), "x": Path("a")})
    with pytest.raises(WeightsUnavailableError, match="weights_only=True"):
        tiny("momo_vit_s16").builder(True)


def test_a_corrupt_cached_blob_is_refused(hf_cache) -> None:
    link = put_in_hf_cache(hf_cache, "vit-b-16/momo.pth", momo_file(mae_state(TINY)))
    blob = Path(os.path.realpath(link))
    blob.chmod(0o644)
    blob.write_bytes(blob.read_bytes() + b"x")
    with pytest.raises(WeightsUnavailableError, match="does not match"):
        tiny("momo_vit_b16").builder(True)


# -- normalisation -----------------------------------------------------------------------------

def test_instrument_statistics_are_momos() -> None:
    assert momo.INSTRUMENT_STATS == {
        "HiRISE": (0.5052, 0.1785), "CTX": (0.5169, 0.1609), "THEMIS": (0.4782, 0.1559),
        "HiRISE_CTX_THEMIS": (0.5006, 0.1664)}
    for ckpt, instrument in [("hirise", "HiRISE"), ("ctx", "CTX"), ("themis", "THEMIS"),
                             ("hirise_ctx_themis", "HiRISE_CTX_THEMIS"),
                             ("momo", "HiRISE_CTX_THEMIS")]:
        name = momo.model_name("b", ckpt, "instrument")
        m, s = momo.INSTRUMENT_STATS[instrument]
        assert get_spec(name).mean == (m,) * 3 and get_spec(name).std == (s,) * 3
        assert get_spec(momo.model_name("b", ckpt)).mean == (0.485, 0.456, 0.406)


def _momo_data_processing(gray: np.ndarray, mean: float, std: float) -> np.ndarray:
    """MOMO data_processing.py: min-max to 0-255, astype(uint8), RGB, ToTensor, Normalize."""
    arr = gray.astype(np.float32)
    arr = 255 * (arr - arr.min()) / (arr.max() - arr.min())
    rgb = np.repeat(arr.astype(np.uint8)[None], 3, axis=0).astype(np.float32) / 255.0
    return (rgb - mean) / std


@pytest.mark.parametrize("ckpt", ["hirise", "ctx", "themis"])
def test_instrument_normalisation_matches_momos_pipeline(ckpt) -> None:
    spec = get_spec(momo.model_name("b", ckpt, "instrument"))
    mean, std = momo.INSTRUMENT_STATS[spec.instrument]
    rng = np.random.default_rng(0)
    gray = rng.integers(40, 180, size=(224, 224), dtype=np.uint8)  # low contrast: stretched
    x = preprocess(gray, spec.preprocessing)[None]
    got = spec.input_norm()(x)[0].numpy()
    np.testing.assert_allclose(got, _momo_data_processing(gray, mean, std), atol=1e-5)
    flat = spec.input_norm()(torch.full((1, 3, 4, 4), 0.3))  # constant image: 0, not NaN
    assert torch.isfinite(flat).all()


# -- MOMO's linear probe (fc_norm trained with the head) ---------------------------------------

def test_linear_probe_features_are_the_pre_norm_mean_of_patch_tokens(hf_cache) -> None:
    put_in_hf_cache(hf_cache, "vit-b-16/momo.pth", momo_file(mae_state(TINY, seed=4)))
    lp = build_classifier(tiny("momo_vit_b16_lp"), 3, "feature_extraction").eval()
    std = build_classifier(tiny("momo_vit_b16"), 3, "feature_extraction").eval()
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        feats = lp.backbone(x)
        tokens = lp.backbone.forward_features(x)  # (B, 1 + patches, D); no final norm
        assert tokens.shape == (2, 5, TINY.embed_dim)
        assert torch.allclose(feats, tokens[:, 1:].mean(dim=1), atol=1e-6)
        # the standard variant's features are fc_norm (weight 1, bias 0) of the same vector
        normed = torch.nn.functional.layer_norm(feats, (TINY.embed_dim,), eps=1e-6)
        assert torch.allclose(std.backbone(x), normed, atol=1e-5)
        assert not torch.allclose(feats, normed, atol=1e-3)
    assert [n for n, _ in lp.head.named_children()] == ["fc_norm", "fc"]
    assert lp.describe()["head"] == "momo_linear_probe" and std.describe()["head"] == "linear"
    assert lp.feature_key() != std.feature_key()


def test_linear_probe_trains_fc_norm_and_not_the_encoder(hf_cache, synth_suite, monkeypatch):
    """A feature_extraction run on cached features through the engine; then one step by hand
    on the built model: fc_norm gets gradients and moves, the encoder has none."""
    from marsbench.models import registry
    from marsbench.runs import RunSpec
    from marsbench.training import features as feature_cache
    from marsbench.training.run import run_experiment

    monkeypatch.setenv("MARSBENCH_WORKERS", "0")
    monkeypatch.setenv("MARSBENCH_CACHE", str(hf_cache.parent / "cache"))
    feature_cache.clear_memory_cache()
    put_in_hf_cache(hf_cache, "vit-b-16/momo.pth", momo_file(mae_state(TINY, seed=6)))
    spec = tiny("momo_vit_b16_lp")
    monkeypatch.setitem(registry._SPECS, spec.name, spec)
    data = "mb-frost_cls"
    record = run_experiment(RunSpec(
        dataset=data, model=spec.name, regime="feature_extraction", precision="fp32",
        data_root=str(synth_suite["folder"][data].parent), max_epochs=2, patience=0,
        batch_size=16, lr=1e-2, options={"input_size": 32}))
    assert record.extra["fe_path"] == "cached" and record.extra["head"] == "momo_linear_probe"
    assert 0.0 <= record.metrics["test"]["accuracy"] <= 1.0

    model = build_classifier(spec, 3, "feature_extraction")
    encoder = {k: v.clone() for k, v in model.backbone.state_dict().items()}
    before = model.head.fc_norm.weight.detach().clone()
    trainable = [p for p in model.parameters() if p.requires_grad]
    assert {id(p) for p in trainable} == {id(p) for p in model.head_parameters()}
    optimiser = torch.optim.SGD(trainable, lr=0.5)
    model.train()
    loss = torch.nn.functional.cross_entropy(model(torch.randn(8, 3, 32, 32)),
                                             torch.arange(8) % 3)
    loss.backward()
    assert model.head.fc_norm.weight.grad.abs().sum() > 0
    assert model.head.fc_norm.bias.grad.abs().sum() > 0
    assert all(p.grad is None for p in model.backbone.parameters())
    optimiser.step()
    assert not torch.equal(model.head.fc_norm.weight, before)
    for key, tensor in model.backbone.state_dict().items():
        assert torch.equal(tensor, encoder[key]), key


# -- segmentation ------------------------------------------------------------------------------

def test_dpt_on_the_momo_encoder_loads_the_checkpoint(hf_cache, monkeypatch) -> None:
    """DPT's encoder is timm's ViT of the same size; here ViT-Ti/16 stands for ViT-S/16 (same
    code, 4x fewer parameters) so the test stays small."""
    arch = momo.MomoArch(192, 12, 3)
    monkeypatch.setitem(momo.TIMM_VIT, "s", "vit_tiny_patch16_224")
    state = mae_state(arch, seed=5)
    put_in_hf_cache(hf_cache, "vit-s-16/momo.pth", momo_file(state))
    model = build_segmenter("dpt_momo_vit_s16", num_classes=2, regime="feature_extraction")
    encoder = model.net.encoder.model
    for key, tensor in encoder.state_dict().items():
        assert torch.equal(tensor, state[key]), key
    assert sorted(encoder.load_report.unexpected) == decoder_keys(state)
    assert model.weights_tag.startswith("hf:Mirali33/MOMO@main:vit-s-16/momo.pth:")
    assert not any(p.requires_grad for p in encoder.parameters())
    with torch.no_grad():
        assert model(torch.randn(1, 3, 64, 64)).shape == (1, 2, 64, 64)
