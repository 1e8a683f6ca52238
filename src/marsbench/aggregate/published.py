"""Readers for the published Mars-Bench per-run CSVs, and the baseline rows shipped in the package.

The published files (github.com/kerner-lab/Mars-Bench ``benchmark/data/*.csv``) differ in columns:

- ``classification_filtered.csv``, ``segmentation_filtered.csv``, ``*_partition_filtered.csv``:
  model, dataset, seed, test metric, training_type, partition name ("default" or 1.0 = full)
- ``classification_few_shot_filtered.csv``: model, dataset, seed, test metric, training_type, few_shot
- ``earth_data.csv``: seed, model, dataset, partition name, test metric (no training_type: these
  are feature-extraction runs; the seed column holds 42 for every run of the Earth-observation
  models, so their seeds are not recorded — see ``duplicate_seeds``)

The metric is the dataset's headline metric: ``f1_weighted`` (classification, binary = positive
class F1) or ``iou_reference`` (segmentation, the reference's image-averaged IoU).
"""

from __future__ import annotations

import warnings
from functools import lru_cache
from importlib import resources
from pathlib import Path
from typing import Literal

import pandas as pd

from marsbench.catalog import UnknownDatasetError, Variant, get_card

from .table import COLUMNS, ResultsTableError, check_bounded, read_results_csv, results_table

PUBLISHED_METRIC = {"classification": "f1_weighted", "segmentation": "iou_reference"}
PAPER_BASELINES_FILE = "paper_baselines_v1.csv"
PAPER_BASELINES_VERSION = "paper_v1"
BASELINE_SUFFIX = " [paper]"


class PublishedCsvWarning(UserWarning):
    """Rows of a published CSV that were left out (e.g. a failed run without a score)."""


def read_published_csv(path: str | Path, *,
                       duplicate_seeds: Literal["error", "renumber"] = "error") -> pd.DataFrame:
    """Read one published Mars-Bench results CSV into the tidy results table.

    Rows without a score (failed runs) are dropped with a `PublishedCsvWarning` naming their lines.
    ``duplicate_seeds="renumber"`` replaces the seeds of (model, dataset, variant) groups whose
    seeds repeat (earth_data.csv) by the run's position 0, 1, ... in the file; ``"error"`` refuses.
    """
    path = Path(path)
    raw = pd.read_csv(path, dtype=str, keep_default_na=False)
    required = {"model", "dataset", "seed", "test metric"}
    if not required <= set(raw.columns) or not ({"partition name", "few_shot"} & set(raw.columns)):
        raise ResultsTableError(
            f"{path}: not a published Mars-Bench results CSV (columns {list(raw.columns)}); expected "
            "model, dataset, seed, test metric and 'partition name' or 'few_shot'. A CSV in the tidy "
            f"schema needs the columns {list(COLUMNS)}"
        )
    raw["line"] = raw.index + 2
    empty = raw["test metric"].str.strip().isin(["", "nan", "NaN"])
    if empty.any():
        warnings.warn(f"{path}: dropped {int(empty.sum())} run(s) without a score, lines "
                      f"{raw.loc[empty, 'line'].tolist()}", PublishedCsvWarning, stacklevel=2)
        raw = raw[~empty].reset_index(drop=True)

    tidy = pd.DataFrame({
        "model": raw["model"],
        "dataset": raw["dataset"],
        "task": [_task_of(d, path, line) for d, line in zip(raw["dataset"], raw["line"])],
        "regime": raw["training_type"] if "training_type" in raw else "feature_extraction",
        "variant": _variants(raw, path),
        "seed": raw["seed"],
        "value": raw["test metric"],
    })
    tidy["metric"] = tidy["task"].map(PUBLISHED_METRIC)
    check_bounded(tidy["metric"], tidy["value"], raw["line"], path)
    tidy = _handle_duplicate_seeds(tidy, raw["line"], path, duplicate_seeds)
    return results_table(tidy.loc[:, list(COLUMNS)], source=str(path))


def _task_of(dataset: str, path: Path, line: int) -> str:
    try:
        task = str(get_card(dataset).task)
    except UnknownDatasetError as err:
        raise ResultsTableError(f"{path} line {line}: {err}") from None
    if task not in PUBLISHED_METRIC:
        raise ResultsTableError(f"{path} line {line}: no published metric for {task} dataset {dataset!r}")
    return task


def _variants(raw: pd.DataFrame, path: Path) -> list[str]:
    out: list[str] = []
    for line, few_shot, partition in zip(raw["line"], raw.get("few_shot", [""] * len(raw)),
                                         raw.get("partition name", [""] * len(raw))):
        try:
            if few_shot.strip():
                out.append(str(Variant.parse(f"few_shot:{int(float(few_shot))}")))
            elif partition.strip() in ("default", "1", "1.0", "1.00"):
                out.append("full")
            else:
                out.append(str(Variant.parse(f"partition:{partition.strip()}")))
        except ValueError as err:
            raise ResultsTableError(f"{path} line {line}: {err}") from None
    return out


def _handle_duplicate_seeds(tidy: pd.DataFrame, lines: pd.Series, path: Path, mode: str) -> pd.DataFrame:
    group = ["model", "dataset", "regime", "variant"]
    repeated = tidy.duplicated(group + ["seed"], keep=False)
    if not repeated.any():
        return tidy
    if mode != "renumber":
        first = tidy[repeated].iloc[0]
        raise ResultsTableError(
            f"{path}: {int(repeated.sum())} runs repeat a seed within their (model, dataset, variant), "
            f"first at line {int(lines[repeated].iloc[0])} (model={first['model']!r}, "
            f"dataset={first['dataset']!r}, seed={first['seed']}); the file does not record their "
            "seeds. Read it with duplicate_seeds='renumber' (CLI: --renumber-seeds) to number the "
            "runs 0, 1, ... in file order"
        )
    bad_groups = tidy.loc[repeated, group].drop_duplicates()
    affected = tidy[group].merge(bad_groups, how="left", indicator=True)["_merge"].eq("both").to_numpy()
    tidy = tidy.copy()
    tidy.loc[affected, "seed"] = tidy[affected].groupby(group).cumcount().astype(str)
    return tidy


@lru_cache(maxsize=1)
def _paper_baselines_cached() -> pd.DataFrame:
    ref = resources.files("marsbench.aggregate") / "data" / PAPER_BASELINES_FILE
    with resources.as_file(ref) as path:
        return read_results_csv(path)


def paper_baselines(*, suffix: str = BASELINE_SUFFIX) -> pd.DataFrame:
    """The published baseline runs shipped with marsbench (version ``paper_v1``) as a results table.

    Holds the feature-extraction runs of the 5 classification and 4 segmentation baselines, 7 seeds
    each: full training set, training-set partitions and few-shot (classification). Model names get
    ``suffix`` so that they stay apart from a user's runs of the same architecture.
    """
    table = _paper_baselines_cached().copy()
    table["model"] = table["model"] + suffix
    return table
