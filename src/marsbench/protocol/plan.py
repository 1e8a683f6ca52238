"""The planner: an `Experiment` becomes the `RunSpec`s of its two stages, checked against a store.

Stage ``grid`` (the search stage): the points of the grid that the experiment's ``search`` picks
(every point for ``grid``, the default; n seeded draws or n Optuna TPE trials otherwise, see
`marsbench.protocol.search`), once per group (dataset, variant, model, weights, regime), at seed
``grid_seed``. The grid's loss value ``paper`` is the paper's loss space for the group's dataset
(`loss_values`). Selection: per group, the grid run with the best selection metric
(lowest validation loss by default; ties go to the earlier grid point; failed runs and
non-finite values never win). Stage ``seeds``: the winner's configuration at every seed of the
experiment; the seed equal to ``grid_seed`` is the winning grid run itself (same spec, same key),
so it is reused, not rerun. A group is decided only when every one of its grid runs has a record
(ok or failed) that will not be rerun.

Everything here is a pure function of the experiment and the store's records, which is what makes
a sweep resumable: re-planning after an interruption yields the same runs, minus the finished.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

from ..io import sha256_file
from ..runs.fingerprint import code_fingerprint
from ..runs.options import default_fe_path, option_names
from ..runs.record import RunRecord
from ..runs.spec import RunSpec, dataset_card
from ..runs.store import ResultsStore, StaleRun
from ..vocab import PRETRAINED_REGIMES
from .experiment import PAPER_LOSS, DatasetEntry, Experiment, ExperimentError, ModelEntry
from .search import TpeGroup, parse_search, random_draw, space_values

STATES = ("done", "failed", "stale", "todo")
_SQL_CHUNK = 900  # keys per query: below SQLite's oldest limit on bound parameters (999)


class Group(NamedTuple):
    """What selection picks one configuration for."""

    dataset: str
    variant: str
    model: str
    weights: str
    regime: str
    split: str = "official"  # RunSpec.split (docs/splits.md)
    arm: str = ""  # the experiment's option-axis values, "imbalance=focal" ('' without axes)

    @property
    def label(self) -> str:
        """The model with the split scheme and option arm that tell this group apart from the
        model's other groups (the ``model`` column of the selections and trials tables)."""
        k = "" if self.split == "official" else f" split={self.split}"
        return f"{self.model}{k}{' ' + self.arm if self.arm else ''}"

    def describe(self) -> str:
        w = "" if self.weights == "default" else f" ({self.weights[:19]})"
        k = "" if self.split == "official" else f" split={self.split}"
        a = f" {self.arm}" if self.arm else ""
        return f"{self.dataset}[{self.variant}] {self.model}{w} {self.regime}{k}{a}"


@dataclass(frozen=True)
class PlannedRun:
    spec: RunSpec
    stage: str  # "grid" | "seeds"
    group: Group
    weights_path: str | None = None  # user checkpoint handed to run_experiment
    key: str = field(default="", compare=False)
    point: tuple[tuple[str, Any], ...] = field(default=(), compare=False)  # its grid point

    def __post_init__(self) -> None:
        if not self.key:  # computed once: RunSpec.key hashes on every access
            object.__setattr__(self, "key", self.spec.key)


@dataclass(frozen=True)
class Selection:
    """The outcome of selection for one group (``winner`` None: undecided or nothing ok)."""

    group: Group
    winner: RunRecord | None
    value: float | None
    metric: str
    candidates: int  # grid runs with a usable value
    failed: int
    missing: int  # grid runs with no record yet, or about to be rerun (or trials not asked yet)

    @property
    def decided(self) -> bool:
        return self.missing == 0


@dataclass
class RunStatus:
    run: PlannedRun
    record: RunRecord | None
    state: str  # one of STATES
    stale: StaleRun | None = None
    will_run: bool = False
    reused: bool = False  # a seeds run that is the winning grid run itself


@dataclass
class Plan:
    experiment: Experiment
    grid: list[RunStatus]
    seeds: list[RunStatus]
    selections: dict[Group, Selection]
    warnings: list[str] = field(default_factory=list)
    trials: dict[Group, int] = field(default_factory=dict)  # search-stage runs per group
    spaces: dict[Group, dict[str, list[Any]]] = field(default_factory=dict)  # values per field

    @property
    def search_runs(self) -> int:
        """Runs of the search stage in all (TPE: those not asked yet included)."""
        return sum(self.trials.values()) if self.trials else len(self.grid)

    @property
    def undecided(self) -> list[Group]:
        return [g for g, s in self.selections.items() if not s.decided]

    @property
    def stale(self) -> list[RunStatus]:
        return [s for s in self.grid + self.seeds if s.state == "stale" and not s.reused]

    def counts(self) -> list[dict[str, Any]]:
        """One row per stage: planned, done, failed, stale, todo, will_run, reused."""
        rows = []
        for stage, items in (("grid", self.grid), ("seeds", self.seeds)):
            own = [s for s in items if not s.reused]
            row = {"stage": stage, "planned": len(items), "reused": len(items) - len(own),
                   "will_run": sum(s.will_run for s in own)}
            row |= {state: sum(s.state == state for s in own) for state in STATES}
            rows.append(row)
        return rows

    def pending_seed_runs(self) -> int:
        """Seeds runs of groups not yet decided (their configuration is not known yet)."""
        exp = self.experiment
        if "seeds" not in exp.stages:
            return 0
        per_group = len(exp.seeds) - (exp.grid_seed in exp.seeds)
        return per_group * len(self.undecided)


# -- specs ----------------------------------------------------------------------------------------

def _weights(model: ModelEntry, regime: str, hashes: dict[str, str]) -> tuple[str, str | None]:
    """(RunSpec.weights, checkpoint path): a checkpoint counts only where weights are loaded;
    the tag is its content hash, as `marsbench run --weights` writes it."""
    if model.weights is None or regime not in PRETRAINED_REGIMES:
        return "default", None
    if model.weights not in hashes:
        hashes[model.weights] = sha256_file(model.weights)
    return f"sha256:{hashes[model.weights]}", model.weights


def run_options(exp: Experiment, model: ModelEntry, regime: str, task: str,
                arm: tuple[tuple[str, Any], ...] = ()) -> dict[str, Any]:
    """The options of one group's runs: the experiment's, the model's, then the option arm's
    (one combination of the experiment's ``option_axes``). The experiment's
    ``fe_path`` goes to the feature_extraction runs of the tasks that have it (classification,
    segmentation), where it can apply: ``cached`` leaves segmentation's ``input_policy=tile``
    runs on their default, ``online`` (an explicit ``fe_path`` option is checked as given)."""
    options = dict(exp.options) | dict(model.options) | dict(arm)
    if regime == "feature_extraction" and "fe_path" in option_names(task):
        if "fe_path" not in options and (
                exp.fe_path == "online"
                or default_fe_path(task, options.get("input_policy")) == "cached"):
            options["fe_path"] = exp.fe_path
    elif regime != "feature_extraction":
        options.pop("fe_path", None)
    return options


def planned_spec(exp: Experiment, ds: DatasetEntry, variant: str, model: ModelEntry,
                 regime: str, config: Mapping[str, Any], weights: str = "default",
                 split: str = "official", arm: tuple[tuple[str, Any], ...] = ()) -> RunSpec:
    """The spec of one planned run (validated: options, variant, loss, dataset)."""
    root = ds.root or exp.data_root
    task = str(dataset_card(ds.name, root, exp.source).task)
    options = run_options(exp, model, regime, task, arm)
    config = dict(config)
    loss, _, weighting = str(config.get("loss", "auto")).partition(":")
    if weighting:  # dice:<weighting>: generalised Dice with those class weights
        config["loss"] = loss
        options["dice_weighting"] = weighting
    return RunSpec(dataset=ds.name, model=model.name, regime=regime, variant=variant,
                   seed=exp.grid_seed, weights=weights, subset_seed=exp.subset_seed, split=split,
                   precision=exp.precision, compile=exp.compile, profile=exp.profile,
                   options=options, data_root=root, source=exp.source, **config)


# The paper's loss space per kind of dataset (reference: BaseClassificationModel.py:121-131,
# BaseSegmentationModel.py:108-160): binary one-logit BCE (``auto``) vs two-logit CE;
# segmentation CE (``auto``), generalised Dice with each weighting of the reference
# (square, simple, uniform), CE + generalised Dice (square, as the reference's ``combined``).
PAPER_LOSSES = {
    "binary": ("auto", "ce"),
    "segmentation": ("auto", "dice", "dice:simple", "dice:uniform", "combined"),
}


def loss_values(exp: Experiment, ds: DatasetEntry) -> tuple[str, ...]:
    """The grid's loss axis for dataset ``ds``: the value ``paper`` becomes the paper's loss
    space for its task (`PAPER_LOSSES`; one ``auto`` for multi-class, multi-label, detection)."""
    out: list[str] = []
    for loss in exp.grid_dict["loss"]:
        if loss == PAPER_LOSS:
            card = dataset_card(ds.name, ds.root or exp.data_root, exp.source)
            kind = str(card.task)
            kind = "binary" if kind == "classification" and card.binary else kind
            loss_space = PAPER_LOSSES.get(kind, ("auto",))
        else:
            loss_space = (loss,)
        out += [x for x in loss_space if x not in out]
    return tuple(out)


def grid_configs(exp: Experiment, ds: DatasetEntry | None = None) -> list[dict[str, Any]]:
    """The grid points in order (product over the fields in `GRID_FIELDS` order), with the
    loss axis of dataset ``ds`` (`loss_values`) when given."""
    axes = [(name, loss_values(exp, ds) if name == "loss" and ds is not None else values)
            for name, values in exp.grid]
    names = [name for name, _ in axes]
    return [dict(zip(names, values)) for values in itertools.product(*(v for _, v in axes))]


def space_runs(exp: Experiment) -> dict[Group, list[PlannedRun]]:
    """Every grid point of every group (the space the search explores), in grid order."""
    hashes: dict[str, str] = {}
    out: dict[Group, list[PlannedRun]] = {}
    skipped = set(not_applicable(exp))
    for ds in exp.datasets:
        configs = grid_configs(exp, ds)
        for variant in ds.variants:
            for model in exp.models:
                for regime in exp.regimes_for(model):
                    if (ds.name, regime) in skipped:
                        continue
                    weights, path = _weights(model, regime, hashes)
                    for arm, split, config in itertools.product(exp.arms, exp.splits, configs):
                        spec = planned_spec(exp, ds, variant, model, regime, config, weights,
                                            split, arm)
                        run = PlannedRun(spec, "grid", _group_of(exp, spec), path,
                                         point=tuple(config.items()))
                        out.setdefault(run.group, []).append(run)
    return out


def search_trials(exp: Experiment, space: dict[Group, list[PlannedRun]],
                  records: Mapping[str, RunRecord] | None = None, pending: Iterable[str] = (),
                  studies: dict[Group, TpeGroup] | None = None
                  ) -> dict[Group, tuple[list[PlannedRun], int]]:
    """Per group: the trials of the search stage known now, and how many there will be.

    ``grid``: every point; ``random:<n>``: n seeded draws; ``tpe:<n>``: the TPE trials the
    ``records`` decide so far (a study per group, kept in ``studies`` to be continued)."""
    search = parse_search(exp.search)
    out = {}
    for group, runs in space.items():
        if search.kind == "grid":
            out[group] = (runs, len(runs))
        elif search.kind == "random":
            out[group] = ([runs[i] for i in random_draw(len(runs), search.n, exp.grid_seed)],
                          min(search.n, len(runs)))
        else:
            study = (studies or {}).get(group) or TpeGroup(exp, runs, search.n)
            if studies is not None:
                studies[group] = study
            trials = study.advance(records or {}, pending)
            out[group] = (trials, len(trials) if study.complete else study.n)
    return out


def grid_runs(exp: Experiment, records: Mapping[str, RunRecord] | None = None
              ) -> list[PlannedRun]:
    """Stage ``grid``, group by group (so groups finish, and move on to seeds, early). For
    ``tpe`` the trials depend on the results: those ``records`` decide so far."""
    return [run for trials, _ in search_trials(exp, space_runs(exp), records).values()
            for run in trials]


def not_applicable(exp: Experiment) -> dict[tuple[str, str], str]:
    """(dataset, regime) pairs of ``exp`` that cannot run and are not planned, with why: the
    N-way K-shot ``few_shot_episodes`` probe on a multi-label dataset. `make_plan` lists them
    in its warnings (``sweep --dry-run`` and the sweep summary print them)."""
    out = {}
    regimes = {r for m in exp.models for r in exp.regimes_for(m)}
    if "few_shot_episodes" not in regimes:
        return out
    for ds in exp.datasets:
        card = dataset_card(ds.name, ds.root or exp.data_root, exp.source)
        if card is not None and card.multilabel:
            out[(ds.name, "few_shot_episodes")] = "N-way K-shot episodes need single-label classes"
    return out


def group_count(exp: Experiment) -> int:
    """How many groups `space_runs` plans (dataset variant x model regime x split scheme x
    option arm, less the pairs `not_applicable` leaves out), without building a spec."""
    skipped = set(not_applicable(exp))
    return sum(len(ds.variants) * len(exp.splits) * len(exp.arms)
               for ds in exp.datasets for model in exp.models
               for regime in exp.regimes_for(model) if (ds.name, regime) not in skipped)


def _group_of(exp: Experiment, spec: RunSpec) -> Group:
    """The group of ``spec``: its arm is read back from the spec's own (typed) options."""
    values = spec.options.to_dict()
    arm = " ".join(f"{name}={values.get(name)}" for name, _ in exp.option_axes)
    return Group(spec.dataset, spec.variant, spec.model, spec.weights, spec.regime, spec.split,
                 arm)


def seed_runs(exp: Experiment, winner: RunSpec, weights_path: str | None) -> list[PlannedRun]:
    """Stage ``seeds`` of one group: the winning configuration at each seed."""
    if "seeds" not in exp.stages:
        return []
    # data location from the experiment (the stored spec keeps where the grid run read it)
    root = next((d.root for d in exp.datasets if d.name == winner.dataset and d.root), None)
    base = winner.replace(data_root=root or exp.data_root, source=exp.source)
    return [PlannedRun(base.replace(seed=s), "seeds", _group_of(exp, base), weights_path)
            for s in exp.seeds]


def grid_keys(exp: Experiment) -> list[str]:
    return [r.key for r in grid_runs(exp)]


def _searched(exp: Experiment, store: ResultsStore
              ) -> tuple[dict[Group, tuple[list[PlannedRun], int]], dict[str, RunRecord]]:
    """The search stage of ``exp`` as the store's records decide it, with those records."""
    space = space_runs(exp)
    if parse_search(exp.search).kind == "tpe":  # any point may be a trial
        records = load_records(store, [r.key for runs in space.values() for r in runs])
        return search_trials(exp, space, records), records
    trials = search_trials(exp, space)
    keys = [r.key for runs, _ in trials.values() for r in runs]
    return trials, load_records(store, keys)


# -- selection ------------------------------------------------------------------------------------

def selection_value(record: RunRecord, metric: str) -> float | None:
    """The record's value of the selection metric; None if failed, absent or not finite."""
    if not record.ok:
        return None
    if metric == "val_loss":
        value = record.val_loss
    else:
        value = (record.metrics.get("val") or {}).get(metric.removeprefix("val."))
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        return None
    return float(value)


def select_group(exp: Experiment, group: Group, runs: Iterable[PlannedRun],
                 records: Mapping[str, RunRecord], pending: Iterable[str] = (),
                 expected: int | None = None) -> Selection:
    """Pick the winner of ``group`` among its grid ``runs`` (in grid order); ``expected`` is
    the number of trials the search will have (more than ``runs``: undecided)."""
    rule, pending, runs = exp.selection, set(pending), list(runs)
    best: tuple[float, RunRecord] | None = None
    candidates = failed = 0
    missing = max(0, (expected or 0) - len(runs))
    for run in runs:
        record = records.get(run.key)
        if record is None or run.key in pending:
            missing += 1
            continue
        value = selection_value(record, rule.metric)
        if value is None:
            failed += 1
            continue
        candidates += 1
        score = value if rule.mode == "min" else -value
        if best is None or score < best[0]:  # strict: ties keep the earlier grid point
            best = (score, record)
    winner = best[1] if best and missing == 0 else None
    value = None if winner is None else selection_value(winner, rule.metric)
    return Selection(group, winner, value, rule.metric, candidates, failed, missing)


def select(exp: Experiment, store: ResultsStore) -> dict[Group, Selection]:
    """Selection for every group, from the records in ``store``."""
    trials, records = _searched(exp, store)
    return {g: select_group(exp, g, runs, records, expected=n)
            for g, (runs, n) in trials.items()}


def final_runs(exp: Experiment, store: ResultsStore) -> list[PlannedRun]:
    """Stage ``seeds`` of every decided group with a winner (done or not)."""
    trials, records = _searched(exp, store)
    out = []
    for group, (runs, n) in trials.items():
        sel = select_group(exp, group, runs, records, expected=n)
        if sel.winner is not None:
            out += seed_runs(exp, sel.winner.spec, runs[0].weights_path)
    return out


def final_keys(exp: Experiment, store: ResultsStore) -> list[str]:
    """Spec keys of the seeds-stage runs: what a report aggregates, e.g.
    ``store.to_table(spec_key=final_keys(exp, store))``."""
    return [run.key for run in final_runs(exp, store)]


def _by_group(runs: Iterable[PlannedRun]) -> dict[Group, list[PlannedRun]]:
    out: dict[Group, list[PlannedRun]] = {}
    for run in runs:
        out.setdefault(run.group, []).append(run)
    return out


def load_records(store: ResultsStore, keys: Iterable[str]) -> dict[str, RunRecord]:
    keys = list(dict.fromkeys(keys))
    out: dict[str, RunRecord] = {}
    for i in range(0, len(keys), _SQL_CHUNK):
        out.update((r.spec_key, r) for r in store.records(spec_key=keys[i:i + _SQL_CHUNK]))
    return out


# -- preflight ------------------------------------------------------------------------------------

def check_data_present(exp: Experiment) -> None:
    """Refuse an experiment whose data is not on this machine, before anything runs: one line
    naming every missing dataset (or variant) and the command that fetches them.

    Local data only: a dataset read from the Hugging Face Hub (``source: hf``) is fetched by the
    run itself. Weights are checked by the first run of each model, which stops the sweep at once
    (`SweepEnvironmentError`) without recording anything."""
    from ..errors import MarsbenchError
    from ..runs.data import open_splits
    from ..sources.errors import DataError

    missing: dict[str, str] = {}  # dataset -> the problem
    roots: set[str] = set()
    seen: set[tuple] = set()
    for run in (r for runs in space_runs(exp).values() for r in runs):
        s = run.spec
        if s.source == "hf":
            continue
        where = (s.dataset, s.data_root, s.source, str(s.variant), s.subset_seed, s.split)
        if where in seen or s.dataset in missing:
            continue
        seen.add(where)
        try:
            open_splits(s)
        except DataError as exc:
            missing[s.dataset] = " ".join(str(exc).split())
            roots.add(s.data_root or "")
        except MarsbenchError as exc:  # a variant's files, a malformed index, ...
            missing[s.dataset] = " ".join(str(exc).split())
    if not missing:
        return
    names = sorted(missing)
    catalog = [n for n in names if "/" not in n and not n.startswith(".")]
    root = next(iter(roots)) if len(roots) == 1 else ""
    fix = (f"fetch them with `marsbench datasets download {' '.join(catalog)}"
           f"{f' --root {root}' if root else ''}`, or point --root at the folder holding them"
           if catalog else "check the dataset paths")
    first = missing[names[0]]
    raise DataError(f"{len(names)} dataset(s) of experiment {exp.name!r} cannot be read",
                    value=f"{', '.join(names)} (first: {first})", fix=fix)


# -- freshness ------------------------------------------------------------------------------------

def data_fingerprint(spec: RunSpec) -> str | None:
    """The data fingerprint a run of ``spec`` would record now, or None where the data is not
    on this machine (nothing is downloaded to check). The same splits as the run opens."""
    from ..runs.data import data_location, open_splits
    from ..sources.dataset import splits_fingerprint

    if not Path(data_location(spec)[1]).exists():  # a hub repo id: checking would download
        return None
    return splits_fingerprint(open_splits(spec))


class Freshness:
    """Says whether a stored record was made by this code from this data (cached per dataset)."""

    def __init__(self, exp: Experiment, *, check_data: bool = True) -> None:
        self.exp, self.check_data = exp, check_data
        self.code = code_fingerprint()
        self._data: dict[tuple, str | None] = {}
        self.unchecked: dict[str, str] = {}  # dataset -> why its data could not be checked

    def data(self, spec: RunSpec) -> str | None:
        if not self.check_data:
            return None
        k = (spec.dataset, spec.variant, spec.data_root, spec.source, spec.subset_seed, spec.split,
             spec.options.describe() if spec.task == "detection" else "")
        if k not in self._data:
            try:
                self._data[k] = data_fingerprint(spec)
            except Exception as exc:  # noqa: BLE001 - any read failure means "cannot check"
                self._data[k] = None
                self.unchecked[f"{spec.dataset}[{spec.variant}]"] = \
                    f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"
        return self._data[k]

    def stale(self, run: PlannedRun, record: RunRecord) -> StaleRun | None:
        code_changed = record.code_fingerprint != self.code
        expected = self.data(run.spec)
        data_changed = expected is not None and record.data_fingerprint != expected
        return StaleRun(record, code_changed, data_changed) if code_changed or data_changed \
            else None


def run_status(run: PlannedRun, record: RunRecord | None, fresh: Freshness, *,
               retry_failed: bool, rerun_stale: bool) -> RunStatus:
    if record is None:
        return RunStatus(run, None, "todo", will_run=True)
    if not record.ok:
        return RunStatus(run, record, "failed", will_run=retry_failed)
    stale = fresh.stale(run, record)
    if stale is not None:
        return RunStatus(run, record, "stale", stale, will_run=rerun_stale)
    return RunStatus(run, record, "done")


# -- the plan -------------------------------------------------------------------------------------

def make_plan(exp: Experiment, store: ResultsStore, *, retry_failed: bool = False,
              rerun_stale: bool = False, check_data: bool = True,
              check_models: bool = True, freshness: Freshness | None = None,
              studies: dict[Group, TpeGroup] | None = None) -> Plan:
    """Both stages of ``exp`` with the state of every run in ``store``.

    Seeds runs are listed for decided groups only; `Plan.pending_seed_runs` counts the rest.
    ``studies`` receives the TPE studies (``search: tpe:<n>``), for a sweep to continue.
    """
    if check_models:
        _check_models(exp)
    warnings: list[str] = []
    fresh = freshness or Freshness(exp, check_data=check_data)
    opts = dict(retry_failed=retry_failed, rerun_stale=rerun_stale)
    space = space_runs(exp)
    if parse_search(exp.search).kind == "tpe":  # trials follow the results: replay them
        records = load_records(store, [r.key for runs in space.values() for r in runs])
        redo = {r.key for runs in space.values() for r in runs if r.key in records
                and run_status(r, records[r.key], fresh, **opts).will_run}
        trials = search_trials(exp, space, records, redo, studies)
    else:
        trials = search_trials(exp, space)
        records = load_records(store, [r.key for runs, _ in trials.values() for r in runs])
    grid = [run for runs, _ in trials.values() for run in runs]
    grid_status = [run_status(r, records.get(r.key), fresh, **opts) for r in grid]
    by_key = {s.run.key: s for s in grid_status}
    pending = {s.run.key for s in grid_status if s.will_run}
    selections = {g: select_group(exp, g, runs, records, pending, expected=n)
                  for g, (runs, n) in trials.items()}
    paths = {g: runs[0].weights_path for g, runs in space.items()}
    seeds = [run for sel in selections.values() if sel.winner is not None
             for run in seed_runs(exp, sel.winner.spec, paths[sel.group])]
    seed_records = load_records(store, [r.key for r in seeds if r.key not in by_key])
    seed_status = []
    for run in seeds:
        if run.key in by_key:
            reused = by_key[run.key]
            seed_status.append(RunStatus(run, reused.record, reused.state, reused.stale,
                                         will_run=False, reused=True))
        else:
            seed_status.append(run_status(run, seed_records.get(run.key), fresh, **opts))
    warnings += [f"data of {name} not checked for changes: {why}"
                 for name, why in fresh.unchecked.items()]
    warnings += [f"{regime} on {name} not planned: {why}"
                 for (name, regime), why in not_applicable(exp).items()]
    return Plan(exp, grid_status, seed_status, selections, warnings,
                {g: n for g, (_, n) in trials.items()},
                {g: space_values(runs) for g, runs in space.items()})


def _check_models(exp: Experiment) -> None:
    """Every model is registered and of the experiment's datasets' task; else an error naming
    the file and the model (before anything runs)."""
    from ..catalog import UnknownDatasetError, get_card
    from ..models.registry import get_spec

    tasks = {}
    for ds in exp.datasets:
        try:
            tasks[ds.name] = str(get_card(ds.name).task)
        except UnknownDatasetError:
            tasks[ds.name] = str(dataset_card(ds.name, ds.root or exp.data_root,
                                              exp.source).task)
    for model in exp.models:
        try:
            spec = get_spec(model.name)
        except Exception as exc:  # noqa: BLE001 - unknown name or a family that cannot resolve
            raise ExperimentError("model not in the registry", where=exp.path or exp.name,
                                  value=model.name,
                                  fix=f"{exc}; list models with `marsbench models list`"
                                  ) from None
        wrong = sorted(ds for ds, task in tasks.items() if task != str(spec.task))
        if wrong:
            raise ExperimentError(
                f"model {model.name!r} is a {spec.task} model but {', '.join(wrong)} "
                f"{'is' if len(wrong) == 1 else 'are'} not {spec.task} datasets",
                where=exp.path or exp.name, value=model.name,
                fix="put each task in its own experiment file")
