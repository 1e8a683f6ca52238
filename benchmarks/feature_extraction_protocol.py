"""Feature-extraction protocol, naive vs cached, measured side by side in one process.

The protocol of one model on one dataset: a grid of hyper-parameter settings (default 9:
3 learning rates x 3 optimisers) and then 7 seeds of the chosen setting. Run two ways on the same
data through the real `run_experiment` code path:

* naive  (``fe_path=online``): the frozen backbone runs in every epoch of every run, as the
  reference does (augmentation off on both paths, so both do the same learning work);
* cached (``fe_path=cached``): the backbone runs once per split; every run trains the head on
  the cached features.

It also times the floor: one backbone pass over the dataset (train + val + test).
Targets: cached >= 20x faster than naive, and within 1.5x of the floor.

    python benchmarks/feature_extraction_protocol.py [--dataset PATH] [--input-size 128]

Without ``--dataset`` it runs on a synthetic copy of mb-landmark_cls generated into a temporary
folder (the timings hold; the scores mean nothing). Give ``--dataset`` a real dataset folder in
the Mars-Bench layout (e.g. a downloaded ``mb-landmark_cls``) for real pixels.
"""

from __future__ import annotations

import argparse
import itertools
import os
import tempfile
import time
from pathlib import Path

import torch

from marsbench.runs.spec import RunSpec
from marsbench.training import features as feature_cache
from marsbench.training.classification import PreparedImages
from marsbench.training.features import compute_features
from marsbench.training.run import open_splits, run_experiment

SYNTHETIC_DATASET = "mb-landmark_cls"
SEEDS = (0, 1, 10, 42, 123, 1000, 1234)


def protocol_specs(dataset: str, input_size: int, epochs: int, fe_path: str) -> list[RunSpec]:
    base = dict(dataset=dataset, model="efficientnet_lite0", regime="feature_extraction",
                max_epochs=epochs, patience=0, batch_size=32, augment=False,
                options={"fe_path": fe_path, "input_size": input_size})
    grid = [RunSpec(lr=lr, optimizer=opt, seed=0, **base)
            for lr, opt in itertools.product((1e-3, 1e-4, 1e-5), ("adam", "adamw", "sgd"))]
    best = grid[0]  # the choice does not change the cost; the real protocol picks by val loss
    return grid + [best.replace(seed=s) for s in SEEDS]


def time_protocol(specs: list[RunSpec]) -> tuple[float, list[float]]:
    feature_cache.clear_memory_cache()
    t0 = time.perf_counter()
    scores = [run_experiment(s).metrics["test"]["f1_weighted"] for s in specs]
    return time.perf_counter() - t0, scores


def time_floor(spec: RunSpec) -> float:
    """One backbone pass over every split (what the cached path cannot avoid)."""
    from marsbench.models.classifier import build_classifier
    from marsbench.models.preprocess import normalize

    splits = open_splits(spec)
    model = build_classifier(spec.model, splits["train"].num_classes, spec.regime)
    prep = model.preprocessing.__class__(**{**model.preprocessing.to_dict(),
                                            "input_size": spec.options.input_size})
    t0 = time.perf_counter()
    for data in splits.values():
        loader = torch.utils.data.DataLoader(PreparedImages(data, prep, data.card.kind),
                                             batch_size=64)
        compute_features(model.backbone, (normalize(x, prep) for x, _ in loader),
                         torch.device("cpu"))
    return time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--dataset", default=None,
                    help="a dataset folder (default: synthetic mb-landmark_cls in a temp folder)")
    ap.add_argument("--input-size", type=int, default=128)
    ap.add_argument("--epochs", type=int, default=5)
    args = ap.parse_args()
    os.environ["MARSBENCH_CACHE"] = tempfile.mkdtemp(prefix="mb-bench-")  # cold disk cache
    if args.dataset is None:
        from marsbench.sources.synth import generate_suite

        root = Path(tempfile.mkdtemp(prefix="mb-bench-data-"))
        args.dataset = str(generate_suite(root, "folder", names=[SYNTHETIC_DATASET])[0])
        print(f"no --dataset: synthetic {SYNTHETIC_DATASET} in {args.dataset}")
    cached = protocol_specs(args.dataset, args.input_size, args.epochs, "cached")
    naive = protocol_specs(args.dataset, args.input_size, args.epochs, "online")
    floor = time_floor(cached[0])
    t_cached, s_cached = time_protocol(cached)
    t_naive, s_naive = time_protocol(naive)
    print(f"dataset {args.dataset}  model efficientnet_lite0  input {args.input_size}px  "
          f"runs {len(cached)} (9 grid + 7 seeds) x {args.epochs} epochs  "
          f"threads {torch.get_num_threads()}")
    print(f"{'way':<8}{'wall s':>10}{'vs floor':>10}")
    print(f"{'floor':<8}{floor:>10.1f}{1.0:>10.2f}   (one backbone pass over train+val+test)")
    print(f"{'cached':<8}{t_cached:>10.1f}{t_cached / floor:>10.2f}")
    print(f"{'naive':<8}{t_naive:>10.1f}{t_naive / floor:>10.2f}")
    print(f"speed-up naive/cached: {t_naive / t_cached:.1f}x (target >= 20x); "
          f"cached/floor: {t_cached / floor:.2f}x (target <= 1.5x)")
    print(f"mean test F1: cached {sum(s_cached) / len(s_cached):.3f}, "
          f"naive {sum(s_naive) / len(s_naive):.3f}")


if __name__ == "__main__":
    main()
