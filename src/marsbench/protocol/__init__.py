"""The Mars-Bench protocol: experiment files, grid search on validation loss, seeds, sweeps.

``load_experiment`` reads an experiment file, ``make_plan`` turns it into the runs of its two
stages (grid at one seed, then the selected configuration at every seed) checked against a
results store, and ``run_sweep`` executes what is missing on a local, process-pool or Ray
executor. See docs/protocol.md.
"""

from __future__ import annotations

from .executors import (
    EXECUTORS,
    Executor,
    LocalExecutor,
    ProcessExecutor,
    RayExecutor,
    RunTask,
    execute,
    make_executor,
)
from .experiment import (
    PAPER_GRID,
    PAPER_SEEDS,
    DatasetEntry,
    Experiment,
    ExperimentError,
    ModelEntry,
    SelectionRule,
    find_experiment,
    list_experiments,
    load_experiment,
    parse_experiment,
)
from .plan import (
    Group,
    Plan,
    PlannedRun,
    RunStatus,
    Selection,
    data_fingerprint,
    final_keys,
    final_runs,
    grid_keys,
    grid_runs,
    make_plan,
    select,
    selection_value,
)
from .selections import read_selections, selected_final_keys, write_selections
from .sweep import SweepEvent, SweepInterrupted, SweepProgress, SweepSummary, run_sweep

__all__ = [
    "EXECUTORS", "PAPER_GRID", "PAPER_SEEDS", "DatasetEntry", "Executor", "Experiment",
    "ExperimentError", "Group", "LocalExecutor", "ModelEntry", "Plan", "PlannedRun",
    "ProcessExecutor", "RayExecutor", "RunStatus", "RunTask", "Selection", "SelectionRule",
    "SweepEvent", "SweepInterrupted", "SweepProgress", "SweepSummary", "data_fingerprint",
    "execute", "final_keys", "final_runs", "find_experiment", "grid_keys", "grid_runs",
    "list_experiments", "load_experiment", "make_executor", "make_plan", "parse_experiment",
    "read_selections", "run_sweep", "select", "selected_final_keys", "selection_value",
    "write_selections",
]
