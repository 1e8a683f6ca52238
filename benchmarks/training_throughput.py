"""Training throughput: marsbench's paths against the bare model, side by side in one run.

For every model (default: ResNet-101, ViT-L/16, EfficientNet-Lite0 and U-Net on the Lite0
encoder) it measures, on whatever device it finds (``--device``):

* the **bare model**: the same architecture built straight from torchvision / timm /
  segmentation-models-pytorch, random weights, fed random tensors that already sit on the device,
  in a hand-written loop -- the best (fastest of ``--repeats`` after a warm-up) forward pass at the
  evaluation batch size and train step (AdamW, cross-entropy) at the training batch size, under
  the precision marsbench uses there (bf16 autocast on CUDA, fp32 on the CPU) and channels_last on
  CUDA, as marsbench's engine does;
* **marsbench's paths**, through the real training code on a JPEG folder dataset in the
  Mars-Bench layout written for the run (``--n-images`` of ``--image-size`` px):

  - *pipeline (decode+resize)*: the engine's loader over the split (decode, resize, collate), to
    the device, normalised, no model -- compared with the bare forward pass, whose input it has
    to keep up with; *pipeline (pixel cache)*: the same as the trainer reads it, from the
    decoded-pixel cache (built first, from cold; its build rate is in the note);
  - *feature pass*: the cached ``feature_extraction`` path of the classification task (`marsbench.training.run.train`), cold (no
    pixel or feature cache): from the call to the end of the last backbone pass over train +
    val + test (fingerprints, decoding, cache writes), minus building the model;
  - *fine-tuning epoch*: a ``fine_tuning`` epoch of the classification task (`marsbench.training.run.train`) (augmentation on, as
    by default), steady state: from the end of the second training forward pass to the end of
    the last (every step whole: loading, augmentation, forward, backward, optimiser step); the
    note gives the share of that window spent between an optimiser step and the next forward
    pass (waiting for and preparing the input);
  - *evaluation pass*: the validation pass of that epoch (no gradients, eval batch size);
  - *segmentation epoch* / *seg evaluation pass* (and the *seg pipeline* rows): the same for
    the segmentation task (input policy ``native``);

  each as a share of the bare model (the pipeline rows as a ratio);
* **peak RSS** of a feature pass over a ``--rss-images`` synthetic set (50,000 on a GPU), in a
  child process so that nothing else of this run counts: the child's own high-water mark
  (``VmHWM``; ``getrusage``'s ``ru_maxrss`` is in the JSON too, but Linux carries it across
  ``exec``, so a child of a large parent reports the parent's size), with sampled peaks of its
  private and file-backed parts (memory-mapped caches count in RSS, though the kernel can drop
  those pages).

Timing: CUDA events on the GPU (no synchronisation added inside the loops being watched);
elapsed time on the CPU, or with ``--clock cpu`` the process's CPU time on one thread with
in-process loading, which is what stays steady on a machine shared with other work.

Every marsbench model is built with random weights (the registry's builder called with
``pretrained=False``, then run in the named regime: the same computation as with the published
weights, and nothing is downloaded). Targets (issue "One training engine"): on a GPU every path
>= 80 % of the bare model for ViT-L/16 and >= 60 % for ResNet-101, the pipeline >= 1.5x the
model's forward pass; on the CPU the pipeline >= 3x; peak RSS of the 50,000-image feature pass
< 4 GB. A path that fails prints ``n/a (reason)`` instead of stopping the run.

    python benchmarks/training_throughput.py                      # defaults for the device
    python benchmarks/training_throughput.py --quick              # tiny, < 1 min on a CPU
    python benchmarks/training_throughput.py --models resnet101,vit_l_16:n=8:bs=2:ebs=2 \\
        --input-size 128 --json out.json

A model may carry its own sizes: ``name:n=IMAGES:bs=BATCH:ebs=EVAL_BATCH:size=INPUT``.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import io
import json
import math
import os
import platform
import resource
import shutil
import subprocess
import sys
import tempfile
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

DEFAULT_MODELS = "resnet101,vit_l_16,efficientnet_lite0,unet_efficientnet_lite0"
QUICK_MODELS = "efficientnet_lite0,unet_efficientnet_lite0"
CLS_CLASSES, SEG_CLASSES = 4, 2
FIXED_INPUT = {"vit_l_16": 224}  # torchvision's ViT-L/16 takes 224 px only
# GPU targets per model: every path's share of the bare model
PATH_TARGETS_GPU = {"vit_l_16": 0.80, "resnet101": 0.60}
PIPELINE_TARGET = {"cuda": 1.5, "cpu": 3.0}
RSS_TARGET_GB = 4.0
RSS_TARGET_IMAGES = 50_000


# -- results -----------------------------------------------------------------------------------

@dataclass
class Row:
    path: str
    model: str
    bare: float | None = None  # img/s
    marsbench: float | None = None  # img/s (RSS row: GB)
    unit: str = "%"  # "%": marsbench / bare as a percentage; "x": as a ratio; "GB": RSS
    target: float | None = None
    note: str = ""
    error: str | None = None
    extra: dict = field(default_factory=dict)

    @property
    def share(self) -> float | None:
        if self.unit == "GB" or self.bare is None or self.marsbench is None or self.bare <= 0:
            return None
        return self.marsbench / self.bare

    @property
    def met(self) -> bool | None:
        if self.error or self.target is None:
            return None
        if self.unit == "GB":
            return None if self.marsbench is None else self.marsbench < self.target
        share = self.share
        return None if share is None else share >= self.target

    def cells(self) -> list[str]:
        def rate(v):
            return "-" if v is None else (f"{v:.1f}" if v < 100 else f"{v:.0f}")

        if self.unit == "GB":
            mb = "-" if self.marsbench is None else f"{self.marsbench:.2f} GB"
            share, target = "", f"< {self.target:g} GB" if self.target else "-"
            bare = "-"
        else:
            bare, mb = rate(self.bare), rate(self.marsbench)
            s = self.share
            share = "-" if s is None else (f"{100 * s:.0f} %" if self.unit == "%" else f"{s:.2f}x")
            target = "-" if self.target is None else (
                f">= {100 * self.target:.0f} %" if self.unit == "%" else f">= {self.target:g}x")
        if self.error:
            mb, share = f"n/a ({self.error})", ""
        met = {True: "yes", False: "NO", None: "-"}[self.met]
        return [self.path, self.model, bare, mb, share, target, met]

    def to_json(self) -> dict:
        return {"path": self.path, "model": self.model, "bare_img_s": self.bare,
                "marsbench": self.marsbench, "unit": self.unit, "share": self.share,
                "target": self.target, "met": self.met, "note": self.note, "error": self.error,
                **({"extra": self.extra} if self.extra else {})}


def print_table(rows: list[Row]) -> None:
    head = ["path", "model", "bare img/s", "marsbench img/s", "share", "target", "met?"]
    body = [r.cells() for r in rows]
    widths = [max(len(head[i]), *(len(b[i]) for b in body)) if body else len(head[i])
              for i in range(len(head))]
    widths[3] = min(widths[3], 70)

    def line(cells):
        return " | ".join(c.ljust(w) if i in (0, 1, 3) else c.rjust(w)
                          for i, (c, w) in enumerate(zip(cells, widths)))

    print(line(head))
    print("-+-".join("-" * w for w in widths))
    for b in body:
        print(line(b))
    notes = [f"  {r.path} / {r.model}: {r.note}" for r in rows if r.note]
    if notes:
        print("notes:")
        print("\n".join(notes))


def short_error(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    text = f"{type(exc).__name__}: {text}" if text else type(exc).__name__
    return text[:160]


# -- synthetic data in the Mars-Bench folder layout ----------------------------------------------

def _textures(count: int, size: int, seed: int, channels: int = 3) -> list[np.ndarray]:
    """Smooth random images (value noise), cheap to draw, realistic to decode."""
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(count):
        img = np.zeros((size, size, channels), np.float32)
        for cells, weight in ((4, 0.6), (16, 0.3), (64, 0.1)):
            cells = min(cells, size)
            noise = rng.random((cells, cells, channels)).astype(np.float32)
            reps = math.ceil(size / cells)
            img += weight * np.kron(noise, np.ones((reps, reps, 1), np.float32))[:size, :size]
        out.append(np.clip(img * 255, 0, 255).astype(np.uint8))
    return out


def _encode(pixels: np.ndarray, fmt: str) -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    image = Image.fromarray(pixels.squeeze(-1) if pixels.shape[-1] == 1 else pixels)
    image.save(buf, format=fmt, **({"quality": 90} if fmt == "JPEG" else {}))
    return buf.getvalue()


def _unique_jpeg(base: bytes, i: int) -> bytes:
    """``base`` with a COM segment naming ``i``: every file's bytes differ (content hashes and
    caches see distinct files), the pixels and the decoding cost stay those of ``base``."""
    comment = f"marsbench benchmark image {i}".encode()
    return base[:2] + b"\xff\xfe" + (len(comment) + 2).to_bytes(2, "big") + comment + base[2:]


def split_sizes(n_train: int, n_val: int | None = None, n_test: int | None = None) -> dict:
    n_val = max(2, n_train // 2) if n_val is None else n_val
    n_test = max(2, n_train // 4) if n_test is None else n_test
    return {"train": n_train, "val": n_val, "test": n_test}


def write_classification(root: Path, sizes: dict, image_size: int, classes: int = CLS_CLASSES,
                         variety: int = 32) -> Path:
    """``root`` in the Mars-Bench classification layout: annotation.csv, mapping.json,
    data/<split>/<class>/<file>; JPEG images of ``image_size`` px."""
    root.mkdir(parents=True, exist_ok=True)
    bases = [_encode(t, "JPEG") for t in _textures(variety, image_size, seed=1)]
    names = [f"class{k}" for k in range(classes)]
    (root / "mapping.json").write_text(json.dumps({str(k): n for k, n in enumerate(names)}))
    rows = ["file_id,feature_name,label,split"]
    i = 0
    for split, count in sizes.items():
        for c in names:
            (root / "data" / split / c).mkdir(parents=True, exist_ok=True)
        for j in range(count):
            label = j % classes
            file_id = f"{split}_{j:06d}.jpg"
            (root / "data" / split / names[label] / file_id).write_bytes(
                _unique_jpeg(bases[i % variety], i))
            rows.append(f"{file_id},{names[label]},{label},{split}")
            i += 1
    (root / "annotation.csv").write_text("\n".join(rows) + "\n")
    return root


def write_segmentation(root: Path, sizes: dict, image_size: int, classes: int = SEG_CLASSES,
                       variety: int = 16) -> Path:
    """``root`` in the Mars-Bench segmentation layout: data/<split>/{images,masks}/<stem>.*"""
    root.mkdir(parents=True, exist_ok=True)
    images = [_encode(t, "JPEG") for t in _textures(variety, image_size, seed=2)]
    masks = [_encode((t[..., :1] // (256 // classes)).clip(0, classes - 1), "PNG")
             for t in _textures(variety, image_size, seed=3, channels=1)]
    names = ["background"] + [f"feature{k}" for k in range(1, classes)]
    (root / "mapping.json").write_text(json.dumps({str(k): n for k, n in enumerate(names)}))
    i = 0
    for split, count in sizes.items():
        for sub in ("images", "masks"):
            (root / "data" / split / sub).mkdir(parents=True, exist_ok=True)
        for j in range(count):
            stem = f"{split}_{j:06d}"
            (root / "data" / split / "images" / f"{stem}.jpg").write_bytes(
                _unique_jpeg(images[i % variety], i))
            (root / "data" / split / "masks" / f"{stem}.png").write_bytes(masks[i % variety])
            i += 1
    return root


# -- timing helpers ------------------------------------------------------------------------------

CLOCK = {"mode": "wall"}  # "cpu": this process's CPU time (one thread), for a shared machine


def now() -> float:
    return time.process_time() if CLOCK["mode"] == "cpu" else time.perf_counter()


def sync(device) -> None:
    if device.type == "cuda":
        import torch

        torch.cuda.synchronize(device)


def stamp(device):
    """A point in time: a CUDA event on the GPU (no synchronisation added to the loop being
    watched), else `now()`."""
    if device.type == "cuda":
        import torch

        ev = torch.cuda.Event(enable_timing=True)
        ev.record()
        return ev
    return now()


def elapsed(device, a, b) -> float:
    """Seconds from stamp ``a`` to stamp ``b``."""
    if device.type == "cuda":
        sync(device)
        return a.elapsed_time(b) / 1000.0
    return b - a


def autocast_for(device):
    """The precision marsbench's ``auto`` resolves to: bf16 autocast on CUDA, none on the CPU."""
    import torch

    if device.type == "cuda":
        return torch.autocast("cuda", dtype=torch.bfloat16)
    return contextlib.nullcontext()


def best_time(fn, device, repeats: int, warmup: int = 1) -> float:
    """Fastest of ``repeats`` timed calls of ``fn()`` after ``warmup`` untimed ones."""
    for _ in range(warmup):
        fn()
    sync(device)
    best = math.inf
    for _ in range(repeats):
        t0 = now()
        fn()
        sync(device)
        best = min(best, now() - t0)
    return best


class ForwardClock:
    """Stamps of every forward call of a module (see `stamp`)."""

    def __init__(self, module, device) -> None:
        self.device = device
        self.calls: list[tuple] = []  # (start, end, training, batch)
        self._start = None
        self._handles = [module.register_forward_pre_hook(self._pre),
                         module.register_forward_hook(self._post)]

    def _pre(self, module, args):
        self._start = stamp(self.device)

    def _post(self, module, args, out):
        from torch.utils._python_dispatch import _get_current_dispatch_mode

        if _get_current_dispatch_mode() is not None:
            return  # the run counting its FLOPs (training.cost): not a pass over the data
        x = args[0] if args else None
        batch = int(x.shape[0]) if hasattr(x, "shape") else 0
        self.calls.append((self._start, stamp(self.device), module.training, batch))

    def remove(self) -> None:
        for h in self._handles:
            h.remove()

    def seconds(self, a, b) -> float:
        return elapsed(self.device, a, b)

    def phases(self) -> list[tuple[bool, list[tuple]]]:
        """Contiguous runs of calls with the same training flag."""
        out: list[tuple[bool, list[tuple]]] = []
        for call in self.calls:
            if out and out[-1][0] == call[2]:
                out[-1][1].append(call)
            else:
                out.append((call[2], [call]))
        return out

    def train_rate(self) -> tuple[float, int]:
        """Steady img/s of the first training phase: from the end of a forward pass to the end
        of the last one (whole steps: load, augment, forward, backward, optimiser step). The
        window starts after the second forward pass when there are 3 or more, so the
        optimiser's first step (allocating its state) is left out, as the bare loop's warm-up
        leaves it out."""
        phase = next((calls for training, calls in self.phases() if training), None)
        if phase is None or len(phase) < 2:
            raise RuntimeError("fewer than 2 training batches: give more --n-images")
        first = 1 if len(phase) >= 3 else 0
        images = sum(c[3] for c in phase[first + 1:])
        return images / self.seconds(phase[first][1], phase[-1][1]), len(phase) - first - 1

    def eval_rate(self, batches: int) -> tuple[float, int]:
        """img/s of the first ``batches`` no-gradient calls after the first training phase: from
        the start of the first forward pass to the end of the last."""
        seen_training, calls = False, []
        for training, phase in self.phases():
            if training:
                seen_training = True
            elif seen_training:
                calls = phase[:batches]
                break
        if not calls:
            raise RuntimeError("no evaluation pass seen")
        images = sum(c[3] for c in calls)
        return images / self.seconds(calls[0][0], calls[-1][1]), len(calls)


# -- models --------------------------------------------------------------------------------------

def bare_model(name: str, num_classes: int):
    """The architecture marsbench builds for ``name``, straight from its library."""
    if name in ("resnet101", "vit_l_16"):
        import torchvision

        return getattr(torchvision.models, name)(weights=None, num_classes=num_classes), \
            f"torchvision.models.{name}(weights=None)"
    if name == "efficientnet_lite0":
        import timm

        # marsbench's efficientnet_lite0 is timm's tf_ variant (TF "same" padding, BN eps 1e-3)
        return timm.create_model("tf_efficientnet_lite0", pretrained=False,
                                 num_classes=num_classes), "timm tf_efficientnet_lite0"
    if name == "unet_efficientnet_lite0":
        import segmentation_models_pytorch as smp

        return smp.Unet(encoder_name="tu-tf_efficientnet_lite0", encoder_weights=None,
                        in_channels=3, classes=num_classes), \
            "smp.Unet(tu-tf_efficientnet_lite0, encoder_weights=None)"
    # any other registered model: marsbench's own module, run in the bare loop
    from marsbench.models.registry import get_spec

    spec = get_spec(name)
    if str(spec.task) == "classification":
        from marsbench.models.classifier import build_classifier

        return build_classifier(random_weights(spec), num_classes, "scratch"), \
            "marsbench's module in a bare loop"
    from marsbench.models.segmentation import build_segmenter

    return build_segmenter(random_weights(spec), num_classes, "scratch").net, \
        "marsbench's module in a bare loop"


def random_weights(spec):
    """``spec`` whose builder never loads published weights: the same architecture in any
    regime, random init, nothing downloaded."""
    builder = spec.builder

    def build(pretrained, *args, **kwargs):
        return builder(False, *args, **kwargs)

    return dataclasses.replace(spec, builder=build)


def channels_last(x, device):
    import torch

    if device.type == "cuda" and x.dim() == 4:
        return x.contiguous(memory_format=torch.channels_last)
    return x


def bare_rates(name: str, task: str, device, *, size: int, batch: int, eval_batch: int,
               num_classes: int, repeats: int) -> dict:
    """Best forward (eval batch) and train-step (train batch) img/s of the bare model."""
    import torch
    from torch import nn

    torch.manual_seed(0)
    model, source = bare_model(name, num_classes)
    model = model.to(device)
    if device.type == "cuda":
        model = model.to(memory_format=torch.channels_last)
    out: dict = {"source": source}
    x_eval = channels_last(torch.randn(eval_batch, 3, size, size, device=device), device)

    @torch.no_grad()
    def forward():
        with autocast_for(device):
            model(x_eval)

    model.eval()
    out["forward"] = eval_batch / best_time(forward, device, repeats)
    x = channels_last(torch.randn(batch, 3, size, size, device=device), device)
    if task == "segmentation":
        y = torch.randint(0, num_classes, (batch, size, size), device=device)
    else:
        y = torch.randint(0, num_classes, (batch,), device=device)
    criterion = nn.CrossEntropyLoss()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4, weight_decay=0.05)
    model.train()

    def step():
        opt.zero_grad(set_to_none=True)
        with autocast_for(device):
            logits = model(x)
        loss = criterion(logits.float(), y)
        loss.backward()
        opt.step()

    out["train"] = batch / best_time(step, device, repeats)
    return out


# -- marsbench's paths ---------------------------------------------------------------------------

@dataclass
class ModelPlan:
    name: str
    task: str
    n: int
    batch: int
    eval_batch: int
    input_size: int  # classification: model input; segmentation: the stored image size (native)


def pipeline_rate(dataset, device, batch_size: int, passes: int = 2,
                  collate_fn=None) -> list[float]:
    """img/s of an input pipeline alone: the engine's loader over ``dataset`` (decoding and
    resizing in its workers, or reading the pixel cache), to the device, normalised, no model;
    one figure per pass."""
    from marsbench.models.preprocess import normalize
    from marsbench.training.engine import make_loader, to_device

    loader = make_loader(dataset, batch_size=batch_size, device=device, collate_fn=collate_fn)
    prep = getattr(dataset, "prep", None)
    rates = []
    for _ in range(passes):
        n = 0
        t0 = now()
        for batch in loader:
            if isinstance(batch, list) and batch and isinstance(batch[0], tuple):
                # segmentation collates a list of (image, mask, id) samples
                for image, _mask, _id in batch:
                    normalize(to_device(image, device), prep)
                n += len(batch)
            else:
                x = batch[0]
                normalize(to_device(x, device), prep)
                n += len(x)
        sync(device)
        rates.append(n / (now() - t0))
    return rates


def cached_pipeline_row(path: str, model: str, build, rate_of, bare_forward, target) -> Row:
    """The pipeline as the trainer sets it up: ``build()`` makes the split's dataset (the
    decoded-pixel cache, built on this first call), ``rate_of(dataset)`` times passes over it."""
    clear_caches("pixels")
    t0 = now()
    dataset = build()
    build_s = now() - t0
    status = getattr(dataset, "pixel_cache", "n/a")
    if status in ("off", "n/a"):
        return Row(path, model, bare_forward, unit="x", target=target,
                   error=f"no pixel cache (status {status})")
    rates = rate_of(dataset)
    return Row(path, model, bare_forward, max(rates), unit="x", target=target,
               note=f"cache {status}, built at {len(dataset) / build_s:.0f} img/s (decoded "
                    f"once); passes {', '.join(f'{r:.0f}' for r in rates)} img/s",
               extra={"passes_img_s": rates, "build_img_s": len(dataset) / build_s})


def clear_caches(*names: str) -> None:
    """Empty marsbench's caches under this run's private MARSBENCH_CACHE (a cold start)."""
    for name in names:
        shutil.rmtree(Path(os.environ["MARSBENCH_CACHE"]) / name, ignore_errors=True)
    if "features" in names:
        from marsbench.training import features as feature_cache

        feature_cache.clear_memory_cache()


class StepClock:
    """Stamps the end of every optimiser step (a global post-step hook), so that an epoch's
    steady window splits into model work and the time between an optimiser step and the next
    forward pass (waiting for the loader; moving, augmenting, normalising the batch)."""

    def __init__(self, device) -> None:
        from torch.optim.optimizer import register_optimizer_step_post_hook

        self.device = device
        self.ends: list = []
        self._handle = register_optimizer_step_post_hook(
            lambda opt, args, kwargs: self.ends.append(stamp(device)))

    def remove(self) -> None:
        self._handle.remove()

    def input_share(self, forward: ForwardClock) -> float | None:
        """Share of `ForwardClock.train_rate`'s window spent between an optimiser step and the
        next forward pass."""
        phase = next((calls for training, calls in forward.phases() if training), None)
        if phase is None or len(phase) < 2 or len(self.ends) < len(phase) - 1:
            return None
        first = 1 if len(phase) >= 3 else 0
        window = forward.seconds(phase[first][1], phase[-1][1])
        gaps = sum(forward.seconds(self.ends[k], phase[k + 1][0])
                   for k in range(first, len(phase) - 1))
        return gaps / window if window > 0 else None


def epoch_note(steps: int, batch: int, result, gap: float | None) -> str:
    info = getattr(result, "info", {}) or {}
    note = (f"steady state over {steps} step(s) of {batch}, augmentation on, pixel cache "
            f"{info.get('pixel_cache', 'n/a')}")
    if gap is not None:
        note += (f"; {100 * gap:.0f} % of it between an optimiser step and the next forward "
                 "pass (input)")
    return note


def classification_paths(plan: ModelPlan, folder: Path, device, bare: dict,
                         targets: dict, rows: list[Row]) -> None:
    import torch

    from marsbench.models.classifier import build_classifier
    from marsbench.models.registry import get_spec
    from marsbench.runs.data import open_splits
    from marsbench.runs.spec import RunSpec
    from marsbench.training import classification as cls_module
    from marsbench.training.classification import PreparedImages
    from marsbench.training.run import train as train_run

    spec_rand = random_weights(get_spec(plan.name))
    options = {"input_size": plan.input_size} if plan.name not in FIXED_INPUT else {}
    base = dict(dataset=str(folder), model=plan.name, max_epochs=1, patience=0,
                batch_size=plan.batch, optimizer="adamw", lr=1e-4, precision="auto")
    path_target, pipe_target = targets.get("path"), targets.get("pipeline")
    forward, train_rate = bare.get("forward"), bare.get("train")

    def run(regime: str, extra_options: dict, clock_on: str):
        spec = RunSpec(regime=regime, options={**options, **extra_options}, **base)
        splits = open_splits(spec)
        built: dict = {}

        def build_model():
            built["build_start"] = stamp(device)
            torch.manual_seed(0)
            model = build_classifier(spec_rand, splits["train"].num_classes, regime)
            module = model.backbone if clock_on == "backbone" else model
            built["clock"] = ForwardClock(module, device)
            built["build_end"] = stamp(device)
            return model

        built["start"] = stamp(device)
        result = train_run(spec, splits, model=build_model, device=device,
                       cache_dir=Path(os.environ["MARSBENCH_CACHE"]) / "features")
        return spec, splits, result, built

    # the input pipeline alone: decoding every time, then as the trainer reads it
    collate = getattr(PreparedImages, "collate", None)
    try:
        spec = RunSpec(regime="fine_tuning", options=options, **base)
        splits = open_splits(spec)
        from marsbench.models.earth_observation import resolve_model_spec

        prep = resolve_model_spec(spec.model, spec.options.to_dict(), spec.regime).preprocessing
        if plan.name not in FIXED_INPUT:
            prep = dataclasses.replace(prep, input_size=plan.input_size)
        train = splits["train"]
        rates = pipeline_rate(PreparedImages(train, prep, train.card.kind), device,
                              plan.eval_batch, collate_fn=collate)
        rows.append(Row("pipeline (decode+resize)", plan.name, forward, max(rates), unit="x",
                        target=pipe_target,
                        note=f"no cache, vs the bare forward pass; passes "
                             f"{', '.join(f'{r:.0f}' for r in rates)} img/s",
                        extra={"passes_img_s": rates}))
    except Exception as exc:  # noqa: BLE001 - report, go on
        rows.append(Row("pipeline (decode+resize)", plan.name, forward, unit="x",
                        target=pipe_target, error=short_error(exc)))
    try:
        builder = getattr(cls_module, "prepared_images", None)
        if builder is None:
            raise RuntimeError("this marsbench has no pixel cache (prepared_images)")
        rows.append(cached_pipeline_row(
            "pipeline (pixel cache)", plan.name,
            lambda: builder(train, prep, train.card.kind, device),
            lambda ds: pipeline_rate(ds, device, plan.eval_batch, collate_fn=collate),
            forward, pipe_target))
    except Exception as exc:  # noqa: BLE001
        rows.append(Row("pipeline (pixel cache)", plan.name, forward, unit="x",
                        target=pipe_target, error=short_error(exc)))

    # feature pass: the cached feature_extraction path, cold (nothing decoded or computed yet)
    try:
        clear_caches("features", "pixels")
        spec, splits, result, built = run("feature_extraction", {"fe_path": "cached"}, "backbone")
        clock = built["clock"]
        clock.remove()
        images = sum(len(s) for s in splits.values())
        if sum(c[3] for c in clock.calls) != images:
            raise RuntimeError(f"the backbone saw {sum(c[3] for c in clock.calls)} images, "
                               f"not {images}: not one pass over train+val+test")
        build_s = elapsed(device, built["build_start"], built["build_end"])
        seconds = elapsed(device, built["start"], clock.calls[-1][1]) - build_s
        rows.append(Row("feature pass", plan.name, forward, images / seconds,
                        target=path_target,
                        note=f"{images} images (train+val+test), cold: from the call to the "
                             f"last backbone pass (fingerprints, decoding, cache writes), model "
                             f"build ({build_s:.1f} s) excluded; pixel cache "
                             f"{result.info.get('pixel_cache', 'n/a')}",
                        extra={"seconds": seconds, "images": images, "build_s": build_s}))
    except Exception as exc:  # noqa: BLE001
        rows.append(Row("feature pass", plan.name, forward, target=path_target,
                        error=short_error(exc)))

    # fine-tuning epoch and its evaluation pass (reading the pixel cache the pass above built)
    try:
        steps_clock = StepClock(device)
        try:
            spec, splits, result, built = run("fine_tuning", {}, "backbone")
        finally:
            steps_clock.remove()
        clock = built["clock"]
        clock.remove()
        rate, steps = clock.train_rate()
        gap = steps_clock.input_share(clock)
        rows.append(Row("fine-tuning epoch", plan.name, train_rate, rate, target=path_target,
                        note=epoch_note(steps, plan.batch, result, gap),
                        extra={"input_share": gap}))
        val_batches = math.ceil(len(splits["val"]) / plan.eval_batch)
        rate, batches = clock.eval_rate(val_batches)
        rows.append(Row("evaluation pass", plan.name, forward, rate, target=path_target,
                        note=f"val pass, {batches} batch(es) of {plan.eval_batch}"))
    except Exception as exc:  # noqa: BLE001
        err = short_error(exc)
        rows.append(Row("fine-tuning epoch", plan.name, train_rate, target=path_target,
                        error=err))
        rows.append(Row("evaluation pass", plan.name, forward, target=path_target, error=err))


def segmentation_paths(plan: ModelPlan, folder: Path, device, bare: dict, targets: dict,
                       rows: list[Row]) -> None:
    import torch

    from marsbench.models.registry import get_spec
    from marsbench.models.segmentation import build_segmenter
    from marsbench.runs.data import open_splits
    from marsbench.runs.spec import RunSpec
    from marsbench.training import segmentation as seg_module
    from marsbench.training.run import train as train_run
    from marsbench.training.segmentation import InputPolicy, SegmentationImages

    path_target, pipe_target = targets.get("path"), targets.get("pipeline")
    forward, train_rate = bare.get("forward"), bare.get("train")
    try:
        spec = RunSpec(dataset=str(folder), model=plan.name, regime="fine_tuning",
                       max_epochs=1, patience=0, batch_size=plan.batch, optimizer="adamw",
                       lr=1e-4, precision="auto")
        splits = open_splits(spec)
        torch.manual_seed(0)
        model = build_segmenter(random_weights(get_spec(plan.name)), splits["train"].num_classes,
                                "fine_tuning")
        policy = InputPolicy.from_options(spec.options, model.spec.input_size)
        prep = model.preprocessing
    except Exception as exc:  # noqa: BLE001
        for path, key in (("seg pipeline (decode)", forward), ("seg pipeline (pixel cache)",
                                                               forward),
                          ("segmentation epoch", train_rate), ("seg evaluation pass", forward)):
            rows.append(Row(path, plan.name, key, error=short_error(exc),
                            unit="x" if "pipeline" in path else "%"))
        return
    try:
        rates = pipeline_rate(SegmentationImages(splits["train"], policy, prep), device,
                              plan.eval_batch, collate_fn=list)
        rows.append(Row("seg pipeline (decode)", plan.name, forward, max(rates), unit="x",
                        target=pipe_target,
                        note=f"image+mask, native size, no cache; passes "
                             f"{', '.join(f'{r:.0f}' for r in rates)} img/s",
                        extra={"passes_img_s": rates}))
    except Exception as exc:  # noqa: BLE001
        rows.append(Row("seg pipeline (decode)", plan.name, forward, unit="x",
                        target=pipe_target, error=short_error(exc)))
    try:
        builder = getattr(seg_module, "segmentation_images", None)
        if builder is None:
            raise RuntimeError("this marsbench has no pixel cache (segmentation_images)")
        rows.append(cached_pipeline_row(
            "seg pipeline (pixel cache)", plan.name,
            lambda: builder(splits["train"], policy, prep, device),
            lambda ds: pipeline_rate(ds, device, plan.eval_batch, collate_fn=list),
            forward, pipe_target))
    except Exception as exc:  # noqa: BLE001
        rows.append(Row("seg pipeline (pixel cache)", plan.name, forward, unit="x",
                        target=pipe_target, error=short_error(exc)))
    try:
        clear_caches("pixels")  # the run builds its cache; its epoch reads it
        clock, steps_clock = ForwardClock(model.net, device), StepClock(device)
        try:
            result = train_run(spec, splits, model=model, device=device)
        finally:
            clock.remove()
            steps_clock.remove()
        rate, steps = clock.train_rate()
        gap = steps_clock.input_share(clock)
        rows.append(Row("segmentation epoch", plan.name, train_rate, rate, target=path_target,
                        note=epoch_note(steps, plan.batch, result, gap),
                        extra={"input_share": gap}))
        val_batches = math.ceil(len(splits["val"]) / plan.eval_batch)
        rate, batches = clock.eval_rate(val_batches)
        rows.append(Row("seg evaluation pass", plan.name, forward, rate, target=path_target,
                        note=f"val pass, {batches} batch(es) of {plan.eval_batch}, per-image "
                             "loss"))
    except Exception as exc:  # noqa: BLE001
        err = short_error(exc)
        rows.append(Row("segmentation epoch", plan.name, train_rate, target=path_target,
                        error=err))
        rows.append(Row("seg evaluation pass", plan.name, forward, target=path_target,
                        error=err))


# -- peak RSS of a feature pass, in a child process ----------------------------------------------

def rss_child(folder: Path, model: str, device_name: str, input_size: int | None,
              batch: int) -> None:
    """Run in a fresh process: one cached feature pass over ``folder``; print peak RSS JSON."""
    import torch

    from marsbench.models.classifier import build_classifier
    from marsbench.models.registry import get_spec
    from marsbench.runs.data import open_splits
    from marsbench.runs.spec import RunSpec
    from marsbench.training.run import train as train_run

    device = torch.device(device_name)
    options = {"fe_path": "cached", **({"input_size": input_size} if input_size else {})}
    spec = RunSpec(dataset=str(folder), model=model, regime="feature_extraction", max_epochs=1,
                   patience=0, batch_size=batch, options=options)
    splits = open_splits(spec)
    model_spec = random_weights(get_spec(model))
    before = {}

    def build_model():
        m = build_classifier(model_spec, splits["train"].num_classes, "feature_extraction")
        before["rss_gb"] = _vm_kb("VmRSS") / 2**20
        return m

    import threading

    peaks = {"RssAnon": 0, "RssFile": 0}
    done = threading.Event()

    def sample() -> None:  # what the high-water mark is made of: private vs mapped-file pages
        while not done.wait(0.02):
            for key in peaks:
                peaks[key] = max(peaks[key], _vm_kb(key))

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    t0 = time.perf_counter()
    try:
        result = train_run(spec, splits, model=build_model, device=device,
                       cache_dir=Path(os.environ["MARSBENCH_CACHE"]) / "features")
    finally:
        done.set()
        sampler.join()
    wall = time.perf_counter() - t0
    # VmHWM: this process's own high-water mark. getrusage's ru_maxrss is kept across exec, so
    # in a child started by a large parent it reports the parent's RSS at fork when larger.
    self_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    children_kb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    print("RSS_RESULT " + json.dumps({
        "peak_gb": _vm_kb("VmHWM") / 2**20, "ru_maxrss_gb": self_kb / 2**20,
        "children_ru_maxrss_gb": children_kb / 2**20,
        "rss_before_pass_gb": before.get("rss_gb"), "images": len(splits["train"]),
        "anon_peak_gb": peaks["RssAnon"] / 2**20, "file_peak_gb": peaks["RssFile"] / 2**20,
        "pixel_cache": (getattr(result, "info", {}) or {}).get("pixel_cache", "n/a"),
        "wall_s": wall}))


def _vm_kb(field_name: str) -> int:
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(field_name + ":"):
                return int(line.split()[1])
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss


def rss_row(work: Path, images: int, image_size: int, model: str, device, input_size,
            batch: int, timeout: float) -> Row:
    label = f"peak RSS, feature pass ({images:,} images)"
    try:
        t0 = time.perf_counter()
        folder = write_classification(work / "rss_set", split_sizes(images, 2, 2), image_size)
        write_s = time.perf_counter() - t0
        cmd = [sys.executable, __file__, "--rss-child", str(folder), "--device", device.type,
               "--models", model, "--batch-size", str(batch)]
        if input_size:
            cmd += ["--input-size", str(input_size)]
        env = dict(os.environ, MARSBENCH_CACHE=str(work / "rss_cache"))
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=env)
        line = next((ln for ln in proc.stdout.splitlines() if ln.startswith("RSS_RESULT ")),
                    None)
        if proc.returncode != 0 or line is None:
            tail = (proc.stderr.strip().splitlines() or ["no output"])[-1]
            return Row(label, model, unit="GB", target=RSS_TARGET_GB,
                       error=f"child exit {proc.returncode}: {tail[:120]}")
        data = json.loads(line.split(" ", 1)[1])
        note = (f"main process, VmHWM (sampled peaks: private {data['anon_peak_gb']:.2f} GB, "
                f"mapped files {data['file_peak_gb']:.2f} GB); {data['rss_before_pass_gb']:.2f} "
                f"GB before the pass; pixel cache {data['pixel_cache']}; {data['wall_s']:.0f} s "
                f"({images / data['wall_s']:.0f} img/s incl. fingerprinting)")
        if images < RSS_TARGET_IMAGES:
            note += f"; the target is for {RSS_TARGET_IMAGES:,} images (--rss-images)"
        shutil.rmtree(folder, ignore_errors=True)
        return Row(label, model, marsbench=data["peak_gb"], unit="GB", target=RSS_TARGET_GB,
                   note=note, extra=data | {"write_s": write_s})
    except subprocess.TimeoutExpired:
        return Row(label, model, unit="GB", target=RSS_TARGET_GB,
                   error=f"child timed out after {timeout:.0f} s")
    except Exception as exc:  # noqa: BLE001
        return Row(label, model, unit="GB", target=RSS_TARGET_GB, error=short_error(exc))


# -- main ----------------------------------------------------------------------------------------

def parse_models(text: str, defaults: dict) -> list[dict]:
    """``name[:n=..][:bs=..][:ebs=..][:size=..]`` separated by commas (a name may hold colons
    itself, e.g. ``timm:resnet18``: the overrides are the parts with ``=``)."""
    out = []
    keys = {"n": "n", "bs": "batch", "ebs": "eval_batch", "size": "input_size"}
    for item in filter(None, (s.strip() for s in text.split(","))):
        parts = item.split(":")
        split = next((i for i, part in enumerate(parts) if "=" in part), len(parts))
        entry = dict(defaults, name=":".join(parts[:split]))
        for pair in parts[split:]:
            key, _, value = pair.partition("=")
            if key not in keys or not value.isdigit():
                raise SystemExit(f"--models: bad override {pair!r} in {item!r} "
                                 f"(use n=, bs=, ebs=, size= with integers)")
            entry[keys[key]] = int(value)
        out.append(entry)
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter,
                                 epilog="\n".join(__doc__.splitlines()[1:]))
    ap.add_argument("--models", default=None,
                    help=f"comma-separated model names (default {DEFAULT_MODELS}; --quick: "
                         f"{QUICK_MODELS}; none: only the RSS row); per model overrides "
                         "name:n=..:bs=..:ebs=..:size=..")
    ap.add_argument("--device", default="auto", help="auto (CUDA if present) | cpu | cuda[:N]")
    ap.add_argument("--n-images", type=int, default=None,
                    help="training images per dataset (val n/2, test n/4; default 2048 on a "
                         "GPU, 32 on the CPU)")
    ap.add_argument("--image-size", type=int, default=None,
                    help="side of the stored JPEGs in px (default 256); segmentation runs at "
                         "this size (input policy native)")
    ap.add_argument("--input-size", type=int, default=None,
                    help="classification input size in px (default the model's, 224); ViT-L/16 "
                         "always 224")
    ap.add_argument("--batch-size", type=int, default=None,
                    help="training batch (default 64 on a GPU, 8 on the CPU)")
    ap.add_argument("--eval-batch-size", type=int, default=None,
                    help="no-gradient batch, set as MARSBENCH_EVAL_BATCH for marsbench too "
                         "(default marsbench's: 256 on a GPU; 16 here on the CPU)")
    ap.add_argument("--repeats", type=int, default=None,
                    help="timed repeats of the bare model (best kept; default 10 GPU, 3 CPU)")
    ap.add_argument("--rss-images", type=int, default=None,
                    help="images of the peak-RSS feature pass (default 50000 on a GPU, 2000 on "
                         "the CPU; 0 skips it)")
    ap.add_argument("--rss-model", default="efficientnet_lite0")
    ap.add_argument("--clock", choices=("wall", "cpu"), default="wall",
                    help="wall: elapsed time (default); cpu (CPU device only): this process's "
                         "CPU time on one thread with in-process loading -- steadier on a "
                         "machine shared with other work")
    ap.add_argument("--quick", action="store_true",
                    help="tiny configuration (< 1 min on a CPU), for the smoke test")
    ap.add_argument("--json", type=Path, default=None, help="write every number here")
    ap.add_argument("--workdir", type=Path, default=None,
                    help="where the datasets go (default a temporary folder, removed)")
    ap.add_argument("--rss-child", type=Path, default=None, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)

    import torch

    if args.rss_child is not None:
        rss_child(args.rss_child, args.models, args.device, args.input_size, args.batch_size)
        return 0

    from marsbench.training.run import pick_device

    device = pick_device(args.device)
    gpu = device.type == "cuda"
    if args.clock == "cpu":
        if device.type != "cpu":
            ap.error("--clock cpu needs --device cpu")
        CLOCK["mode"] = "cpu"
        torch.set_num_threads(1)
        os.environ["MARSBENCH_WORKERS"] = "0"
    q = args.quick
    n = args.n_images or (8 if q else 2048 if gpu else 32)
    image_size = args.image_size or (64 if q else 256)
    input_size = args.input_size or (32 if q else None)
    batch = args.batch_size or (4 if q else 64 if gpu else 8)
    if args.eval_batch_size:
        eval_batch = args.eval_batch_size
    elif q:
        eval_batch = 4
    else:
        from marsbench.training.engine import eval_batch_size

        eval_batch = eval_batch_size(device, batch) if gpu else 16
    repeats = args.repeats or (1 if q else 10 if gpu else 3)
    rss_images = args.rss_images if args.rss_images is not None else (
        32 if q else RSS_TARGET_IMAGES if gpu else 2000)
    models = [] if args.models == "none" else parse_models(
        args.models or (QUICK_MODELS if q else DEFAULT_MODELS),
                          {"n": n, "batch": batch, "eval_batch": eval_batch,
                           "input_size": input_size})

    work = args.workdir or Path(tempfile.mkdtemp(prefix="mb-throughput-"))
    work.mkdir(parents=True, exist_ok=True)
    os.environ["MARSBENCH_CACHE"] = str(work / "cache")  # cold, private caches
    t_start = time.perf_counter()
    where = torch.cuda.get_device_name(device) if gpu else platform.processor() or "cpu"
    print(f"device {device} ({where}), "
          f"torch {torch.__version__}, threads {torch.get_num_threads()}, "
          f"precision {'bf16 autocast' if gpu else 'fp32'}; clock {args.clock}; images "
          f"{image_size} px JPEG; "
          f"weights random (registry builders with pretrained=False)", flush=True)
    rows: list[Row] = []
    configs = []
    from marsbench.models.registry import get_spec

    try:
        for entry in models:
            name = entry["name"]
            try:
                task = str(get_spec(name).task)
                model_input = (FIXED_INPUT.get(name) or entry["input_size"]
                               or get_spec(name).input_size)
            except Exception as exc:  # noqa: BLE001
                rows.append(Row("model", name, error=short_error(exc)))
                continue
            plan = ModelPlan(name, task, entry["n"], entry["batch"], entry["eval_batch"],
                             image_size if task == "segmentation" else model_input)
            configs.append(dataclasses.asdict(plan))
            os.environ["MARSBENCH_EVAL_BATCH"] = str(plan.eval_batch)
            sizes = split_sizes(plan.n)
            t0 = time.perf_counter()
            print(f"{name}: {task}, input {plan.input_size} px, train/val/test "
                  f"{sizes['train']}/{sizes['val']}/{sizes['test']}, batch {plan.batch}, eval "
                  f"batch {plan.eval_batch} ...", flush=True)
            targets = {"path": PATH_TARGETS_GPU.get(name) if gpu else None,
                       "pipeline": PIPELINE_TARGET["cuda" if gpu else "cpu"]}
            try:
                bare = bare_rates(name, task, device, size=plan.input_size, batch=plan.batch,
                                  eval_batch=plan.eval_batch,
                                  num_classes=SEG_CLASSES if task == "segmentation"
                                  else CLS_CLASSES, repeats=repeats)
                configs[-1]["bare"] = bare
                if gpu:
                    torch.cuda.empty_cache()  # the bare model and its optimiser are gone
            except Exception as exc:  # noqa: BLE001
                traceback.print_exc()
                bare = {"error": short_error(exc)}
                rows.append(Row("bare model", name, error=bare["error"]))
            folder = work / f"data_{name}"
            try:
                if task == "segmentation":
                    write_segmentation(folder, sizes, image_size)
                    segmentation_paths(plan, folder, device, bare, targets, rows)
                elif task == "classification":
                    write_classification(folder, sizes, image_size)
                    classification_paths(plan, folder, device, bare, targets, rows)
                else:
                    rows.append(Row("model", name, error=f"task {task} is not timed here"))
            except Exception as exc:  # noqa: BLE001 - whatever broke, the other models go on
                traceback.print_exc()
                rows.append(Row("model", name, error=short_error(exc)))
            shutil.rmtree(folder, ignore_errors=True)
            print(f"{name}: done in {time.perf_counter() - t0:.0f} s", flush=True)
        if rss_images > 0:
            print(f"peak RSS: feature pass over {rss_images} images ({args.rss_model}) in a "
                  "child process ...", flush=True)
            rss_input = None if args.rss_model in FIXED_INPUT else input_size
            os.environ["MARSBENCH_EVAL_BATCH"] = str(eval_batch)
            rows.append(rss_row(work, rss_images, image_size, args.rss_model, device, rss_input,
                                batch, timeout=3600))
    finally:
        if args.workdir is None:
            shutil.rmtree(work, ignore_errors=True)

    print()
    print_table(rows)
    print("\nshare = marsbench / bare model (pipeline: pipeline img/s / bare forward img/s); "
          + ("targets for this GPU; " if gpu else
             "targets on the CPU: pipeline only (path targets are GPU targets); ")
          + f"total {time.perf_counter() - t_start:.0f} s")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({
            "device": str(device), "torch": torch.__version__,
            "threads": torch.get_num_threads(), "clock": args.clock, "image_size": image_size,
            "models": configs, "repeats": repeats, "rss_images": rss_images,
            "rows": [r.to_json() for r in rows]}, indent=1) + "\n")
        print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
