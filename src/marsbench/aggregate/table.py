"""The tidy results table: one row per (run, metric). The contract between runs, store and reports.

Columns, in order (see docs/report.md):

=========  =======  =================================================================
model      str      model name as the user wants it shown
dataset    str      dataset name (a catalog name such as ``mb-domars16k``, or the user's own)
task       str      ``classification`` | ``segmentation`` | ``detection``
regime     str      ``scratch`` | ``feature_extraction`` | ``fine_tuning`` | ``zero_shot``
variant    str      ``full`` | ``few_shot:<k>`` | ``partition:<p:.2f>`` (canonical spelling)
seed       int      training seed of the run
metric     str      metric name, e.g. ``f1_weighted``, ``iou_reference``, ``map_50_95``
value      float    the test score (finite)
=========  =======  =================================================================

`results_table` is the validating constructor: every public function of `marsbench.aggregate`
takes its output. Exact duplicate rows (same key, same value) collapse to one row; two rows with
the same key and different values are an error.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from marsbench.catalog import UnknownDatasetError, Variant, get_card
from marsbench.errors import MarsbenchError
from marsbench.io import atomic_path
from marsbench.vocab import REGIMES, TASKS

COLUMNS: tuple[str, ...] = ("model", "dataset", "task", "regime", "variant", "seed", "metric", "value")
KEY: tuple[str, ...] = COLUMNS[:-1]
_STRING_COLUMNS = ("model", "dataset", "task", "regime", "variant", "metric")
_DUPLICATE_ATOL = 1e-12


class ResultsTableError(MarsbenchError, ValueError):
    """A results table that breaks the schema; the message names the row, column and fix."""


def _where(source: str | None, position: int) -> str:
    """'runs.csv line 14' for CSV sources (header = line 1), else 'row 12' (0-based)."""
    if source and source.lower().endswith(".csv"):
        return f"{source} line {position + 2}"
    return f"{source + ' ' if source else ''}row {position}"


def _show(value: object) -> str:
    """repr of a cell without numpy's wrapper (``1.5``, not ``np.float64(1.5)``)."""
    return repr(value.item() if isinstance(value, np.generic) else value)


def _describe(row: pd.Series) -> str:
    return f"(model={row.get('model')!r}, dataset={row.get('dataset')!r})"


def results_table(data: pd.DataFrame | Iterable[Mapping[str, Any]], *, source: str | None = None,
                  check_catalog: bool = True) -> pd.DataFrame:
    """Validate and canonicalise a results table; returns a new DataFrame with exactly `COLUMNS`.

    ``data``: a DataFrame or an iterable of row mappings. Extra columns are dropped. ``source``
    names the origin (a file) in error messages. With ``check_catalog``, a dataset that is in the
    Mars-Bench catalog must carry its catalog task. Raises `ResultsTableError`.
    """
    frame = data.copy() if isinstance(data, pd.DataFrame) else pd.DataFrame(list(data))
    origin = source or "results table"
    missing = [c for c in COLUMNS if c not in frame.columns]
    if missing:
        raise ResultsTableError(
            f"{origin}: missing column(s) {missing}; a results table needs {list(COLUMNS)} "
            f"(found {list(frame.columns)})"
        )
    frame = frame.loc[:, list(COLUMNS)].reset_index(drop=True)

    for col in _STRING_COLUMNS:
        bad = frame[col].isna() | (frame[col].astype(str).str.strip() == "")
        if bad.any():
            i = int(np.flatnonzero(bad.to_numpy())[0])
            raise ResultsTableError(f"{_where(source, i)}: column {col!r} is empty {_describe(frame.iloc[i])}")
        frame[col] = frame[col].astype(str).str.strip()

    _check_choices(frame, "task", TASKS, source)
    _check_choices(frame, "regime", REGIMES, source)
    frame["variant"] = _canonical_variants(frame["variant"], source)
    frame["seed"] = _integer_column(frame["seed"], "seed", source, frame)
    frame["value"] = _finite_column(frame["value"], source, frame)
    if check_catalog:
        _check_catalog_tasks(frame, source)
    return _collapse_duplicates(frame, source)


def _check_choices(frame: pd.DataFrame, col: str, allowed: Sequence[str], source: str | None) -> None:
    bad = ~frame[col].isin(allowed)
    if bad.any():
        i = int(np.flatnonzero(bad.to_numpy())[0])
        raise ResultsTableError(
            f"{_where(source, i)}: {col} {_show(frame[col].iloc[i])} is not one of {'|'.join(allowed)} "
            f"{_describe(frame.iloc[i])}"
        )


def _canonical_variants(column: pd.Series, source: str | None) -> pd.Series:
    canonical: dict[str, str] = {}
    for i, text in enumerate(column):
        if text not in canonical:
            try:
                canonical[text] = str(Variant.parse(text))
            except ValueError as err:
                raise ResultsTableError(f"{_where(source, i)}: column 'variant': {err}") from None
    return column.map(canonical)


def _integer_column(column: pd.Series, name: str, source: str | None, frame: pd.DataFrame) -> pd.Series:
    numbers = pd.to_numeric(column, errors="coerce")
    bad = numbers.isna() | (numbers != np.round(numbers))
    if bad.any():
        i = int(np.flatnonzero(bad.to_numpy())[0])
        raise ResultsTableError(
            f"{_where(source, i)}: {name} {_show(column.iloc[i])} is not an integer {_describe(frame.iloc[i])}"
        )
    return numbers.astype("int64")


def _finite_column(column: pd.Series, source: str | None, frame: pd.DataFrame) -> pd.Series:
    numbers = pd.to_numeric(column, errors="coerce").astype("float64")
    bad = ~np.isfinite(numbers.to_numpy())
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        raise ResultsTableError(
            f"{_where(source, i)}: value {_show(column.iloc[i])} is not a finite number "
            f"{_describe(frame.iloc[i])}; drop failed runs before building the table"
        )
    return numbers


def _check_catalog_tasks(frame: pd.DataFrame, source: str | None) -> None:
    for dataset, task in frame[["dataset", "task"]].drop_duplicates().itertuples(index=False):
        try:
            card = get_card(dataset)
        except UnknownDatasetError:
            continue  # a user's own dataset: any task is allowed
        if str(card.task) != task:
            i = int(np.flatnonzero(((frame["dataset"] == dataset) & (frame["task"] == task)).to_numpy())[0])
            raise ResultsTableError(
                f"{_where(source, i)}: dataset {dataset!r} is a {card.task} dataset, not {task!r}; "
                "fix the task column"
            )


def _collapse_duplicates(frame: pd.DataFrame, source: str | None) -> pd.DataFrame:
    dup = frame.duplicated(list(KEY), keep=False)
    if not dup.any():
        return frame
    groups = frame[dup].groupby(list(KEY), sort=False)["value"]
    spread = groups.max() - groups.min()
    conflicting = spread[spread > _DUPLICATE_ATOL]
    if len(conflicting):
        key = conflicting.index[0]
        rows = frame.index[(frame[list(KEY)] == pd.Series(key, index=list(KEY))).all(axis=1)]
        where = ", ".join(_where(source, int(r)) for r in rows)
        raise ResultsTableError(
            f"{where}: {len(rows)} runs share the key {dict(zip(KEY, key))} with different values "
            f"{frame.loc[rows, 'value'].tolist()}; keep one run per (model, dataset, task, regime, "
            f"variant, seed, metric) ({len(conflicting)} such key(s) in all)"
        )
    return frame.drop_duplicates(list(KEY), keep="first").reset_index(drop=True)


def concat_tables(tables: Sequence[pd.DataFrame]) -> pd.DataFrame:
    """Stack results tables (already validated); identical duplicate runs collapse to one."""
    if not tables:
        return results_table(pd.DataFrame(columns=list(COLUMNS)))
    return results_table(pd.concat(list(tables), ignore_index=True), source="combined tables")


# Scores that are fractions in [0, 1] (F1, accuracy, IoU, Dice, mAP, AUROC, ...); losses, counts
# and errors are not bounded and are not checked.
BOUNDED_METRIC = re.compile(r"(f1|accuracy|pixel_accuracy|balanced_accuracy|precision|recall|"
                            r"iou|miou|dice|map|mar|auroc|auc|ap)(_.*)?")


def check_bounded(metrics: Iterable[Any], values: Iterable[Any], lines: Iterable[int],
                  source: str | Path) -> None:
    """Refuse a bounded metric's value outside [0, 1], naming the file, line, column, value
    (of the first such row; vectorised: a tidy CSV of a large store has millions of rows)."""
    names = pd.Series(list(metrics), dtype=object).astype(str).str.strip()
    raw = list(values)
    numbers = pd.to_numeric(pd.Series(raw, dtype=object), errors="coerce").astype(float)
    bad = (names.str.fullmatch(BOUNDED_METRIC.pattern).to_numpy()
           & np.isfinite(numbers.to_numpy()) & ~numbers.between(0, 1).to_numpy())
    if bad.any():
        i = int(np.argmax(bad))
        raise ResultsTableError(
            f"{source} line {list(lines)[i]}: column 'value' of metric {names[i]!r} is "
            f"{raw[i]!r}, outside [0, 1]; scores are fractions (a percentage? divide by 100)")


def read_results_csv(path: str | Path) -> pd.DataFrame:
    """Read a CSV written in the tidy schema (e.g. by `write_results_csv`)."""
    path = Path(path)
    frame = pd.read_csv(path, dtype={c: str for c in _STRING_COLUMNS}, keep_default_na=False,
                        na_values={"value": ["", "nan", "NaN"], "seed": [""]})
    if {"metric", "value"} <= set(frame.columns):
        check_bounded(frame["metric"], frame["value"], frame.index + 2, path)
    return results_table(frame, source=str(path))


def write_results_csv(table: pd.DataFrame, path: str | Path) -> Path:
    """Write a results table as CSV in the tidy schema (validated first)."""
    path = Path(path)
    with atomic_path(path) as tmp:
        results_table(table).to_csv(tmp, index=False)
    return path


def is_tidy_csv(path: str | Path) -> bool:
    """True if the CSV header carries every tidy column (as opposed to a published-results CSV)."""
    header = pd.read_csv(path, nrows=0).columns
    return all(c in header for c in COLUMNS)
