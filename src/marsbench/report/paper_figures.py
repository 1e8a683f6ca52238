"""The paper's tables and figures: a registry, and how each is computed from a results table.

Each `PaperItem` names the experiment file that regenerates it (``paper:<name>``, or the command
for the VLM table, which `marsbench vlm` writes), and how to compute its numbers:

- ``table:*``: the raw headline metric per dataset x model, mean and std over seeds (full training
  set), as the paper's tables print it.
- ``figure:aggregate``: per task, the IQM of min-max normalised scores pooled over datasets x
  seeds with a stratified-bootstrap interval; min and max per dataset over the figure's runs (the
  reference's ``make_normalizer``), a dataset with min = max (mb-change_cls_ctx) left out.
- curves (``figure:training_size``, ``figure:few_shot``, ``figure:segmentation_partition``,
  ``figure:earth_observation``): the reference's ``benchmark/plot_*_results.py`` recipe: per
  dataset, min-max normalise over every row of the figure on that dataset (all models x
  fractions, the full set as 100 %), then mean and std over seeds per model and fraction (the
  reference draws mean +- std). The aggregate panel, which the reference left commented out, is
  the IQM over datasets x seeds of the normalised scores with a stratified-bootstrap interval.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from ..aggregate.normalise import Normaliser
from ..aggregate.summary import task_scores
from ..errors import OptionError, did_you_mean

AGGREGATE_PANEL = "(aggregate: IQM)"
CURVE_COLUMNS = ["panel", "task", "model", "x", "runs", "raw_mean", "raw_std", "mean", "std",
                 "ci_low", "ci_high", "datasets"]
TABLE_COLUMNS = ["task", "dataset", "metric", "model", "runs", "mean", "std"]


@dataclass(frozen=True)
class PaperItem:
    """One table or figure of the paper. ``kind``: ``table``, ``aggregate`` or ``curves``;
    ``variants``: which runs it reads (``full``, ``partition`` = fractions + full, ``few_shot``);
    ``published``: whether the per-seed CSV shipped in the package covers it."""

    name: str
    caption: str
    kind: str
    tasks: tuple[str, ...]
    variants: str
    experiments: tuple[str, ...] = ()
    command: str = ""
    published: bool = True
    metric: str | None = None  # fixed metric (VLM); else each dataset's headline metric

    @property
    def regenerate(self) -> str:
        """The command that regenerates it from a results store."""
        if self.command:
            return self.command
        return f"marsbench report --figure {self.name} --store runs/results.sqlite --out paper/"


REGISTRY: tuple[PaperItem, ...] = (
    PaperItem("table:classification", "Classification baselines: test F1 (weighted; binary: "
              "positive class) per dataset, mean over 7 seeds, feature extraction.",
              "table", ("classification",), "full", ("paper:main_classification",)),
    PaperItem("table:segmentation", "Segmentation baselines: test IoU (reference definition) per "
              "dataset, mean over 7 seeds, feature extraction.",
              "table", ("segmentation",), "full", ("paper:main_segmentation",)),
    PaperItem("figure:aggregate", "IQM of min-max normalised scores over datasets x seeds with "
              "95 % stratified-bootstrap intervals, per task (full training set).",
              "aggregate", ("classification", "segmentation"), "full",
              ("paper:main_classification", "paper:main_segmentation")),
    PaperItem("figure:training_size", "Classification: normalised test F1 against the fraction "
              "of the training set, per dataset and aggregated.",
              "curves", ("classification",), "partition", ("paper:training_size_curves",)),
    PaperItem("figure:few_shot", "Classification: normalised test F1 against training images "
              "per class, per dataset and aggregated.",
              "curves", ("classification",), "few_shot", ("paper:few_shot_curves",)),
    PaperItem("figure:segmentation_partition", "Segmentation: normalised test IoU against the "
              "fraction of the training set, per dataset and aggregated.",
              "curves", ("segmentation",), "partition", ("paper:segmentation_partition_curves",)),
    PaperItem("figure:earth_observation", "ImageNet ViT-L/16 against Earth-observation "
              "foundation models: normalised test F1 against the fraction of the training set.",
              "curves", ("classification",), "partition", ("paper:earth_observation",),
              command="marsbench report --figure figure:earth_observation --csv "
                      "../shared/data/reference-results/earth_data.csv --renumber-seeds "
                      "--out paper/", published=False),
    PaperItem("table:vlm", "Zero-shot vision-language models: test F1 per dataset (segmentation "
              "datasets recast as which classes are present).",
              "table", ("classification", "segmentation"), "full",
              command="marsbench vlm --dataset DATASET --provider gemini --model "
                      "gemini-2.0-flash (per dataset and model), then marsbench report "
                      "--figure table:vlm --store runs/results.sqlite --out paper/",
              published=False, metric="f1_weighted"),
)
VLM_DATASETS = ("mb-domars16k", "mb-surface_cls", "mb-frost_cls", "mb-atmospheric_dust_cls_edr",
                "mb-crater_multi_seg", "mb-mars_seg_msl")
VLM_MODELS = ("gemini-2.0-flash", "gpt-4o-mini")


def get_item(name: str) -> PaperItem:
    """The registry entry ``name``; an unknown name is one line listing the valid ones."""
    for item in REGISTRY:
        if item.name == name:
            return item
    names = [i.name for i in REGISTRY]
    raise OptionError("no such paper table or figure", where="--figure", value=name,
                      fix=f"{did_you_mean(name, names)}; one of {', '.join(names)} "
                          "(list them with `marsbench paper`)")


# -- selecting the runs ---------------------------------------------------------------------------

def figure_rows(item: PaperItem, table: pd.DataFrame) -> pd.DataFrame:
    """The runs ``item`` is drawn from: its tasks and variants, feature extraction (zero-shot for
    the VLM table), one metric per dataset (the headline metric unless the item fixes one)."""
    from ..aggregate.normalise import select_headline

    rows = table[table["task"].isin(item.tasks)]
    regime = "zero_shot" if item.name == "table:vlm" else "feature_extraction"
    rows = rows[rows["regime"] == regime]
    variant = rows["variant"]
    keep = {"full": variant == "full",
            "partition": (variant == "full") | variant.str.startswith("partition:"),
            "few_shot": variant.str.startswith("few_shot:")}[item.variants]
    rows = rows[keep]
    if item.name == "table:vlm":
        rows = rows[rows["dataset"].isin(VLM_DATASETS)]
    if item.metric is not None:
        rows = rows[rows["metric"] == item.metric]
    elif len(rows):
        rows = select_headline(rows)
    if rows.empty:
        raise OptionError(f"the results hold no runs for {item.name}", where="--figure",
                          value=item.name, fix=f"run them first: {_how(item)}")
    return rows.reset_index(drop=True)


def _how(item: PaperItem) -> str:
    if item.experiments:
        return " and ".join(f"marsbench sweep {e}" for e in item.experiments)
    return item.command


def x_of(variant: pd.Series) -> pd.Series:
    """Training fraction (the full set as 1.0) or shots per class, from the variant name."""
    return variant.map(lambda v: 1.0 if v == "full" else float(v.split(":", 1)[1]))


# -- computing ------------------------------------------------------------------------------------

def table_numbers(rows: pd.DataFrame) -> pd.DataFrame:
    """Mean and std (ddof 1) of the raw metric over seeds, per dataset and model."""
    keys = ["task", "dataset", "metric", "model"]
    out = rows.groupby(keys, sort=True)["value"].agg(runs="size", mean="mean", std="std")
    return out.reset_index().loc[:, TABLE_COLUMNS]


def figure_normaliser(rows: pd.DataFrame) -> Normaliser:
    """Min and max per dataset over every row of the figure (the reference's recipe)."""
    return Normaliser.from_table(rows, version="figure", variants=None,
                                 source="min and max over the figure's runs (paper recipe)")


def aggregate_numbers(rows: pd.DataFrame, *, rounds: int = 1000, seed: int = 0,
                      confidence: float = 0.95) -> pd.DataFrame:
    """IQM and interval per task and model (`task_scores` on the figure-normalised runs)."""
    normalised = figure_normaliser(rows).apply(rows)
    return task_scores(normalised, variants=None, rounds=rounds, seed=seed,
                       confidence=confidence)


def curve_numbers(rows: pd.DataFrame, *, rounds: int = 1000, seed: int = 0,
                  confidence: float = 0.95) -> pd.DataFrame:
    """Per dataset panel: normalised mean and std over seeds (and the raw mean and std) per model
    and x; the aggregate panel: IQM over datasets x seeds with its bootstrap interval."""
    scores = figure_normaliser(rows).apply(rows).scores
    scores = scores.assign(x=x_of(scores["variant"]))
    raw = rows.assign(x=x_of(rows["variant"])).groupby(["dataset", "model", "x"])["value"]
    raw = raw.agg(raw_mean="mean", raw_std="std")
    panels = scores.groupby(["dataset", "task", "model", "x"], sort=True)["score"].agg(
        runs="size", mean="mean", std="std").reset_index()
    panels = panels.merge(raw.reset_index(), on=["dataset", "model", "x"], how="left")
    panels = panels.rename(columns={"dataset": "panel"})
    panels["ci_low"] = panels["mean"] - panels["std"].fillna(0.0)
    panels["ci_high"] = panels["mean"] + panels["std"].fillna(0.0)
    panels["datasets"] = 1
    agg = task_scores(scores, variants=None, rounds=rounds, seed=seed, confidence=confidence)
    agg = agg.assign(panel=AGGREGATE_PANEL, x=x_of(agg["variant"]), raw_mean=np.nan,
                     raw_std=np.nan, std=np.nan, mean=agg["iqm"],
                     datasets=agg["datasets_covered"])
    out = pd.concat([agg.loc[:, CURVE_COLUMNS], panels.loc[:, CURVE_COLUMNS]], ignore_index=True)
    return out.sort_values(["panel", "model", "x"], kind="stable").reset_index(drop=True)


def compute(item: PaperItem, table: pd.DataFrame, *, rounds: int = 1000, seed: int = 0,
            confidence: float = 0.95) -> pd.DataFrame:
    """The numbers of ``item`` from a results table (the CSV written beside its figure)."""
    rows = figure_rows(item, table)
    if item.kind == "table":
        return table_numbers(rows)
    opts = dict(rounds=rounds, seed=seed, confidence=confidence)
    return aggregate_numbers(rows, **opts) if item.kind == "aggregate" \
        else curve_numbers(rows, **opts)


# -- what it takes --------------------------------------------------------------------------------

def planned_runs(exp) -> int:
    """Runs the experiment plans on an empty store, as `marsbench sweep --dry-run` counts them:
    the search stage of every group plus its seeds stage (the grid seed's run is reused).

    Fast for the paper's 648-point grid: the planner enumerates the groups and each group's loss
    axis (which depends on the dataset) on a grid with one value of every other field; a group's
    space is that times the other fields' sizes, of which the search asks every point (``grid``)
    or n (``random:<n>``, ``tpe:<n>``)."""
    import dataclasses
    from collections import Counter

    from ..protocol.plan import grid_runs

    rest, grid = 1, []
    for name, values in exp.grid:
        grid.append((name, values if name == "loss" else values[:1]))
        rest *= 1 if name == "loss" else len(values)
    search = getattr(exp, "search", "grid")
    reduced = dataclasses.replace(exp, grid=tuple(grid),
                                  **({"search": "grid"} if search != "grid" else {}))
    per_group = Counter(run.group for run in grid_runs(reduced))
    seeds = len(exp.seeds) - (exp.grid_seed in exp.seeds) if "seeds" in exp.stages else 0
    return sum(_trials(search, n * rest) for n in per_group.values()) + len(per_group) * seeds


def _trials(search: str, space: int) -> int:
    if search == "grid":
        return space
    from ..protocol.search import parse_search  # random:<n> / tpe:<n>

    return min(parse_search(search).n, space)


def store_coverage(exp, store) -> tuple[int, int]:
    """(runs done, runs needed) of ``exp`` in ``store``, from its plan (`make_plan`, models not
    resolved): done search and seeds runs; needed counts every search run (TPE trials not asked
    yet included) and the seeds runs of groups whose search is unfinished.

    Only the datasets and models the store holds a run of are planned (the paper's grids plan
    up to 800,000 runs, seconds per 10,000): the groups of the others have no run, so they
    need exactly what an empty store needs, `planned_runs`, and groups never share runs."""
    import dataclasses

    held = store.distinct("dataset", "model")
    pairs = [(ds, model) for ds in exp.datasets for model in exp.models
             if _stored_as(exp, ds, model) in held]
    if not pairs:
        return 0, planned_runs(exp)
    kept = dataclasses.replace(
        exp, datasets=tuple(d for d in exp.datasets if any(d is ds for ds, _ in pairs)),
        models=tuple(m for m in exp.models if any(m is model for _, model in pairs)))
    done, needed = _planned_coverage(kept, store)
    return done, planned_runs(exp) - planned_runs(kept) + needed


def _stored_as(exp, ds, model) -> tuple[str, str]:
    """The (dataset, model) columns the store files the runs of ``ds`` x ``model`` under."""
    from ..protocol.plan import grid_configs, planned_spec

    spec = planned_spec(exp, ds, ds.variants[0], model, exp.regimes_for(model)[0],
                        grid_configs(exp, ds)[0], split=exp.splits[0], arm=exp.arms[0])
    return spec.dataset, spec.model


def _planned_coverage(exp, store) -> tuple[int, int]:
    from ..protocol import make_plan

    plan = make_plan(exp, store, check_data=False, check_models=False)
    own = [s for s in plan.grid + plan.seeds if not s.reused]
    search = getattr(plan, "search_runs", len(plan.grid))
    needed = search + sum(not s.reused for s in plan.seeds) + plan.pending_seed_runs()
    return sum(s.state == "done" for s in own), needed
