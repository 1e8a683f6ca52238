"""The audit trail of selection: which grid configuration won for each group, in the store file.

A ``selections`` table beside the store's ``runs`` (same SQLite file, so one file holds the
whole study): one row per (experiment, group), rewritten when a sweep decides it again (e.g.
after ``--retry-failed`` changed the grid). The grid runs themselves stay in ``runs`` with their
validation losses, so every decision can be checked against its candidates.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING

from ..runs.record import utc_now
from ..runs.store import ResultsStore
from .experiment import Experiment
from .plan import Selection, seed_runs
from .tables import SideTable

if TYPE_CHECKING:
    import pandas as pd

SELECTION_COLUMNS = ("experiment", "experiment_hash", "dataset", "variant", "model", "weights",
                     "regime", "metric", "mode", "value", "winner_key", "winner_config",
                     "candidates", "failed", "decided_at", "final_keys")
_SCHEMA = """
CREATE TABLE IF NOT EXISTS selections (
    experiment TEXT NOT NULL, experiment_hash TEXT NOT NULL,
    dataset TEXT NOT NULL, variant TEXT NOT NULL, model TEXT NOT NULL, weights TEXT NOT NULL,
    regime TEXT NOT NULL, metric TEXT NOT NULL, mode TEXT NOT NULL, value REAL,
    winner_key TEXT, winner_config TEXT, candidates INTEGER NOT NULL, failed INTEGER NOT NULL,
    decided_at TEXT NOT NULL, final_keys TEXT,
    PRIMARY KEY (experiment, dataset, variant, model, weights, regime)
)
"""
TABLE = SideTable("selections", SELECTION_COLUMNS, _SCHEMA,
                  order="experiment, dataset, variant, model, regime",
                  added=(("final_keys", "TEXT"),))
CONFIG_FIELDS = ("lr", "batch_size", "optimizer", "weight_decay", "scheduler", "max_epochs",
                 "patience", "loss", "augment")


def write_selections(store: ResultsStore, exp: Experiment,
                     selections: Iterable[Selection]) -> int:
    """Record decided selections (one transaction); returns the number of rows written."""
    rows = []
    for sel in selections:
        if not sel.decided:
            continue
        g, w = sel.group, sel.winner
        config = finals = None
        if w is not None:
            config = json.dumps({f: getattr(w.spec, f) for f in CONFIG_FIELDS}, sort_keys=True)
            # the winner's seed runs: what a report of this experiment reads from the store
            finals = json.dumps([run.key for run in seed_runs(exp, w.spec, None)])
        rows.append((exp.name, exp.identity_hash(), g.dataset, g.variant, g.label, g.weights,
                     g.regime, sel.metric, exp.selection.mode, sel.value,
                     None if w is None else w.spec_key, config, sel.candidates, sel.failed,
                     utc_now(), finals))
    return TABLE.replace(store, rows)


def read_selections(store: ResultsStore | str | Path,
                    experiment: str | None = None) -> pd.DataFrame:
    """The selections table (columns `SELECTION_COLUMNS`), optionally of one experiment.

    ``winner_key`` is None where every grid run of the group failed; ``final_keys`` is the JSON
    list of the winner's seed-run keys (None in stores written before it was recorded)."""
    return TABLE.read(store, experiment)


def selected_final_keys(store: ResultsStore, experiments: Iterable[str] | None = None
                        ) -> tuple[list[str], list[str], list[str]]:
    """The seed-run keys of every selected configuration recorded in ``store`` (of the named
    ``experiments`` only, if given): ``(keys, experiments found, experiments whose selections
    predate the recorded keys)``. What ``marsbench report --store`` aggregates."""
    table = read_selections(store)
    if experiments is not None:
        table = table[table["experiment"].isin(list(experiments))]
    keys, old = [], set()
    for row in table.itertuples(index=False):
        if row.winner_key is None:
            continue
        if row.final_keys is None:
            old.add(row.experiment)
            continue
        keys += json.loads(row.final_keys)
    return list(dict.fromkeys(keys)), sorted(set(table["experiment"])), sorted(old)
