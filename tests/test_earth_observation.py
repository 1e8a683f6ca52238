"""SatMAE, CROMA and Prithvi-EO: checkpoints in their authors' exact formats (random values,
small widths) loaded through the real cache + verification + mapping code, forwards, short
feature-extraction runs on synthetic 1-band Mars images with each band strategy, and clear
errors for missing, corrupt, mis-keyed or mis-shaped weights.

The authors' formats are written here independently of the loader: MAE's MaskedAutoencoderViT
layout built from timm's ``Block`` as SatMAE's ``models_mae.py`` and Prithvi's ``models_mae.py``
(NASA-IMPACT/hls-foundation-os) build it, and CROMA's per-part state dicts from TorchGeo's CROMA
(whose own loader reads exactly that file)."""

from __future__ import annotations

import argparse
import dataclasses
import functools
import os
from pathlib import Path

import pytest
import torch
from torch import nn

from marsbench.models import build_classifier, registry
from marsbench.models import earth_observation as eo
from marsbench.models.bands import AdaptedBackbone, trainable_adapter_parameters
from marsbench.models.preprocess import preprocess
from marsbench.models.weights import WeightsUnavailableError, file_sha256
from marsbench.runs.spec import RunSpec
from marsbench.training import features as feature_cache

# Small widths, the authors' patch sizes, image sizes and frame counts (CROMA's ViT has 16 heads).
TINY = {
    "satmae": eo.ViTArch(32, 2, 4, 16, 224, 3),
    "croma": eo.ViTArch(32, 2, 16, 8, 120, 12),
    "prithvi": eo.ViTArch(32, 2, 4, 16, 224, 6, num_frames=3, norm_eps=1e-5),
}
BASE = {"satmae": eo.SATMAE_VIT_L16, "croma": eo.CROMA_LARGE, "prithvi": eo.PRITHVI_EO_V1_100}
# The published decoders (MAE: 512 wide, 8 blocks, 16 heads), for the full-size layout check.
FULL_DECODER = (512, 8, 16)
TINY_DECODER = (16, 1, 4)


# -- the authors' checkpoint formats, written independently of the loader -------------------------

class AuthorsMAE(nn.Module):
    """The parameter layout of MAE's MaskedAutoencoderViT (SatMAE), or with ``frames`` its 3-D
    patch-embedding variant (Prithvi-EO v1): names and shapes as the authors save them."""

    def __init__(self, arch: eo.ViTArch, decoder: tuple[int, int, int],
                 frames: int | None = None) -> None:
        from timm.models.vision_transformer import Block

        super().__init__()
        d, p, c = arch.embed_dim, arch.patch_size, arch.in_chans
        norm = functools.partial(nn.LayerNorm, eps=arch.norm_eps)
        self.patch_embed = nn.Module()
        self.patch_embed.proj = (nn.Conv2d(c, d, p, p) if frames is None
                                 else nn.Conv3d(c, d, (1, p, p), (1, p, p)))
        tokens = (frames or 1) * arch.grid**2 + 1
        self.cls_token = nn.Parameter(torch.zeros(1, 1, d))
        self.pos_embed = nn.Parameter(torch.zeros(1, tokens, d), requires_grad=False)
        self.blocks = nn.ModuleList(Block(d, arch.num_heads, 4.0, qkv_bias=True, norm_layer=norm)
                                    for _ in range(arch.depth))
        self.norm = norm(d)
        dd, depth, heads = decoder
        self.decoder_embed = nn.Linear(d, dd)
        self.mask_token = nn.Parameter(torch.zeros(1, 1, dd))
        self.decoder_pos_embed = nn.Parameter(torch.zeros(1, tokens, dd), requires_grad=False)
        self.decoder_blocks = nn.ModuleList(Block(dd, heads, 4.0, qkv_bias=True, norm_layer=norm)
                                            for _ in range(depth))
        self.decoder_norm = norm(dd)
        self.decoder_pred = nn.Linear(dd, p * p * c, bias=True)


def authors_state(family: str, arch: eo.ViTArch, decoder=TINY_DECODER) -> dict:
    """A state in the published format of ``family`` (random values): what torch.load returns."""
    if family == "croma":
        from torchgeo.models.croma import CROMA

        # image_size only sizes CROMA's attention-bias buffer, which the file does not hold
        model = CROMA(modalities=["sar", "optical"], encoder_dim=arch.embed_dim,
                      encoder_depth=arch.depth, num_heads=arch.num_heads,
                      patch_size=arch.patch_size, image_size=arch.patch_size)
        _randomise(model)
        return {part: getattr(model, part).state_dict() for part in
                ("s1_encoder", "s1_GAP_FFN", "s2_encoder", "s2_GAP_FFN", "joint_encoder")}
    model = AuthorsMAE(arch, decoder, frames=arch.num_frames if family == "prithvi" else None)
    _randomise(model)
    if family == "prithvi":
        return dict(model.state_dict())  # a flat MAE state dict
    # SatMAE (MAE's save_model): the state under "model", next to the training bookkeeping.
    return {"model": model.state_dict(), "epoch": 799,
            "args": argparse.Namespace(model="mae_vit_large_patch16", input_size=224)}


def _randomise(model: nn.Module) -> None:
    if next(model.parameters()).is_meta:
        return
    g = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for t in model.state_dict().values():
            if t.is_floating_point():
                t.copy_(torch.randn(t.shape, generator=g) * 0.05)


def _source_tensors(family: str, state: dict) -> dict:
    if family == "satmae":
        return state["model"]
    if family == "croma":
        return {f"{part}.{k}": v for part, sd in state.items() for k, v in sd.items()}
    return state


# -- caches ---------------------------------------------------------------------------------------

@pytest.fixture
def caches(tmp_path, monkeypatch):
    """Empty torch hub and Hugging Face caches, downloads off, an isolated feature cache."""
    import huggingface_hub.constants

    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    monkeypatch.setenv("MARSBENCH_OFFLINE", "1")
    monkeypatch.setenv("MARSBENCH_CACHE", str(tmp_path / "features"))
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path / "hf"))
    feature_cache.clear_memory_cache()
    yield tmp_path
    feature_cache.clear_memory_cache()


def put_in_hf_cache(hf_cache: Path, repo_id: str, filename: str, src: Path,
                    blob_name: str | None = None) -> Path:
    """Place ``src`` as the Hugging Face cache does: blobs/<sha256>, a snapshot symlink, refs."""
    repo = hf_cache / f"models--{repo_id.replace('/', '--')}"
    commit = "0123456789abcdef0123456789abcdef01234567"
    blob = repo / "blobs" / (blob_name or file_sha256(src))
    blob.parent.mkdir(parents=True, exist_ok=True)
    os.replace(src, blob)
    link = repo / "snapshots" / commit / filename
    link.parent.mkdir(parents=True, exist_ok=True)
    link.symlink_to(os.path.relpath(blob, link.parent))
    (repo / "refs").mkdir(exist_ok=True)
    (repo / "refs" / "main").write_text(commit)
    return link


def install_checkpoint(family: str, root: Path, state: dict | None = None) -> tuple[
        eo.PublishedWeights, dict]:
    """Save a tiny checkpoint in ``family``'s published format where the real loading code looks
    for it; returns the weights source to use and the saved state."""
    state = state if state is not None else authors_state(family, TINY[family])
    base = BASE[family].weights
    if base.kind == "hf":
        tmp = root / base.filename
        torch.save(state, tmp)
        put_in_hf_cache(root / "hf", base.hf_hub_id, base.filename, tmp)
        return base, state
    checkpoints = root / "torch" / "hub" / "checkpoints"
    checkpoints.mkdir(parents=True, exist_ok=True)
    if base.sha256_prefix:  # CROMA: the published name carries the file's sha256 prefix
        tmp = checkpoints / "staging.pt"
        torch.save(state, tmp)
        prefix = file_sha256(tmp)[:8]
        weights = dataclasses.replace(base, filename=f"CROMA_large-{prefix}.pt",
                                      sha256_prefix=prefix)
        tmp.rename(checkpoints / weights.filename)
        return weights, state
    torch.save(state, checkpoints / base.filename)
    return base, state


def tiny_spec(family: str, strategy: str, weights: eo.PublishedWeights) -> eo.EOModelSpec:
    return dataclasses.replace(BASE[family], name=f"test-{family}-tiny-{strategy}",
                               arch=TINY[family], band_strategy=strategy, weights=weights)


def use_spec(monkeypatch, spec) -> str:
    """Register a test spec for this test only (the registry has no public unregister)."""
    monkeypatch.setitem(registry._SPECS, spec.name, spec)
    return spec.name


@pytest.fixture(scope="module")
def frost_root(tmp_path_factory) -> Path:
    from marsbench.sources.synth import generate

    return generate("mb-frost_cls", tmp_path_factory.mktemp("eo_synth"), "folder").parent


# -- the full-size published layouts --------------------------------------------------------------

@pytest.mark.parametrize("family", ["satmae", "croma", "prithvi"])
def test_full_size_models_read_exactly_the_published_layout(family) -> None:
    """Built at full size on the meta device (no memory): every tensor the loader reads is in the
    authors' file with the same shape, and everything else in it is a part we knowingly drop."""
    spec = BASE[family]
    impl = eo.FAMILIES[family]
    with torch.device("meta"):
        model = impl.build(spec.arch)
        source = _source_tensors(family, authors_state(family, spec.arch, FULL_DECODER))
    wanted = {km.source: km.source_shape for km in impl.key_map(model, spec.arch).values()}
    kept = {k: tuple(v.shape) for k, v in source.items() if not impl.dropped(k)}
    assert wanted == kept
    assert all(impl.dropped(k) for k in set(source) - set(wanted))
    n_params = sum(p.numel() for p in model.parameters())
    import torchvision

    with torch.device("meta"):
        if family == "satmae":  # a ViT-L/16 encoder: torchvision's vit_l_16 without its head
            tv = torchvision.models.vit_l_16()
            assert n_params == sum(p.numel() for p in tv.parameters()) - 1024 * 1000 - 1000
            assert kept["pos_embed"] == (1, 197, 1024)
        if family == "prithvi":  # ViT-B/16 with 6 bands; TerraTorch's PrithviViT has 86,237,184
            tv = torchvision.models.vit_b_16()
            assert n_params == (sum(p.numel() for p in tv.parameters()) - 768 * 1000 - 1000
                                + 768 * 3 * 16 * 16)
            assert kept["patch_embed.proj.weight"] == (768, 6, 1, 16, 16)
            assert kept["pos_embed"] == (1, 1 + 3 * 14 * 14, 768)
            assert source["decoder_pred.weight"].shape == (16 * 16 * 6, 512)
    if family == "croma":
        assert kept["s2_encoder.linear_input.weight"] == (1024, 8 * 8 * 12)
        assert sum(k.startswith("s2_encoder.transformer.layers.") and k.endswith(
            "0.to_qkv.weight") for k in kept) == 24


def test_croma_weights_url_is_torchgeos() -> None:
    from torchgeo.models import CROMALarge_Weights

    assert eo.CROMA_WEIGHTS.url == CROMALarge_Weights.CROMA_VIT.url
    assert eo.CROMA_WEIGHTS.filename == CROMALarge_Weights.CROMA_VIT.url.rsplit("/", 1)[-1]


# -- loading through the real code ----------------------------------------------------------------

@pytest.mark.parametrize("family", ["satmae", "croma", "prithvi"])
def test_published_checkpoint_loads_into_the_encoder(caches, family) -> None:
    weights, state = install_checkpoint(family, caches)
    spec = tiny_spec(family, "replicate", weights)
    parts = spec.builder(True)
    assert parts.weights_tag.startswith(f"{weights.kind}:{weights.tag}:sha256:")
    loaded = parts.backbone.state_dict()
    source = _source_tensors(family, state)
    if family == "prithvi":  # frame 0 of the 3-D patch kernel and of the position table
        torch.testing.assert_close(loaded["patch_embed.proj.weight"],
                                   source["patch_embed.proj.weight"][:, :, 0])
        torch.testing.assert_close(loaded["pos_embed"], source["pos_embed"][:, :197])
        torch.testing.assert_close(loaded["blocks.1.mlp.fc2.weight"],
                                   source["blocks.1.mlp.fc2.weight"])
    else:
        for key, value in loaded.items():
            torch.testing.assert_close(value, source[key], msg=key)
    with torch.no_grad():
        out = parts.backbone.eval()(preprocess(
            torch.randint(0, 256, (64, 64, 1), dtype=torch.uint8).numpy(),
            spec.preprocessing)[None])
    assert out.shape == (1, spec.arch.embed_dim) and torch.isfinite(out).all()


def test_croma_encoder_matches_torchgeos_croma(caches) -> None:
    """Same weights, same input: our optical encoder == TorchGeo's CROMA ``optical_GAP``."""
    from torchgeo.models.croma import CROMA

    weights, state = install_checkpoint("croma", caches)
    ours = tiny_spec("croma", "replicate", weights).builder(True).backbone.eval()
    arch = TINY["croma"]
    ref = CROMA(modalities=["optical"], encoder_dim=arch.embed_dim, encoder_depth=arch.depth,
                num_heads=arch.num_heads, patch_size=arch.patch_size, image_size=arch.img_size)
    ref.s2_encoder.load_state_dict(state["s2_encoder"])  # as torchgeo's load_weights does
    ref.s2_GAP_FFN.load_state_dict(state["s2_GAP_FFN"])
    x = torch.rand(2, 12, 120, 120)
    with torch.no_grad():
        torch.testing.assert_close(ours(x), ref.eval()(x_optical=x)["optical_GAP"])
        assert ours(torch.rand(1, 12, 64, 64)).shape == (1, arch.embed_dim)  # other sizes too


def _container(family: str, state: dict, key: str) -> tuple[dict, str]:
    """The dict holding checkpoint ``key`` in ``family``'s format, and its name there."""
    if family == "satmae":
        return state["model"], key
    if family == "croma":
        part, inner = key.split(".", 1)
        return state[part], inner
    return state, key


def _reinstall(family: str, caches: Path, state: dict) -> eo.PublishedWeights:
    import shutil

    for folder in ("hf", "torch"):
        shutil.rmtree(caches / folder, ignore_errors=True)
    return install_checkpoint(family, caches, state)[0]


@pytest.mark.parametrize("family,key", [("satmae", "blocks.1.attn.qkv.weight"),
                                        ("prithvi", "patch_embed.proj.weight"),
                                        ("croma", "s2_GAP_FFN.1.weight")])
def test_wrong_key_or_shape_is_an_error_naming_the_key(caches, family, key) -> None:
    state = authors_state(family, TINY[family])
    holder, name = _container(family, state, key)
    holder[name] = torch.zeros(3, 3)
    weights = _reinstall(family, caches, state)
    with pytest.raises(WeightsUnavailableError, match=f"tensor '{key}' has shape \\(3, 3\\)"):
        tiny_spec(family, "replicate", weights).builder(True)

    state = authors_state(family, TINY[family])
    holder, name = _container(family, state, key)
    holder[name + "_renamed"] = holder.pop(name)
    weights = _reinstall(family, caches, state)
    with pytest.raises(WeightsUnavailableError, match=f"has no tensor '{key}'"):
        tiny_spec(family, "replicate", weights).builder(True)


def test_unknown_tensors_are_refused(caches) -> None:
    state = authors_state("satmae", TINY["satmae"])
    state["model"]["head.weight"] = torch.zeros(1000, 32)  # a fine-tuned file, not the pretrained
    weights, _ = install_checkpoint("satmae", caches, state)
    with pytest.raises(WeightsUnavailableError, match="does not know: head.weight"):
        tiny_spec("satmae", "replicate", weights).builder(True)


def test_missing_weights_name_the_repository_and_file(caches) -> None:
    with pytest.raises(WeightsUnavailableError) as err:
        eo.PRITHVI_EO_V1_100.builder(True)
    msg = str(err.value)
    assert "Prithvi_EO_V1_100M.pt" in msg and "ibm-nasa-geospatial/Prithvi-EO-1.0-100M" in msg
    assert "MARSBENCH_OFFLINE=1" in msg
    with pytest.raises(WeightsUnavailableError) as err:
        eo.SATMAE_VIT_L16.builder(True)
    assert "https://zenodo.org/records/7369797/files/fmow_pretrain.pth" in str(err.value)
    assert str(caches / "torch" / "hub" / "checkpoints" / "fmow_pretrain.pth") in str(err.value)
    with pytest.raises(WeightsUnavailableError, match="CROMA_large-921e69ad.pt"):
        eo.CROMA_LARGE.builder(True)


def test_a_file_whose_hash_differs_from_the_published_one_is_refused(caches) -> None:
    # CROMA: the sha256 prefix in the published file name.
    checkpoints = caches / "torch" / "hub" / "checkpoints"
    checkpoints.mkdir(parents=True)
    torch.save(authors_state("croma", TINY["croma"]), checkpoints / eo.CROMA_WEIGHTS.filename)
    with pytest.raises(WeightsUnavailableError, match="does not match the sha256 prefix"):
        tiny_spec("croma", "replicate", eo.CROMA_WEIGHTS).builder(True)
    # Hugging Face: a blob whose content is not the sha256 the Hub published (its name).
    tmp = caches / "prithvi.pt"
    torch.save(authors_state("prithvi", TINY["prithvi"]), tmp)
    put_in_hf_cache(caches / "hf", eo.PRITHVI_WEIGHTS.hf_hub_id, eo.PRITHVI_WEIGHTS.filename,
                    tmp, blob_name="ab" * 32)
    with pytest.raises(WeightsUnavailableError, match="the Hugging Face Hub published"):
        tiny_spec("prithvi", "replicate", eo.PRITHVI_WEIGHTS).builder(True)


# -- classifiers and training ---------------------------------------------------------------------

def test_adapter_trains_while_the_encoder_stays_frozen(caches) -> None:
    weights, _ = install_checkpoint("prithvi", caches)
    spec = tiny_spec("prithvi", "adapter", weights)
    model = build_classifier(spec, 2, "feature_extraction")
    assert isinstance(model.backbone, AdaptedBackbone)
    encoder_before = {k: v.clone() for k, v in model.backbone.encoder.state_dict().items()}
    adapter = trainable_adapter_parameters(model)
    assert adapter and all(p.requires_grad for p in adapter)
    assert not any(p.requires_grad for p in model.backbone.encoder.parameters())
    model.train()
    assert model.head.training and not model.backbone.encoder.training
    x = preprocess(torch.randint(0, 256, (50, 50, 1), dtype=torch.uint8).numpy(),
                   spec.preprocessing)[None].repeat(2, 1, 1, 1)
    loss = model(x).sum()
    loss.backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in adapter)
    assert all(p.grad is None for p in model.backbone.encoder.parameters())
    opt = torch.optim.SGD(adapter + list(model.head.parameters()), lr=0.1)
    opt.step()
    for k, v in model.backbone.encoder.state_dict().items():
        torch.testing.assert_close(v, encoder_before[k], msg=k)


@pytest.mark.parametrize("strategy", ["replicate", "visible", "adapter"])
@pytest.mark.parametrize("family", ["satmae", "croma", "prithvi"])
def test_feature_extraction_run_on_one_band_mars_images(caches, monkeypatch, frost_root, family,
                                                        strategy) -> None:
    """The real trainer on synthetic 1-band frost images, published-format weights from the
    cache, each band strategy; the record says which strategy ran."""
    from marsbench.training.run import run_experiment

    weights, _ = install_checkpoint(family, caches)
    name = use_spec(monkeypatch, tiny_spec(family, strategy, weights))
    extra = {"band_strategy": strategy}
    if strategy == "adapter":
        extra["fe_path"] = "online"  # the adapter trains: no frozen-feature cache
    record = run_experiment(RunSpec(dataset="mb-frost_cls", data_root=str(frost_root),
                                    model=name, regime="feature_extraction", max_epochs=2,
                                    patience=0, batch_size=8, options=extra))
    assert record.ok and record.epochs_run == 2
    assert record.extra["preprocessing"]["bands"]["strategy"] == strategy
    assert record.spec.options.band_strategy == strategy  # part of the run's key
    assert 0.0 <= record.metrics["test"]["f1_weighted"] <= 1.0


def test_run_takes_the_band_strategy_from_extra(caches, monkeypatch, frost_root) -> None:
    from marsbench.training.run import run_experiment

    weights, _ = install_checkpoint("croma", caches)
    name = use_spec(monkeypatch, tiny_spec("croma", "replicate", weights))
    record = run_experiment(RunSpec(dataset="mb-frost_cls", data_root=str(frost_root),
                                    model=name, regime="feature_extraction", max_epochs=1,
                                    batch_size=8, options={"band_strategy": "visible"}))
    assert record.extra["preprocessing"]["bands"]["strategy"] == "visible"


def test_feature_extraction_trains_the_input_adapter(caches, monkeypatch, frost_root) -> None:
    from marsbench.training.run import open_splits, train

    weights, _ = install_checkpoint("prithvi", caches)
    spec_model = tiny_spec("prithvi", "adapter", weights)
    name = use_spec(monkeypatch, spec_model)
    model = build_classifier(spec_model, 2, "feature_extraction")
    before = [p.detach().clone() for p in trainable_adapter_parameters(model)]
    run = RunSpec(dataset="mb-frost_cls", data_root=str(frost_root), model=name,
                  regime="feature_extraction", max_epochs=2, patience=0, batch_size=8,
                  options={"band_strategy": "adapter", "fe_path": "online"})
    train(run, open_splits(run), model=model, device="cpu")
    after = trainable_adapter_parameters(model)
    assert any(not torch.equal(a, b) for a, b in zip(after, before, strict=True))


def test_experiment_file_reproduces_the_paper_study() -> None:
    from marsbench.protocol.experiment import PAPER_SEEDS, load_experiment

    exp = load_experiment(Path(__file__).parents[1] / "experiments" / "earth_observation.yaml")
    assert {d.name for d in exp.datasets} == {"mb-atmospheric_dust_cls_edr", "mb-domars16k",
                                              "mb-frost_cls", "mb-surface_cls"}
    fractions = ("0.01", "0.02", "0.05", "0.10", "0.20", "0.25", "0.50")  # earth_data.csv's
    assert all(d.variants == (*(f"partition:{f}" for f in fractions), "full")
               for d in exp.datasets)
    models = {m.name: dict(m.options) for m in exp.models}
    assert set(models) == {"vit_l_16", "satmae_vit_l16", "croma_large", "prithvi_eo_v1_100"}
    assert all(models[n]["band_strategy"] == "replicate" for n in models if n != "vit_l_16")
    assert "band_strategy" not in models["vit_l_16"]
    assert exp.regimes == ("feature_extraction",) and exp.seeds == PAPER_SEEDS
    for m in exp.models:  # every run of the file resolves to a spec
        eo.resolve_model_spec(m.name, dict(m.options), "feature_extraction")
