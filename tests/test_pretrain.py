"""`marsbench pretrain`: MAE pretraining of a tiny ViT (img 32, patch 8, width 32, depth 2) on 32
images, its checkpoints, --resume, the encoder file loading into a classifier through the real
loader, the contamination check, and the CLI's errors."""

from __future__ import annotations

import dataclasses
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors.torch import load_file
from typer.testing import CliRunner

from marsbench.cli.main import app
from marsbench.training.pretrain import (
    MAE,
    PretrainConfig,
    build_start,
    combined_digest,
    load_checkpoint,
    pretrain,
)

TINY = dict(img_size=32, patch_size=8, embed_dim=32, depth=2, num_heads=2)
TINY_FLAGS = ["--model", "timm:vit_tiny_patch16_224", "--from", "scratch", "--img-size", "32",
              "--patch-size", "8", "--embed-dim", "32", "--depth", "2", "--num-heads", "2",
              "--decoder-dim", "32", "--decoder-depth", "1", "--decoder-heads", "2",
              "--batch-size", "8", "--workers", "0"]


def tiny_config(data, out, **changes) -> PretrainConfig:
    settings = dict(data=str(data), out=Path(out), model="timm:vit_tiny_patch16_224",
                    start="scratch", arch=dict(TINY), steps=40, batch_size=8, lr=2e-3,
                    decoder_dim=32, decoder_depth=1, decoder_heads=2, workers=0,
                    checkpoint_every=20, device="cpu")
    settings.update(changes)
    return PretrainConfig(**settings)


@pytest.fixture(scope="module")
def images(tmp_path_factory) -> Path:
    """32 synthetic images: gray and RGB, PNG and JPEG, sizes 40-64 px, in subfolders."""
    folder = tmp_path_factory.mktemp("pretrain-images")
    rng = np.random.default_rng(0)
    for i in range(32):
        size = 40 + (i % 4) * 8
        yy, xx = np.mgrid[0:size, 0:size]
        base = 128 + 90 * np.sin(xx / (2 + i % 5) + yy / (3 + i % 3))
        base = np.clip(base + rng.normal(0, 10, base.shape), 0, 255).astype(np.uint8)
        sub = folder / f"part{i % 2}"
        sub.mkdir(exist_ok=True)
        if i % 3 == 0:
            Image.fromarray(np.stack([base, base[::-1], base[:, ::-1]], -1)).save(
                sub / f"im{i}.jpg", quality=95)
        else:
            Image.fromarray(base).save(sub / f"im{i}.png")
    return folder


@pytest.fixture(scope="module")
def trained(images, tmp_path_factory):
    out = tmp_path_factory.mktemp("pretrain-run")
    return pretrain(tiny_config(images, out))


def test_loss_falls_and_record(trained, images):
    losses = trained.losses
    assert len(losses) == 40 and trained.step == 40
    first, last = float(np.mean(losses[:5])), float(np.mean(losses[-5:]))
    assert last < 0.95 * first, (first, last)
    record = json.loads(trained.record_path.read_text())
    assert record["steps"] == 40 and len(record["loss_history"]) == 40
    assert record["start"] == {"model": "timm:vit_tiny_patch16_224", "from": "scratch",
                               "weights": "random", "arch_overrides": TINY}
    assert record["precision"] == "fp32" and record["objective"]["mask_ratio"] == 0.75
    from marsbench.sources.content_hash import file_digests

    files = sorted(p for p in images.rglob("*") if p.is_file())
    assert record["data"]["images"] == 32
    assert record["data"]["fingerprint"] == combined_digest(file_digests(files))
    assert {"marsbench", "torch", "timm"} <= set(record["versions"])


def test_checkpoint_round_trip(trained):
    encoder_file = load_file(str(trained.encoder_path))
    assert not any(k.startswith(("decoder", "head", "mask_token")) for k in encoder_file)
    assert {"cls_token", "pos_embed", "patch_embed.proj.weight", "norm.weight"} <= set(
        encoder_file)
    fresh = MAE(build_start("timm:vit_tiny_patch16_224", "scratch", TINY).encoder,
                decoder_dim=32, decoder_depth=1, decoder_heads=2)
    state = load_checkpoint(trained.out / "checkpoint", fresh)
    assert state["step"] == 40
    for key, value in fresh.encoder.state_dict().items():
        assert torch.equal(value, encoder_file[key]), key
    saved = load_file(str(trained.out / "checkpoint" / "state.safetensors"))
    for key, value in fresh.decoder.state_dict().items():
        assert torch.equal(value, saved["decoder." + key]), key


def test_resume_continues_the_step_count(images, tmp_path):
    out = tmp_path / "extended"
    first = pretrain(tiny_config(images, out, steps=12, checkpoint_every=5))
    assert first.step == 12
    with pytest.raises(Exception, match="--resume"):  # no silent restart over a checkpoint
        pretrain(tiny_config(images, out, steps=20))
    second = pretrain(tiny_config(images, out, steps=20, resume=True))
    assert second.step == 20 and len(second.losses) == 8
    assert second.record["resumed_from"] == 12
    assert [s for s, _ in second.record["loss_history"]] == list(range(1, 21))
    assert second.record["loss_history"][:12] == first.record["loss_history"]


def test_interrupted_run_resumes_exactly(images, tmp_path, trained):
    """Ctrl-C at step 27 of 40 (checkpoint every 5: the last at 25), then --resume: the same
    batches, masks and optimiser state as the uninterrupted run, so the same encoder."""
    out = tmp_path / "interrupted"

    def stop(step, total, loss, lr):
        if step == 27:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        pretrain(tiny_config(images, out, checkpoint_every=5), progress=stop)
    assert json.loads((out / "checkpoint" / "state.json").read_text())["step"] == 25
    resumed = pretrain(tiny_config(images, out, resume=True))
    assert resumed.step == 40 and resumed.record["resumed_from"] == 25
    torch.testing.assert_close(resumed.losses, trained.losses[25:], rtol=1e-4, atol=1e-5)
    a, b = load_file(str(resumed.encoder_path)), load_file(str(trained.encoder_path))
    for key in b:
        torch.testing.assert_close(a[key], b[key], rtol=1e-4, atol=1e-5)


def test_encoder_loads_into_a_classifier(trained):
    from marsbench.models.builders import _split_timm
    from marsbench.models.classifier import build_classifier
    from marsbench.models.registry import get_spec

    import timm

    spec = dataclasses.replace(
        get_spec("timm:vit_tiny_patch16_224"), input_size=32,
        builder=lambda pretrained: _split_timm(
            timm.create_model("vit_tiny_patch16_224", pretrained=False, **TINY), "random"))
    model = build_classifier(spec, 3, "fine_tuning", weights=trained.encoder_path)
    assert model.load_report.missing == ["head.bias", "head.weight"]
    saved = load_file(str(trained.encoder_path))
    for key, value in model.backbone.state_dict().items():
        assert torch.equal(value, saved[key]), key
    assert model(torch.zeros(2, 3, 32, 32)).shape == (2, 3)


@pytest.mark.parametrize("name", ["timm:vit_tiny_patch16_224", "momo_vit_s16"])
def test_registry_model_loads_with_marsbench_run_weights(images, tmp_path, name):
    """Full-size registry ViTs (random start, 2 steps): the file fits `--model NAME --weights`."""
    from marsbench.models.classifier import build_classifier

    cfg = tiny_config(images, tmp_path, model=name, arch={}, steps=1, batch_size=2)
    result = pretrain(cfg)
    assert result.record["encoder"]["loads_as"] == name
    model = build_classifier(name, 2, "fine_tuning", weights=result.encoder_path)
    assert model.load_report.missing == ["head.bias", "head.weight"]
    # the same file as a model name: file:<path> (the architecture from pretrain.json)
    by_file = build_classifier(f"file:{result.encoder_path}", 2, "feature_extraction")
    assert by_file.weights_tag == model.weights_tag  # file:sha256:<the file>
    for key, value in model.backbone.state_dict().items():
        assert torch.equal(value, by_file.backbone.state_dict()[key]), key


def test_cli_runs_and_refuses_a_missing_folder(images, tmp_path):
    out = tmp_path / "cli"
    result = CliRunner().invoke(app, ["pretrain", str(images), *TINY_FLAGS, "--steps", "4",
                                      "--log-every", "2", "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert (out / "encoder.safetensors").is_file() and (out / "pretrain.json").is_file()
    assert "step 2/4" in result.stderr and "ETA" in result.stderr
    result = CliRunner().invoke(app, ["pretrain", str(images), *TINY_FLAGS, "--steps", "6",
                                      "--resume", "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert json.loads((out / "pretrain.json").read_text())["steps"] == 6

    missing = CliRunner().invoke(app, ["pretrain", str(tmp_path / "no_such_folder"),
                                       *TINY_FLAGS, "--out", str(tmp_path / "x")])
    assert missing.exit_code == 2 and "Traceback" not in missing.output
    lines = [line for line in missing.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: no folder at this path")

    bad = CliRunner().invoke(app, ["pretrain", str(images), "--model", "timm:vit_tiny_patch16_224",
                                   "--patch-size", "8", "--out", str(tmp_path / "y")])
    assert bad.exit_code == 2 and bad.stderr.strip().startswith("error: architecture flags")


def test_real_images_and_contamination_check(shared_data, tmp_path):
    name = "mb-landmark_cls-mini"
    test_images = shared_data / name / "data" / "test"
    if not test_images.is_dir():
        pytest.skip(f"needs {test_images}")
    subset = tmp_path / "real"
    for path in sorted(p for p in test_images.rglob("*") if p.is_file())[:32]:
        dest = subset / path.relative_to(test_images)
        dest.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(path, dest)
    result = pretrain(tiny_config(subset, tmp_path / "out", steps=20))
    assert np.mean(result.losses[-5:]) < np.mean(result.losses[:5])

    # these images are the benchmark's test split: --check refuses to pretrain on them
    leak = CliRunner().invoke(app, ["pretrain", str(subset), *TINY_FLAGS, "--steps", "2",
                                    "--check", name, "--root", str(shared_data),
                                    "--out", str(tmp_path / "leak")])
    assert leak.exit_code == 2, leak.output
    assert "evaluation split" in leak.stderr and f"{name} test: 32" in leak.stderr
    assert not (tmp_path / "leak" / "encoder.safetensors").exists()

    # a dataset's train split (labels ignored) overlaps its own train split only
    ok = CliRunner().invoke(app, ["pretrain", name, "--dataset", "--root", str(shared_data),
                                  *TINY_FLAGS, "--steps", "2", "--check", name,
                                  "--out", str(tmp_path / "ds")])
    assert ok.exit_code == 0, ok.output
    record = json.loads((tmp_path / "ds" / "pretrain.json").read_text())
    assert record["data"]["kind"] == "dataset" and record["data"]["labels"] == "ignored"
    overlap = {r["split"]: r["overlap"] for r in record["contamination_check"]}
    assert overlap["val"] == overlap["test"] == 0 and overlap["train"] == record["data"]["images"]


def test_contamination_check_finds_planted_near_duplicates(tmp_path):
    """An evaluation image re-saved with JPEG noise and a small brightness change is not
    byte-identical, but its perceptual hash is within the threshold: reported as near."""
    import numpy as np
    from PIL import Image

    from marsbench.sources.audit import dhash
    from marsbench.training.pretrain import _nearest_bits

    rng = np.random.default_rng(0)
    base = (rng.random((64, 64)) * 255).astype(np.uint8)
    base[:, :32] //= 3  # structure a difference hash sees
    Image.fromarray(base).save(tmp_path / "test.png")
    edited = np.clip(base.astype(int) + 4, 0, 255).astype(np.uint8)
    Image.fromarray(edited).save(tmp_path / "copy.jpg", quality=85)
    other = (rng.random((64, 64)) * 255).astype(np.uint8)
    hashes = np.array([dhash(tmp_path / "copy.jpg")], dtype=np.uint64)
    assert _nearest_bits(dhash(tmp_path / "test.png"), hashes) <= 5
    assert _nearest_bits(dhash(other), hashes) > 5
    assert _nearest_bits(dhash(other), np.array([], dtype=np.uint64)) == 64


def test_file_model_names_are_refused_clearly(tmp_path):
    from marsbench.models.registry import UnknownModelError, get_spec

    with pytest.raises(UnknownModelError, match="no checkpoint file"):
        get_spec(f"file:{tmp_path / 'missing.safetensors'}")
    lone = tmp_path / "encoder.safetensors"
    lone.write_bytes(b"x")
    with pytest.raises(UnknownModelError, match="pretrain.json"):
        get_spec(f"file:{lone}")


@pytest.mark.parametrize("flags, expect", [
    (["--img-size", "30", "--patch-size", "8"],
     "--img-size 30 must be a multiple of --patch-size 8"),
    (["--img-size", "30"], "--img-size 30 must be a multiple of --patch-size 16"),
    (["--embed-dim", "30", "--num-heads", "4"],
     "--embed-dim 30 must be a multiple of --num-heads 4"),
    # numbers out of range: refused by name, never an overflow or a failed loader later
    (["--depth", "99999999999999999999999"], "--depth must be at least 1 and at most 1024"),
    (["--img-size", "0"], "--img-size must be at least 1 and at most 8192"),
    (["--seed", "-1"], "--seed must be at least 0 and at most 4294967295"),
    (["--warmup-steps", "2"], "--warmup-steps must be at least 0 and at most 1 (--warmup-steps)"),
    (["--lr", "nan"], "--lr must be greater than 0 and at most 1"),
    (["--batch-size", "99999999999999999999999"], "--batch-size must be at least 1"),
])
def test_cli_refuses_sizes_that_do_not_divide(images, tmp_path, flags, expect):
    """Refused in one line before training, not as a reshape error inside the first step."""
    result = CliRunner().invoke(app, ["pretrain", str(images), "--model",
                                      "timm:vit_tiny_patch16_224", "--from", "scratch", *flags,
                                      "--steps", "1", "--workers", "0", "--device", "cpu",
                                      "--out", str(tmp_path / "o")])
    lines = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert result.exit_code == 2 and len(lines) == 1 and "Traceback" not in result.output
    assert lines[0].startswith("error: " + expect), lines
    assert "e.g. --" in lines[0]
