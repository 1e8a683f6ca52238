"""Frozen-encoder segmentation sweep, online vs cached, measured side by side in one process.

A sweep of one segmentation model on one dataset in ``feature_extraction``: 3 grid points
(learning rates) x 3 seeds = 9 runs, through the real `run_experiment` code path, two ways:

* online (``fe_path=online``): the frozen encoder runs in every training step and every
  validation pass of every run (today's path);
* cached (``fe_path=cached``): the encoder runs once per split for the whole sweep (the first
  run; its cold disk cache is part of the time); every run trains the decoder and head on the
  cached multi-scale features.

Augmentation is off on both paths, so both do the same learning work and must reach the same
scores (the last line checks it). The target of issue "One training engine", item 5: cached at
least 5x faster than online on the CPU. The attainable speed-up is bounded by the share of the
encoder in a training step: with a light encoder (EfficientNet-Lite0) under a heavy decoder
(U-Net's 256-16 channel decoder runs at every scale up to full resolution) that share is small;
``--model`` lets you measure others (e.g. ``segformer_efficientnet_lite0``); the last lines time
one training step both ways, the bound on what any encoder cache can gain for that model.

    python benchmarks/segmentation_feature_cache.py [--dataset PATH] [--model NAME]
        [--input-size 64] [--epochs 5] [--repeats 1] [--threads 1]

Without ``--dataset`` it runs on a synthetic copy of mb-crater_multi_seg (8 / 3 / 3 images of
64 px) generated into a temporary folder (the timings hold; the scores mean nothing).
"""

from __future__ import annotations

import argparse
import itertools
import os
import statistics
import tempfile
import time
from pathlib import Path

import torch

from marsbench.runs.spec import RunSpec
from marsbench.training import features as feature_cache
from marsbench.training.run import run_experiment

SYNTHETIC_DATASET = "mb-crater_multi_seg"
LRS = (3e-3, 1e-3, 3e-4)
SEEDS = (0, 1, 2)


def sweep_specs(dataset: str, model: str, input_size: int, epochs: int, fe_path: str
                ) -> list[RunSpec]:
    base = dict(dataset=dataset, model=model, regime="feature_extraction", max_epochs=epochs,
                patience=0, batch_size=4, augment=False,
                options={"input_policy": "reference", "input_size": input_size,
                         "fe_path": fe_path})
    return [RunSpec(lr=lr, seed=seed, **base) for lr, seed in itertools.product(LRS, SEEDS)]


def time_sweep(specs: list[RunSpec]) -> tuple[float, dict[str, float], list[float]]:
    """Wall seconds of the whole sweep from a cold feature cache, its summed run timings
    (encode once: ``feature_extraction_s``, the cached path's encoder pass and cache reads;
    train: ``training_s``), and each run's test mIoU."""
    os.environ["MARSBENCH_CACHE"] = tempfile.mkdtemp(prefix="mb-bench-")  # cold disk cache
    feature_cache.clear_memory_cache()
    parts = {"feature_extraction_s": 0.0, "training_s": 0.0}
    scores = []
    t0 = time.perf_counter()
    for spec in specs:
        record = run_experiment(spec)
        scores.append(record.metrics["test"]["miou"])
        for key in parts:
            parts[key] += record.timings[key]
    return time.perf_counter() - t0, parts, scores


def step_ceiling(model_name: str, input_size: int, steps: int = 6) -> tuple[float, float]:
    """Seconds of one training step (batch 4) with the frozen encoder run (online) and on
    precomputed features (cached), alternated, median of ``steps``: their ratio bounds what any
    encoder cache can gain on the training steps of this model."""
    from marsbench.models.segmentation import build_segmenter, decode_features, encoder_features

    model = build_segmenter(model_name, 5, "feature_extraction")
    model.train()
    net = model.net
    opt = torch.optim.AdamW([p for p in net.parameters() if p.requires_grad], lr=1e-4)
    x = torch.randn(4, 3, input_size, input_size)
    y = torch.randint(0, 5, (4, input_size, input_size))
    with torch.no_grad():
        feats = encoder_features(net, x)

    def step(features) -> float:
        t0 = time.perf_counter()
        opt.zero_grad()
        if features is None:
            logits = net(x)
        else:
            logits = decode_features(net, features)
        torch.nn.functional.cross_entropy(logits, y).backward()
        opt.step()
        return time.perf_counter() - t0

    step(None), step(feats)  # warm-up
    online, cached = [], []
    for _ in range(steps):
        online.append(step(None))
        cached.append(step(feats))
    return statistics.median(online), statistics.median(cached)


def forward_flops(model_name: str, size: int) -> tuple[int, int]:
    """(encoder, whole network) forward FLOPs of one image, by PyTorch's FlopCounterMode."""
    from marsbench.models.segmentation import build_segmenter
    from marsbench.training.cost import count_flops

    net = build_segmenter(model_name, 3, "scratch").net
    x = torch.zeros(1, 3, size, size)
    return count_flops(net.encoder, x), count_flops(net, x)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--dataset", default=None,
                    help=f"a dataset folder (default: synthetic {SYNTHETIC_DATASET} in a temp "
                         "folder)")
    ap.add_argument("--model", default="unet_efficientnet_lite0")
    ap.add_argument("--input-size", type=int, default=64, help="reference policy side (px)")
    ap.add_argument("--epochs", type=int, default=5)
    ap.add_argument("--threads", type=int, default=None,
                    help="torch threads (default torch's; on a small shared machine 1 is "
                         "steadier: 2 threads on 2 busy cores slowed steps up to ~10x)")
    ap.add_argument("--repeats", type=int, default=1,
                    help="time each path this many times, alternating; the median is shown")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.dataset is None:
        from marsbench.sources.synth import generate

        root = Path(tempfile.mkdtemp(prefix="mb-bench-data-"))
        args.dataset = str(generate(SYNTHETIC_DATASET, root, "folder"))
        print(f"no --dataset: synthetic {SYNTHETIC_DATASET} in {args.dataset}")
    paths = ("online", "cached")
    specs = {p: sweep_specs(args.dataset, args.model, args.input_size, args.epochs, p)
             for p in paths}
    walls: dict[str, list[float]] = {p: [] for p in paths}
    part_runs: dict[str, list[dict[str, float]]] = {p: [] for p in paths}
    scores = {}
    for _ in range(args.repeats):
        for p in paths:
            wall, parts, scores[p] = time_sweep(specs[p])
            walls[p].append(wall)
            part_runs[p].append(parts)
    wall = {p: statistics.median(walls[p]) for p in paths}
    parts = {p: {k: statistics.median(r[k] for r in part_runs[p]) for k in part_runs[p][0]}
             for p in paths}
    runs = len(specs["online"])
    print(f"dataset {args.dataset}  model {args.model}  reference {args.input_size}px  "
          f"{runs} runs ({len(LRS)} lr x {len(SEEDS)} seeds) x {args.epochs} epochs  batch 4  "
          f"threads {torch.get_num_threads()}  repeats {args.repeats}")
    print(f"{'fe_path':<8}{'sweep s':>10}{'per run s':>11}{'encode once s':>15}{'train s':>10}"
          f"{'mean test mIoU':>16}")
    for p in paths:
        print(f"{p:<8}{wall[p]:>10.1f}{wall[p] / runs:>11.2f}"
              f"{parts[p]['feature_extraction_s']:>15.1f}{parts[p]['training_s']:>10.1f}"
              f"{sum(scores[p]) / runs:>16.4f}")
    if args.repeats > 1:
        print("each repeat's sweep s: " + "; ".join(
            f"{p} " + ", ".join(f"{w:.1f}" for w in walls[p]) for p in paths))
    print(f"speed-up online/cached: {wall['online'] / wall['cached']:.2f}x (target >= 5x)")
    on_step, cached_step = step_ceiling(args.model, args.input_size)
    print(f"one training step (batch 4): online {on_step * 1000:.0f} ms, on cached features "
          f"{cached_step * 1000:.0f} ms: an encoder cache gains at most "
          f"{on_step / cached_step:.2f}x on training steps of this model")
    enc, total = forward_flops(args.model, args.input_size)
    train = enc + 3 * (total - enc)  # frozen encoder: forward only; decoder: forward + backward
    print(f"forward FLOPs at {args.input_size}px: encoder {enc / 1e9:.3f} G of {total / 1e9:.3f} G "
          f"({100 * enc / total:.0f} %); the FLOP bound of an encoder cache on a training step: "
          f"{train / (3 * (total - enc)):.2f}x")
    gap = max(abs(a - b) for a, b in zip(scores["online"], scores["cached"]))
    print(f"largest per-run test mIoU difference online vs cached: {gap:.2e}")


if __name__ == "__main__":
    main()
