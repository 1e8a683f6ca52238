"""Per-dataset min-max normalisation with a FIXED, saved normaliser.

``score = (value - min) / (max - min)`` with (min, max) stored per (dataset, metric) together with
where they came from (``source``) and a ``version``. Because the bounds are fixed, adding a model
to a table never changes another model's scores (the reference recomputes min/max from whatever
table it is given, which does). Scores outside [0, 1] are kept, not clipped. A dataset whose bounds
are degenerate (min == max, e.g. mb-change_cls_ctx in the published runs) or that has no bounds is
excluded from aggregates and listed in `Normalised.excluded`, never divided by zero.

The default normaliser (`default_normaliser`, version ``paper_v1``) is derived from the published
baseline runs by scripts/build_paper_baselines.py and shipped as a JSON data file.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass
from functools import lru_cache
from importlib import resources
from pathlib import Path

import pandas as pd

from marsbench.catalog import UnknownDatasetError, get_card
from marsbench.io import atomic_write_text

from .table import COLUMNS, ResultsTableError, results_table

FORMAT = "marsbench-normaliser"
FORMAT_VERSION = 1
DEFAULT_FILE = "normaliser_paper_v1.json"


@dataclass(frozen=True)
class Bounds:
    """Fixed min and max of one metric on one dataset."""

    dataset: str
    metric: str
    min: float
    max: float
    source: str
    version: str

    @property
    def degenerate(self) -> bool:
        return not self.max > self.min


@dataclass(frozen=True)
class Normalised:
    """Normalised runs (`scores`: the tidy columns plus ``score``) and what was left out.

    ``excluded`` has columns dataset, metric, reason, runs: one row per dataset/metric whose runs
    carry no score, with the reason (degenerate bounds or no bounds).
    """

    scores: pd.DataFrame
    excluded: pd.DataFrame


@dataclass(frozen=True)
class Normaliser:
    """Per-(dataset, metric) `Bounds`; build with `from_table`, `load` or `default_normaliser`."""

    bounds: Mapping[tuple[str, str], Bounds]
    version: str
    source: str = ""

    @classmethod
    def from_table(cls, table: pd.DataFrame, *, version: str, source: str,
                   variants: Sequence[str] | None = ("full",),
                   regimes: Sequence[str] | None = None) -> Normaliser:
        """Min and max over every run of ``table`` (restricted to ``variants`` / ``regimes``)."""
        table = results_table(table)
        if variants is not None:
            table = table[table["variant"].isin(variants)]
        if regimes is not None:
            table = table[table["regime"].isin(regimes)]
        if table.empty:
            raise ResultsTableError(
                f"cannot derive normaliser {version!r}: no runs with variant in {variants} and "
                f"regime in {regimes}"
            )
        stats = table.groupby(["dataset", "metric"])["value"].agg(["min", "max"])
        bounds = {
            (d, m): Bounds(d, m, float(row["min"]), float(row["max"]), source, version)
            for (d, m), row in stats.iterrows()
        }
        return cls(bounds, version, source)

    # --- persistence -------------------------------------------------------------------------
    def to_dict(self) -> dict:
        return {
            "format": FORMAT, "format_version": FORMAT_VERSION, "version": self.version,
            "source": self.source,
            "bounds": [asdict(b) for b in sorted(self.bounds.values(), key=lambda b: (b.dataset, b.metric))],
        }

    @classmethod
    def from_dict(cls, data: Mapping, *, origin: str = "normaliser") -> Normaliser:
        if data.get("format") != FORMAT or data.get("format_version") != FORMAT_VERSION:
            raise ValueError(
                f"{origin}: not a {FORMAT} v{FORMAT_VERSION} file (format={data.get('format')!r}, "
                f"format_version={data.get('format_version')!r}); write it with Normaliser.save"
            )
        bounds: dict[tuple[str, str], Bounds] = {}
        for i, entry in enumerate(data.get("bounds", [])):
            try:
                b = Bounds(str(entry["dataset"]), str(entry["metric"]), float(entry["min"]),
                           float(entry["max"]), str(entry["source"]), str(entry["version"]))
            except (KeyError, TypeError, ValueError) as err:
                raise ValueError(f"{origin}: bounds entry {i} is invalid ({err!r}): {entry}") from None
            if b.max < b.min:
                raise ValueError(f"{origin}: bounds entry {i} ({b.dataset}/{b.metric}) has max < min")
            bounds[(b.dataset, b.metric)] = b
        return cls(bounds, str(data["version"]), str(data.get("source", "")))

    def save(self, path: str | Path) -> Path:
        return atomic_write_text(path, json.dumps(self.to_dict(), indent=1) + "\n")

    @classmethod
    def load(cls, path: str | Path) -> Normaliser:
        path = Path(path)
        try:
            data = json.loads(path.read_text())
        except json.JSONDecodeError as err:
            raise ValueError(f"{path}: not valid JSON ({err})") from None
        return cls.from_dict(data, origin=str(path))

    # --- use -----------------------------------------------------------------------------------
    def merged(self, other: Normaliser) -> Normaliser:
        """A normaliser with ``other``'s bounds added where this one has none."""
        bounds = {**other.bounds, **self.bounds}
        return Normaliser(bounds, f"{self.version}+{other.version}", f"{self.source}; {other.source}")

    def apply(self, table: pd.DataFrame) -> Normalised:
        """Normalise every run; runs without usable bounds are excluded and reported."""
        table = results_table(table)
        lo = [self.bounds[k].min if k in self.bounds else float("nan")
              for k in zip(table["dataset"], table["metric"])]
        hi = [self.bounds[k].max if k in self.bounds else float("nan")
              for k in zip(table["dataset"], table["metric"])]
        lo_s, hi_s = pd.Series(lo, index=table.index), pd.Series(hi, index=table.index)
        usable = hi_s > lo_s  # False for degenerate and for missing (NaN) bounds
        scores = table[usable].copy()
        scores["score"] = (scores["value"] - lo_s[usable]) / (hi_s[usable] - lo_s[usable])
        excluded_rows = []
        for (dataset, metric), runs in table[~usable].groupby(["dataset", "metric"]).size().items():
            b = self.bounds.get((dataset, metric))
            reason = (f"degenerate bounds: min = max = {b.min:.4g} in normaliser {b.version}"
                      if b is not None else f"no bounds in normaliser {self.version} (derive them: "
                      "Normaliser.from_table, CLI --normaliser paper+table)")
            excluded_rows.append({"dataset": dataset, "metric": metric, "reason": reason, "runs": int(runs)})
        excluded = pd.DataFrame(excluded_rows, columns=["dataset", "metric", "reason", "runs"])
        return Normalised(scores.reset_index(drop=True), excluded)


@lru_cache(maxsize=1)
def default_normaliser() -> Normaliser:
    """The shipped normaliser ``paper_v1`` (published full-training-set baseline runs)."""
    ref = resources.files("marsbench.aggregate") / "data" / DEFAULT_FILE
    return Normaliser.from_dict(json.loads(ref.read_text()), origin=f"marsbench/aggregate/data/{DEFAULT_FILE}")


def headline_metrics(table: pd.DataFrame, overrides: Mapping[str, str] | None = None) -> dict[str, str]:
    """The metric to aggregate for each dataset of ``table``.

    Order of choice: ``overrides[dataset]``; the catalog card's headline metric (for a dataset
    outside the catalog, its task's: f1_weighted, iou_reference, map_50_95) when the table has
    it; the only metric the table has for that dataset. Otherwise a `ResultsTableError` lists the
    metrics and how to choose one.
    """
    overrides = dict(overrides or {})
    chosen: dict[str, str] = {}
    tasks = table.groupby("dataset")["task"].first().to_dict() if "task" in table else {}
    for dataset, metrics in table.groupby("dataset")["metric"].unique().items():
        present = sorted(metrics)
        if dataset in overrides:
            if overrides[dataset] not in present:
                raise ResultsTableError(
                    f"dataset {dataset!r}: chosen metric {overrides[dataset]!r} is not in the table "
                    f"(it has {present})"
                )
            chosen[dataset] = overrides[dataset]
            continue
        try:
            headline = get_card(dataset).headline_metric
        except UnknownDatasetError:  # a user's own dataset: the headline of its task
            headline = TASK_HEADLINES.get(str(tasks.get(dataset, "")), "")
        if headline in present:
            chosen[dataset] = headline
        elif len(present) == 1:
            chosen[dataset] = present[0]
        else:
            raise ResultsTableError(
                f"dataset {dataset!r} has several metrics {present} and no headline metric among "
                f"them; choose one (Python: metrics={{{dataset!r}: ...}}; CLI: --metric {dataset}=NAME)"
            )
    return chosen


TASK_HEADLINES = {"classification": "f1_weighted", "segmentation": "iou_reference",
                  "detection": "map_50_95"}


def select_headline(table: pd.DataFrame, overrides: Mapping[str, str] | None = None) -> pd.DataFrame:
    """Only the rows of each dataset's headline metric (see `headline_metrics`)."""
    table = results_table(table)
    chosen = headline_metrics(table, overrides)
    keep = table["metric"].to_numpy() == table["dataset"].map(chosen).to_numpy()
    return table[keep].reset_index(drop=True).loc[:, list(COLUMNS)]


def parse_metric_overrides(items: Iterable[str]) -> dict[str, str]:
    """``["mb-x=acc", ...]`` -> ``{"mb-x": "acc"}`` (CLI ``--metric``)."""
    out = {}
    for item in items:
        dataset, sep, metric = item.partition("=")
        if not sep or not dataset.strip() or not metric.strip():
            raise ValueError(f"--metric {item!r}: write DATASET=METRIC, e.g. mb-domars16k=f1_macro")
        out[dataset.strip()] = metric.strip()
    return out
