"""Derive the package's published-baseline data files from the published Mars-Bench CSVs.

Writes, under src/marsbench/aggregate/data/:

- paper_baselines_v1.csv: the tidy results table (marsbench.aggregate.table) of the published
  feature-extraction runs: full training set, partitions and few-shot. earth_data.csv is left out
  because its Earth-observation runs carry no seeds.
- normaliser_paper_v1.json: the default normaliser, per-dataset min and max of the headline metric
  over all full-training-set runs of classification_filtered.csv and segmentation_filtered.csv
  (the paper's recipe).

Usage: .venv/bin/python scripts/build_paper_baselines.py [/path/to/reference-results]
(default: reference-results in $MARSBENCH_SHARED_DATA, else in ../shared/data beside the
repository; see the PROVENANCE.md there).
"""

from __future__ import annotations

import os
import sys
import warnings
from pathlib import Path

from marsbench.aggregate.normalise import Normaliser
from marsbench.aggregate.published import PAPER_BASELINES_FILE, PAPER_BASELINES_VERSION, read_published_csv
from marsbench.aggregate.table import concat_tables, results_table

FILES = (
    "classification_filtered.csv",
    "segmentation_filtered.csv",
    "classification_partition_filtered.csv",
    "segmentation_partition_filtered.csv",
    "classification_few_shot_filtered.csv",
)
FULL_FILES = FILES[:2]
SOURCE = ("Mars-Bench published runs (github.com/kerner-lab/Mars-Bench benchmark/data, May 2025): "
          "classification_filtered.csv + segmentation_filtered.csv, feature extraction, full training set")
DECIMALS = 8  # the published scores carry float32 noise beyond this
REPO = Path(__file__).resolve().parents[1]


def default_folder() -> Path:
    shared = os.environ.get("MARSBENCH_SHARED_DATA") or REPO.parent / "shared" / "data"
    return Path(shared) / "reference-results"


def main(folder: Path) -> None:
    missing = [name for name in FILES if not (folder / name).is_file()]
    if missing:
        sys.exit(f"error: {folder} lacks {', '.join(missing)}; pass the folder holding the "
                 "published Mars-Bench CSVs (github.com/kerner-lab/Mars-Bench benchmark/data)")
    out = REPO / "src" / "marsbench" / "aggregate" / "data"
    out.mkdir(parents=True, exist_ok=True)
    with warnings.catch_warnings():
        warnings.simplefilter("always")
        tables = [read_published_csv(folder / name) for name in FILES]
    table = concat_tables(tables)
    table["value"] = table["value"].round(DECIMALS)
    table = results_table(table).sort_values(["task", "dataset", "model", "variant", "seed"])
    table.to_csv(out / PAPER_BASELINES_FILE, index=False)
    print(f"wrote {out / PAPER_BASELINES_FILE}: {len(table)} runs")

    full = concat_tables([read_published_csv(folder / name) for name in FULL_FILES])
    normaliser = Normaliser.from_table(full, version=PAPER_BASELINES_VERSION, source=SOURCE)
    path = normaliser.save(out / f"normaliser_{PAPER_BASELINES_VERSION}.json")
    degenerate = [f"{b.dataset}/{b.metric}" for b in normaliser.bounds.values() if b.degenerate]
    print(f"wrote {path}: {len(normaliser.bounds)} datasets, degenerate: {degenerate}")


if __name__ == "__main__":
    main(Path(sys.argv[1]) if len(sys.argv) > 1 else default_folder())
