"""How the search stage explores a group's space: every point, n seeded draws, or Optuna TPE.

The space of a group is its grid (the experiment's ``grid``, the loss axis resolved for the
group's dataset, see `plan.loss_values`): ``search: grid`` trains every point (the paper's
protocol, the default); ``random:<n>`` trains n distinct points drawn with a RNG seeded by
``grid_seed`` (the same draws for every group of the same space); ``tpe:<n>`` asks Optuna's
`TPESampler` (seeded with ``grid_seed``; its first ``min(10, n // 4)`` (at least 1) points are
random) for n distinct points, one at a time, each told the selection metric of the run before
(a point it asks again is told the same value and not counted). Selection then picks among the trials exactly as among the
grid points (`plan.select_group`).

TPE is resumable without a study file: the sampler is deterministic given its seed and the values
told, so replaying the trials whose records are in the store re-creates the study and asks the
next point (`TpeGroup`). Every trial is written to the table ``search_trials`` of the store
(`write_trials`, `read_trials`): number, parameters, value, state.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ..errors import OptionError
from ..runs.record import RunRecord, utc_now
from ..runs.store import ResultsStore
from ..vocab import SEARCH_KINDS
from .tables import SideTable

if TYPE_CHECKING:
    import pandas as pd

    from .experiment import Experiment
    from .plan import Group, PlannedRun

TRIAL_COLUMNS = ("experiment", "dataset", "variant", "model", "weights", "regime", "search",
                 "number", "spec_key", "params", "value", "state", "updated_at")
_SCHEMA = """
CREATE TABLE IF NOT EXISTS search_trials (
    experiment TEXT NOT NULL, dataset TEXT NOT NULL, variant TEXT NOT NULL, model TEXT NOT NULL,
    weights TEXT NOT NULL, regime TEXT NOT NULL, search TEXT NOT NULL, number INTEGER NOT NULL,
    spec_key TEXT NOT NULL, params TEXT NOT NULL, value REAL, state TEXT NOT NULL,
    updated_at TEXT NOT NULL,
    PRIMARY KEY (experiment, dataset, variant, model, weights, regime, search, number)
)
"""
TABLE = SideTable("search_trials", TRIAL_COLUMNS, _SCHEMA,
                  order="experiment, dataset, variant, model, regime, search, number")
ASK_LIMIT = 50  # TPE asks per wanted trial before giving up on new points (it repeats itself)


@dataclass(frozen=True)
class Search:
    kind: str = "grid"
    n: int | None = None

    def __str__(self) -> str:
        return self.kind if self.n is None else f"{self.kind}:{self.n}"


def parse_search(text: Any, where: str = "search") -> Search:
    """``grid``, ``random:<n>`` or ``tpe:<n>`` (n >= 1); anything else is one `OptionError`."""
    fix = "write grid, random:<n> or tpe:<n> with n >= 1 (e.g. random:20)"
    raw = str(text).strip().lower() if isinstance(text, str) else None
    if raw is None:
        raise OptionError("search must be text", where=where, value=text, fix=fix)
    kind, _, count = raw.partition(":")
    if kind not in SEARCH_KINDS:
        raise OptionError("unknown search", where=where, value=text, fix=fix)
    if kind == "grid":
        if count:
            raise OptionError("grid search takes no count", where=where, value=text,
                              fix="write grid (every point), or random:<n> / tpe:<n>")
        return Search()
    if not count.isdigit() or int(count) < 1:
        raise OptionError(f"{kind} search needs a number of trials n >= 1", where=where,
                          value=text, fix=fix)
    return Search(kind, int(count))


def random_draw(size: int, n: int, seed: int) -> list[int]:
    """``min(n, size)`` distinct indices of a space of ``size`` points, in grid order."""
    import numpy as np

    if n >= size:
        return list(range(size))
    return sorted(int(i) for i in np.random.default_rng(seed).choice(size, n, replace=False))


def params_of(run: PlannedRun, space: Mapping[str, Sequence[Any]]) -> dict[str, Any]:
    """The searched fields of a trial (those with more than one value in the space), as the
    grid writes them."""
    point = dict(run.point)
    return {name: point[name] for name, values in space.items() if len(values) > 1}


def space_values(space: Sequence[PlannedRun]) -> dict[str, list[Any]]:
    """Each field's values over a group's space, in grid order."""
    fields: dict[str, list[Any]] = {}
    for run in space:
        for name, value in run.point:
            if value not in fields.setdefault(name, []):
                fields[name].append(value)
    return fields


class TpeGroup:
    """One group's TPE study, replayed from the store's records and continued from there.

    ``space`` is the group's runs in grid order (each with its grid ``point``). `advance` tells the study every trial
    whose record is known and asks the next, until a trial has no usable record yet (it is to
    run) or ``n`` distinct trials are done.
    """

    def __init__(self, exp: Experiment, space: Sequence[PlannedRun], n: int) -> None:
        try:
            import optuna
        except ImportError:
            raise OptionError("search tpe needs Optuna", where="search", value=f"tpe:{n}",
                              fix="pip install 'marsbench[search]'") from None
        optuna.logging.set_verbosity(optuna.logging.WARNING)
        self.exp, self.n = exp, min(n, len(space))
        self.by_config = {_config_key(dict(run.point)): run for run in space}
        fields = space_values(space)
        self.fixed = {k: v[0] for k, v in fields.items() if len(v) == 1}
        self.distributions = {k: optuna.distributions.CategoricalDistribution(v)
                              for k, v in fields.items() if len(v) > 1}
        sampler = optuna.samplers.TPESampler(seed=exp.grid_seed,
                                             n_startup_trials=max(1, min(10, self.n // 4)))
        direction = "minimize" if exp.selection.mode == "min" else "maximize"
        self.study = optuna.create_study(sampler=sampler, direction=direction)
        self.trials: list[PlannedRun] = []  # distinct points, in the order asked
        self.values: dict[str, float | None] = {}
        self.asked: tuple[Any, PlannedRun] | None = None  # asked, waiting for its record
        self.asks = 0

    @property
    def complete(self) -> bool:
        return self.asked is None and (len(self.trials) >= self.n
                                       or self.asks >= ASK_LIMIT * self.n)

    def advance(self, records: Mapping[str, RunRecord], pending: Iterable[str] = ()
                ) -> list[PlannedRun]:
        """Tell what is known, ask what is next; returns the trials so far (the last one may
        be waiting for its run)."""
        from .plan import selection_value

        pending = set(pending)
        rule = self.exp.selection
        while True:
            if self.asked is not None:
                trial, run = self.asked
                record = records.get(run.key)
                if record is None or run.key in pending:
                    return list(self.trials)
                value = selection_value(record, rule.metric)
                self._tell(trial, value)
                self.values[run.key] = value
                self.asked = None
            if self.complete:
                return list(self.trials)
            trial = self.study.ask(self.distributions)
            self.asks += 1
            run = self.by_config[_config_key(self.fixed | trial.params)]
            if run.key in self.values:  # a point tried before: the same value again
                self._tell(trial, self.values[run.key])
                continue
            self.trials.append(run)
            self.asked = (trial, run)

    def _tell(self, trial, value: float | None) -> None:
        from optuna.trial import TrialState

        if value is None:
            self.study.tell(trial, state=TrialState.FAIL)
        else:
            self.study.tell(trial, value)


def _config_key(config: Mapping[str, Any]) -> str:
    return json.dumps(sorted(config.items()), default=str)


# -- the trials table -------------------------------------------------------------------------------

def write_trials(store: ResultsStore, exp: Experiment, group: Group,
                 trials: Sequence[PlannedRun], records: Mapping[str, RunRecord],
                 space: Mapping[str, Sequence[Any]]) -> int:
    """Record ``group``'s trials (number, parameters, value, state) in ``search_trials``."""
    from .plan import selection_value

    rows = []
    for number, run in enumerate(trials):
        record = records.get(run.key)
        value = None if record is None else selection_value(record, exp.selection.metric)
        state = "running" if record is None else ("complete" if record.ok else "failed")
        rows.append((exp.name, group.dataset, group.variant, group.label, group.weights,
                     group.regime, exp.search, number, run.key,
                     json.dumps(params_of(run, space), sort_keys=True, default=str), value,
                     state, utc_now()))
    return TABLE.replace(store, rows)


def read_trials(store: ResultsStore | str, experiment: str | None = None) -> pd.DataFrame:
    """The ``search_trials`` table (columns `TRIAL_COLUMNS`), optionally of one experiment."""
    return TABLE.read(store, experiment)
