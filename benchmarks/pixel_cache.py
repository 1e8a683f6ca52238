"""Decode once: JPEG decode + resize against reading the pixel cache, side by side in one run.

Writes a classification folder in the Mars-Bench layout (``--n`` train images of ``--size`` px,
JPEG quality 90, every image different) in a temporary folder, then measures on this machine:

* **decode + resize**: the train split through `PreparedImages` without the cache and the
  engine's loader (its default workers for the CPU; ``--workers`` to set them), batch 64;
* **build**: the first `prepared_images` call (one decoding pass through the loader, written to
  the cache);
* **cached read, loader**: the cached split through the same loader, shuffled (one gather from
  the memory map per batch);
* **cached read, row by row**: ``images[i]`` for a shuffled order (one copy per row);
* the process's anonymous memory (``RssAnon``) before and after reading the whole cached split
  (flat: the pixels stay in the page cache, mapped, not in the process);
* **augmentation** of one ``64 x 3 x S x S`` batch: batched (`augment` on the batch) against
  the same function image by image.

    python benchmarks/pixel_cache.py                      # 2,000 images, 256 px -> 224 px
    python benchmarks/pixel_cache.py --n 500 --input-size 128
    python benchmarks/pixel_cache.py --threads 1          # steadier on a small shared machine
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np


def write_folder(root: Path, n: int, size: int, seed: int = 0) -> Path:
    """Mars-Bench classification layout: annotation.csv, mapping.json, data/<split>/<class>/."""
    from PIL import Image

    rng = np.random.default_rng(seed)
    names = ["class0", "class1"]
    (root / "mapping.json").parent.mkdir(parents=True, exist_ok=True)
    (root / "mapping.json").write_text(json.dumps({str(k): v for k, v in enumerate(names)}))
    rows = ["file_id,feature_name,label,split"]
    coarse = max(4, size // 16)
    for split, count in (("train", n), ("val", 8), ("test", 8)):
        for name in names:
            (root / "data" / split / name).mkdir(parents=True, exist_ok=True)
        for j in range(count):
            label = j % 2
            # smooth texture + noise: decodes like a photograph, not like flat colour
            low = rng.random((coarse, coarse, 3)).astype(np.float32)
            img = np.kron(low, np.ones((size // coarse + 1, size // coarse + 1, 1)))[:size, :size]
            img = np.clip(img * 200 + rng.normal(0, 12, img.shape), 0, 255).astype(np.uint8)
            file_id = f"{split}_{j:06d}.jpg"
            Image.fromarray(img).save(root / "data" / split / names[label] / file_id, quality=90)
            rows.append(f"{file_id},{names[label]},{label},{split}")
    (root / "annotation.csv").write_text("\n".join(rows) + "\n")
    return root


def rss_anon_mb() -> float:
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("RssAnon:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return float("nan")


def through_loader(images, batch: int, workers: int | None, shuffle: bool) -> tuple[int, float]:
    import torch

    from marsbench.training.engine import make_loader

    loader = make_loader(images, batch_size=batch, device=torch.device("cpu"), shuffle=shuffle,
                         workers=workers, collate_fn=type(images).collate)  # as training does
    t0 = time.perf_counter()
    n = 0
    for x, _ in loader:
        n += len(x)
    return n, time.perf_counter() - t0


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=2000, help="train images (default 2000)")
    ap.add_argument("--size", type=int, default=256, help="stored JPEG side in px (256)")
    ap.add_argument("--input-size", type=int, default=224, help="model input side (224)")
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--workers", type=int, default=None,
                    help="loader workers (default: the engine's default for the CPU)")
    ap.add_argument("--threads", type=int, default=None,
                    help="torch threads (default torch's; on a small shared machine 1 is "
                         "steadier: 2 threads on 2 busy cores made decoding ~10x slower)")
    args = ap.parse_args(argv)

    with tempfile.TemporaryDirectory(prefix="marsbench-pixel-bench-") as tmp:
        os.environ["MARSBENCH_CACHE"] = str(Path(tmp) / "cache")
        os.environ.pop("MARSBENCH_PIXEL_CACHE", None)
        import torch

        from marsbench.models.preprocess import Preprocessing, augment
        from marsbench.sources import open_dataset
        from marsbench.training.classification import PreparedImages, prepared_images
        from marsbench.training.engine import default_workers

        cpu = torch.device("cpu")
        if args.threads:
            torch.set_num_threads(args.threads)
        workers = default_workers(cpu) if args.workers is None else args.workers
        t0 = time.perf_counter()
        folder = write_folder(Path(tmp) / "bench_cls", args.n, args.size)
        print(f"wrote {args.n} {args.size} px JPEGs in {time.perf_counter() - t0:.1f} s; "
              f"input {args.input_size} px, batch {args.batch}, loader workers {workers}, "
              f"torch threads {torch.get_num_threads()}, CPUs {os.cpu_count()}")
        data = open_dataset(folder, "train")
        data.fingerprint()  # hashed once (memoised), as a run does; not part of any timing
        prep = Preprocessing(args.input_size)
        kind = data.card.kind

        runs = [through_loader(PreparedImages(data, prep, kind), args.batch, workers, True)
                for _ in range(2)]  # the better of two passes (the first warms the page cache)
        n, s = min(runs, key=lambda r: r[1])
        decode = n / s
        print(f"decode + resize (no cache)      {decode:8.0f} img/s   ({n} in {s:.2f} s, "
              f"best of 2 passes)")

        t0 = time.perf_counter()
        cached = prepared_images(data, prep, kind, cpu)
        s = time.perf_counter() - t0
        assert cached.pixel_cache == "built"
        print(f"build (decode once + write)     {n / s:8.0f} img/s   ({n} in {s:.2f} s, "
              f"{sum(p.stat().st_size for p in cached.pixels.path.iterdir()) / 2**20:.0f} MiB)")

        hit = prepared_images(open_dataset(folder, "train"), prep, kind, cpu)
        assert hit.pixel_cache == "hit"
        before = rss_anon_mb()
        n, s = through_loader(hit, args.batch, workers, True)
        loader_rate = n / s
        after = rss_anon_mb()
        print(f"cached read, loader (shuffled)  {loader_rate:8.0f} img/s   ({n} in {s:.2f} s)"
              f"   x{loader_rate / decode:.0f} vs decoding")
        order = torch.randperm(len(hit)).tolist()
        t0 = time.perf_counter()
        for i in order:
            hit[i]
        s = time.perf_counter() - t0
        print(f"cached read, row by row         {len(order) / s:8.0f} img/s   "
              f"({len(order)} in {s:.2f} s)")
        print(f"RssAnon before/after reading the cached split: {before:.0f} / {after:.0f} MB "
              f"(the split is {len(hit) * 3 * args.input_size ** 2 / 2**20:.0f} MiB of pixels)")

        x = torch.stack([hit[i][0] for i in range(min(args.batch, len(hit)))])
        for label, fn in (("batched", lambda g: augment(x, g)),
                          ("image by image", lambda g: torch.stack([augment(im, g)
                                                                    for im in x]))):
            fn(torch.Generator().manual_seed(0))
            times = []
            for rep in range(5):
                t0 = time.perf_counter()
                fn(torch.Generator().manual_seed(rep))
                times.append(time.perf_counter() - t0)
            print(f"augment {tuple(x.shape)} {label:15s} {1000 * sorted(times)[2]:7.1f} ms "
                  f"(median of 5, CPU)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
