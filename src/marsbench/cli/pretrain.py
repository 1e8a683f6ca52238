"""`marsbench pretrain`: continued self-supervised (MAE) pretraining on unlabeled Mars images."""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Annotated, Optional

import typer

from ..errors import MarsbenchError

EPILOG = ("Examples:\n\n"
          "marsbench pretrain ./my_hirise_tiles --model momo_vit_b16 --steps 5000 "
          "--out runs/pretrain/momo_b_hirise\n\n"
          "marsbench pretrain mb-landmark_cls --dataset --model timm:vit_base_patch16_224 "
          "--steps 2000 --check mb-landmark_cls\n\n"
          "marsbench pretrain ./tiles --model timm:vit_tiny_patch16_224 --from scratch "
          "--img-size 64 --patch-size 8 --steps 200 --out runs/pretrain/tiny\n\n"
          "Then: marsbench run --model <the same model> --weights <out>/encoder.safetensors ...")


class ContaminationError(MarsbenchError, RuntimeError):
    """Pretraining images found in a benchmark's val or test split."""


def _progress(every: int):
    """One line per ``every`` steps off a terminal; a line rewritten in place on one."""
    tty = sys.stderr.isatty()
    t0 = time.perf_counter()
    first = [None]

    def show(step: int, total: int, loss: float, lr: float) -> None:
        if first[0] is None:
            first[0] = step - 1
        if not (tty or step % every == 0 or step == total):
            return
        elapsed = time.perf_counter() - t0
        done = step - first[0]
        rate = done / elapsed if elapsed > 0 else 0.0
        eta = (total - step) / rate if rate > 0 else 0.0
        line = (f"step {step}/{total}  loss {loss:.4f}  lr {lr:.2e}  {rate:.2f} step/s  "
                f"ETA {_duration(eta)}")
        if tty:
            typer.echo("\r" + line + " " * 4, nl=step == total, err=True)
        else:
            typer.echo(line, err=True)

    return show


def _duration(seconds: float) -> str:
    seconds = int(round(seconds))
    h, rest = divmod(seconds, 3600)
    m, s = divmod(rest, 60)
    return f"{h}h{m:02d}m" if h else f"{m}m{s:02d}s"


def pretrain_command(
    data: Annotated[str, typer.Argument(
        help="a folder of images (searched recursively; png, jpg, tif), or a Mars-Bench "
             "dataset (name or folder; its train split, labels ignored)")],
    model: Annotated[str, typer.Option(
        help="the ViT to start from: registry name (e.g. momo_vit_b16) or timm:<vit name>")
    ] = "timm:vit_base_patch16_224",
    start: Annotated[str, typer.Option(
        "--from", help="pretrained (its published weights, which must be available locally "
                       "or downloadable) | scratch")] = "pretrained",
    out: Annotated[Path, typer.Option(
        help="output folder: encoder.safetensors, pretrain.json, checkpoint/")
    ] = Path("runs/pretrain"),
    dataset: Annotated[bool, typer.Option(
        "--dataset", help="read DATA as a Mars-Bench dataset even when it is a folder")] = False,
    root: Annotated[Optional[Path], typer.Option(help="data root for dataset names")] = None,
    steps: Annotated[int, typer.Option(help="total optimisation steps (with --resume: the "
                                            "step to reach)")] = 1000,
    batch_size: int = 64,
    lr: Annotated[float, typer.Option(help="peak AdamW learning rate (cosine decay)")] = 1.5e-4,
    weight_decay: float = 0.05,
    warmup_steps: Annotated[Optional[int], typer.Option(
        help="linear warmup steps (default: 5 % of --steps)")] = None,
    mask_ratio: Annotated[float, typer.Option(help="share of patches masked")] = 0.75,
    decoder_dim: int = 256,
    decoder_depth: int = 4,
    decoder_heads: int = 8,
    norm_pix_loss: Annotated[bool, typer.Option(
        help="targets are per-patch normalised pixels (MAE)")] = True,
    augment: Annotated[bool, typer.Option(
        help="random resized crop + horizontal flip")] = True,
    img_size: Annotated[Optional[int], typer.Option(help="--from scratch: input size")] = None,
    patch_size: Annotated[Optional[int], typer.Option(help="--from scratch: patch size")] = None,
    embed_dim: Annotated[Optional[int], typer.Option(help="--from scratch: width")] = None,
    depth: Annotated[Optional[int], typer.Option(help="--from scratch: blocks")] = None,
    num_heads: Annotated[Optional[int], typer.Option(help="--from scratch: heads")] = None,
    precision: Annotated[str, typer.Option(
        help="auto (bf16 autocast on CUDA, fp32 on the CPU) | fp32 | bf16 | fp16")] = "auto",
    device: Annotated[str, typer.Option(help="auto | cpu | cuda | cuda:N")] = "auto",
    workers: Annotated[Optional[int], typer.Option(
        help="loader worker processes (default: from the CPU count, $MARSBENCH_WORKERS)")
    ] = None,
    seed: int = 0,
    checkpoint_every: Annotated[int, typer.Option(
        help="write a resumable checkpoint every K steps (and at the end)")] = 500,
    resume: Annotated[bool, typer.Option(
        "--resume", help="continue the checkpoint in --out up to --steps")] = False,
    check: Annotated[Optional[list[str]], typer.Option(
        help="dataset to check for contamination (repeatable): pretraining images whose "
             "content hash equals one of its images are listed; any in val or test stops the "
             "run")] = None,
    log_every: Annotated[int, typer.Option(
        help="progress line every N steps when stderr is not a terminal")] = 50,
) -> None:
    """Continue self-supervised MAE pretraining of a ViT on unlabeled Mars images.

    Writes OUT/encoder.safetensors (timm ViT keys: `marsbench run --model <same model>
    --weights OUT/encoder.safetensors` loads it) and OUT/pretrain.json (start point, data
    fingerprint, settings, losses, versions); checkpoints in OUT/checkpoint/ resume with
    --resume."""
    from ..errors import in_range
    from ..training.pretrain import (MAX_STEPS, PretrainConfig, contamination, open_data,
                                     pretrain)
    from . import common

    in_range(log_every, "--log-every", 1, MAX_STEPS, example="50")
    arch = {k: v for k, v in dict(img_size=img_size, patch_size=patch_size, embed_dim=embed_dim,
                                  depth=depth, num_heads=num_heads).items() if v is not None}
    cfg = PretrainConfig(
        data=data, out=out, model=model, start=start, arch=arch, dataset=dataset,
        root=common.data_root(root) if root is not None else None, steps=steps,
        batch_size=batch_size, lr=lr, weight_decay=weight_decay, warmup_steps=warmup_steps,
        mask_ratio=mask_ratio, decoder_dim=decoder_dim, decoder_depth=decoder_depth,
        decoder_heads=decoder_heads, norm_pix_loss=norm_pix_loss, augment=augment,
        precision=precision, device=device, workers=workers, seed=seed,
        checkpoint_every=checkpoint_every, resume=resume)
    cfg.check()
    images = open_data(data, dataset=dataset, root=cfg.root)
    common.output_folder(out, "--out")
    typer.echo(f"pretraining {model} ({start}) on {images.description['images']} images "
               f"(fingerprint {images.description['fingerprint']})", err=True)
    extra = {}
    if check:
        rows = extra["contamination_check"] = contamination(images, check, root=cfg.root)
        for row in rows:
            typer.echo(f"check {row['dataset']} {row['split']}: {row['overlap']} of the "
                       f"pretraining images among its {row['images']}"
                       + (f", e.g. {', '.join(map(str, row['examples']))}"
                          if row["overlap"] else "")
                       + (f"; {row['near']} near-duplicate(s) (perceptual hash within "
                          f"{row['near_threshold']} bits; candidates to look at, not refused)"
                          f", e.g. {', '.join(map(str, row['near_examples']))}"
                          if row["near"] else ""), err=True)
        leaks = [r for r in rows if r["overlap"] and r["split"] in ("val", "test")]
        if leaks:
            raise ContaminationError(
                "pretraining images are in a benchmark's evaluation split",
                value=", ".join(f"{r['dataset']} {r['split']}: {r['overlap']}" for r in leaks),
                fix="remove them from the pretraining images (or do not evaluate on that "
                    "dataset)")
    result = pretrain(cfg, progress=_progress(log_every), data=images, extra=extra)
    typer.echo(f"step {result.step}: loss {result.record['loss_first']} -> "
               f"{result.record['loss_last']}")
    typer.echo(f"encoder: {result.encoder_path}")
    typer.echo(f"record:  {result.record_path}")
    if result.record["encoder"]["loads_as"]:
        typer.echo(f"use it:  marsbench run --model {result.record['encoder']['loads_as']} "
                   f"--weights {result.encoder_path} --dataset ... --regime fine_tuning")
