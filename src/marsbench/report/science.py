"""The report's science-facing metrics: object counts and sizes (segmentation, detection) and the
class-imbalance metrics (classification), from the run records.

The headline (F1, IoU, mAP) says how many pixels or boxes are right; these say what a scientist
does with the output: how many objects were found and whether their size-frequency distribution
is right (`marsbench.metrics.objects`, docs/object_metrics.md), and how the rare classes fare
(balanced accuracy, recall on the head / medium / tail terciles of training frequency). Every
record holds them; here they are averaged over seeds per (task, regime, dataset, model), with the
standard deviation over seeds, for full-training-set runs.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import pandas as pd

from .sections import _number

# metric -> (column title, higher is better); the order is the table's
SCIENCE_METRICS: dict[str, dict[str, tuple[str, bool]]] = {
    "classification": {
        "f1_macro": ("macro F1", True),
        "balanced_accuracy": ("balanced accuracy", True),
        "recall_head": ("recall, head classes", True),
        "recall_medium": ("recall, medium classes", True),
        "recall_tail": ("recall, tail classes", True),
    },
    "segmentation": {
        "object_precision": ("object precision", True),
        "object_recall": ("object recall", True),
        "object_f1": ("object F1", True),
        "count_mae": ("miscounted objects / image", False),
        "sfd_ks": ("SFD KS distance", False),
        "sfd_slope_diff": ("SFD slope error", False),
    },
    "detection": {
        "count_mae": ("miscounted objects / image", False),
        "count_true": ("objects, true", True),
        "count_pred": ("objects, predicted", True),
        "sfd_ks": ("SFD KS distance", False),
        "sfd_slope_diff": ("SFD slope error", False),
    },
}
SCIENCE_COLUMNS = ["task", "regime", "dataset", "model", "runs", "metric", "mean", "std", "defined"]


def science_table(matched: Mapping[tuple, Any], tasks: Mapping[str, str]) -> pd.DataFrame:
    """One row per (task, regime, dataset, model, metric): runs, mean and standard deviation over
    the seeds where the metric is defined (``defined`` of ``runs``); undefined values (None, e.g.
    an SFD slope with fewer than two objects) are left out, never counted as 0."""
    rows = []
    for (model, dataset, regime, variant, seed), rec in matched.items():
        task = tasks.get(dataset)
        if variant != "full" or task not in SCIENCE_METRICS:
            continue
        test = rec.metrics.get("test") or {}
        for metric in SCIENCE_METRICS[task]:
            if metric in test:
                rows.append({"task": task, "regime": regime, "dataset": dataset, "model": model,
                             "seed": seed, "metric": metric, "value": _number(test[metric])})
    if not rows:
        return pd.DataFrame(columns=SCIENCE_COLUMNS)
    frame = pd.DataFrame(rows)
    keys = ["task", "regime", "dataset", "model", "metric"]
    out = frame.groupby(keys, sort=True).agg(
        runs=("seed", "size"), mean=("value", "mean"), std=("value", "std"),
        defined=("value", "count")).reset_index()
    return out.loc[:, SCIENCE_COLUMNS]


def science_display(table: pd.DataFrame, task: str, regime: str) -> pd.DataFrame:
    """Dataset x model rows, one column per metric as ``mean ± sd`` (``n=k/m`` where only k of
    m runs define it), in the order of `SCIENCE_METRICS`."""
    part = table[(table["task"] == task) & (table["regime"] == regime)]
    metrics = [m for m in SCIENCE_METRICS.get(task, {}) if m in set(part["metric"])]
    rows = []
    for (dataset, model), group in part.groupby(["dataset", "model"], sort=True):
        row = {"dataset": dataset, "model": model, "runs": str(int(group["runs"].max()))}
        for metric in metrics:
            hit = group[group["metric"] == metric]
            title, higher = SCIENCE_METRICS[task][metric]
            row[f"{title} {'↑' if higher else '↓'}"] = _cell(hit)
        rows.append(row)
    return pd.DataFrame(rows)


def _cell(hit: pd.DataFrame) -> str:
    if hit.empty or int(hit["defined"].iloc[0]) == 0:
        return "–"
    r = hit.iloc[0]
    text = f"{r['mean']:.3f}"
    if int(r["defined"]) > 1 and math.isfinite(r["std"]):
        text += f" ± {r['std']:.3f}"
    if int(r["defined"]) < int(r["runs"]):
        text += f" (n={int(r['defined'])}/{int(r['runs'])})"
    return text


SCIENCE_INTRO = ("What a scientist does with the output, from the run records (full training set), "
                 "mean ± standard deviation over seeds: objects found and miscounted, and how far "
                 "the size-frequency distribution of their diameters is from the truth (SFD: "
                 "Kolmogorov-Smirnov distance, error of the log-log slope; docs/object_metrics.md); "
                 "for classification, how the rare classes fare (recall on the head / medium / "
                 "tail terciles of training frequency). ↑ higher is better, ↓ lower; n=k/m: only k "
                 "of m runs define the value. `tables/science_metrics.csv`.")


def science_blocks(data, task: str) -> list:
    """Per regime: dataset x model rows of the task's science metrics (`section_tables.Block`)."""
    from .section_tables import Block, _regimes

    out = []
    for regime, _ in _regimes(data.sections.science, task):
        shown = science_display(data.sections.science, task, regime)
        if len(shown):
            out.append(Block(regime, [("Science metrics (test, mean ± sd over seeds)", shown)]))
    return out
