"""Content fingerprint of a large dataset: first hash vs re-check vs a plain stat, side by side.

Writes N small image files (half PNG, half JPEG; 50,000 by default) and times, in one process:

* ``os.stat`` of every file - the floor any change check must pay;
* first hash (cold memo): blake2b of every file's bytes, memo written;
* re-check (warm memo): what every later fingerprint of unchanged data costs - a stat per file
  and one batched memo lookup, no file read;
* hash without a memo: reading every byte again, for comparison.

The files were just written, so they sit in the OS page cache: on a cold disk the first hash
(and the no-memo row) would be slower, the re-check would not. The memo lives in a fresh cache
folder under the output folder, so the first hash really is cold.

    python benchmarks/data_fingerprint.py [--n 50000] [--out DIR] [--repeat 3]
"""

from __future__ import annotations

import argparse
import io
import os
import shutil
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image


def write_files(folder: Path, n: int, size: int = 32) -> list[Path]:
    """``n`` distinct small images in folders of 1,000 (as a dataset's split/class folders)."""
    rng = np.random.default_rng(0)
    base = rng.integers(0, 256, (size, size), dtype=np.uint8)
    paths = []
    for i in range(n):
        sub = folder / f"part{i // 1000:03d}"
        if i % 1000 == 0:
            sub.mkdir(parents=True, exist_ok=True)
        pixels = base.copy()
        pixels.flat[i % pixels.size] ^= 1 + (i // pixels.size) % 255  # every file differs
        ext = "png" if i % 2 == 0 else "jpg"
        buf = io.BytesIO()
        Image.fromarray(pixels).save(buf, format="PNG" if ext == "png" else "JPEG", quality=90)
        path = sub / f"img{i:06d}.{ext}"
        path.write_bytes(buf.getvalue())
        paths.append(path)
    return paths


def timed(fn, repeat: int) -> tuple[float, object]:
    times, result = [], None
    for _ in range(repeat):
        t0 = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times), result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--n", type=int, default=50_000, help="number of files (default 50000)")
    parser.add_argument("--out", type=Path, default=None,
                        help="folder for the files and the memo (default: a temporary folder, "
                             "removed afterwards)")
    parser.add_argument("--repeat", type=int, default=3,
                        help="runs of the repeatable rows (median shown; default 3)")
    args = parser.parse_args()

    out = args.out or Path(tempfile.mkdtemp(prefix="marsbench-fp-bench-"))
    out.mkdir(parents=True, exist_ok=True)
    os.environ["MARSBENCH_CACHE"] = str(out / "cache")  # a fresh memo: the first hash is cold
    from marsbench.sources import content_hash  # after MARSBENCH_CACHE is set

    try:
        t0 = time.perf_counter()
        paths = write_files(out / "images", args.n)
        total = sum(p.stat().st_size for p in paths)
        print(f"wrote {len(paths):,} files ({total / 2**20:.1f} MiB) in "
              f"{time.perf_counter() - t0:.1f} s under {out}")
        # Files changed within the racy window are not memoised (see content_hash); a real
        # dataset was written long before it is fingerprinted, so wait that window out.
        quiet = content_hash.RACY_WINDOW_NS / 1e9 - (time.time() - paths[-1].stat().st_mtime)
        if quiet > 0:
            print(f"waiting {quiet:.1f} s so the newest file is past the racy window")
            time.sleep(quiet + 0.1)
        names = [str(p) for p in paths]

        stat_s, _ = timed(lambda: [os.stat(p) for p in names], args.repeat)
        cold: dict = {}
        t0 = time.perf_counter()
        first = content_hash.file_digests(names, stats=cold)
        cold_s = time.perf_counter() - t0
        warm: dict = {}
        warm_s, again = timed(lambda: content_hash.file_digests(names, stats=warm), args.repeat)
        assert again == first, "re-check disagrees with the first hash"
        nomemo_s, plain = timed(lambda: content_hash.file_digests(names, memo=False), 1)
        assert plain == first, "hashing without the memo disagrees"

        n = len(names)
        rows = [
            ("os.stat of every file", stat_s, "-"),
            ("first hash (cold memo)", cold_s,
             f"hashed {cold['hashed']:,}, memoised {cold['memoised']:,}"),
            ("re-check (warm memo)", warm_s,
             f"memo hits {warm['memo_hits']:,}, hashed {warm['hashed']:,}"),
            ("hash without memo", nomemo_s, "reads every byte"),
        ]
        print(f"\n{n:,} files, {total / 2**20:.1f} MiB; median of {args.repeat} for the "
              "repeatable rows; page cache warm\n")
        print(f"{'check':<26}{'total s':>9}{'us/file':>9}{'x stat':>8}  notes")
        for label, seconds, note in rows:
            print(f"{label:<26}{seconds:>9.2f}{seconds / n * 1e6:>9.1f}"
                  f"{seconds / stat_s:>8.1f}  {note}")
        memo = content_hash.memo_path()
        print(f"\nmemo {memo.name}: {memo.stat().st_size / 2**20:.1f} MiB "
              f"({memo.stat().st_size / n:.0f} bytes per file)")
    finally:
        if args.out is None:
            shutil.rmtree(out, ignore_errors=True)


if __name__ == "__main__":
    main()
