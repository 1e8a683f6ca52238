"""`run_sweep`: execute an experiment's plan on an executor, resumably.

The driver plans (`make_plan`), submits every grid run that has no record, and writes each
record to the store the moment it comes back (one atomic SQLite transaction each), so a sweep
stopped at any moment — Ctrl-C, kill -9, a lost machine — loses at most the runs in flight and
is continued by running it again. As soon as all grid runs of a group have records, the group
is decided (`select_group`), the decision goes to the ``selections`` table, and its seeds runs
are submitted; other groups keep running meanwhile.

A run that raises is recorded as failed (with its traceback) and the sweep goes on;
``retry_failed`` runs failed records again. Records made by other code or data are reported
(`SweepSummary.stale`) and kept unless ``rerun_stale``.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from ..runs.record import RunRecord
from ..runs.store import ResultsStore, StaleRun
from .executors import Executor, RunTask, make_executor
from .experiment import Experiment
from .plan import (
    Freshness,
    Group,
    Plan,
    PlannedRun,
    RunStatus,
    Selection,
    _by_group,
    make_plan,
    run_status,
    seed_runs,
    select_group,
)
from .selections import write_selections


@dataclass
class SweepProgress:
    """Counts of this sweep so far (``to_run`` grows as groups are decided)."""

    to_run: int = 0
    finished: int = 0
    ok: int = 0
    failed: int = 0
    running: int = 0
    skipped: int = 0  # planned runs already done in the store

    @property
    def remaining(self) -> int:
        return self.to_run - self.finished - self.running


@dataclass
class SweepEvent:
    kind: str  # "started" | "submitted" | "finished" | "selected"
    progress: SweepProgress
    run: PlannedRun | None = None
    record: RunRecord | None = None
    selection: Selection | None = None


@dataclass
class SweepSummary:
    experiment: str
    store: str
    executor: str
    progress: SweepProgress
    failures: list[RunRecord] = field(default_factory=list)
    stale_kept: list[StaleRun] = field(default_factory=list)
    stale_rerun: list[StaleRun] = field(default_factory=list)
    skipped_failed: int = 0  # failed records kept (no --retry-failed)
    selections: dict[Group, Selection] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)
    interrupted: bool = False

    @property
    def no_winner(self) -> list[Group]:
        return [g for g, s in self.selections.items() if s.decided and s.winner is None]

    @property
    def undecided(self) -> list[Group]:
        return [g for g, s in self.selections.items() if not s.decided]


class SweepInterrupted(KeyboardInterrupt):
    """Ctrl-C during a sweep; ``summary`` says what was finished (and is in the store)."""

    def __init__(self, summary: SweepSummary) -> None:
        super().__init__("sweep interrupted")
        self.summary = summary


def run_sweep(
    exp: Experiment,
    store: ResultsStore | str | Path,
    *,
    executor: str | Executor = "local",
    workers: int | None = None,
    retry_failed: bool = False,
    rerun_stale: bool = False,
    check_data: bool = True,
    device: str | None = None,
    out_dir: str | Path | None = None,
    gpus_per_run: float = 0.0,
    cpus_per_run: float = 1.0,
    ray_address: str | None = None,
    threads: int | None = None,
    on_event: Callable[[SweepEvent], None] | None = None,
    poll_s: float = 0.5,
) -> SweepSummary:
    """Run every planned run of ``exp`` that the store lacks; return what happened.

    ``executor`` is ``local``, ``process``, ``ray`` or an `Executor` (left open for the
    caller). Raises `SweepInterrupted` on Ctrl-C after cancelling the runs in flight.
    """
    store = store if isinstance(store, ResultsStore) else ResultsStore(store)
    fresh = Freshness(exp, check_data=check_data)
    plan = make_plan(exp, store, retry_failed=retry_failed, rerun_stale=rerun_stale,
                     freshness=fresh)
    driver = _Driver(exp, store, plan, fresh, retry_failed=retry_failed,
                     rerun_stale=rerun_stale, device=device,
                     out_dir=None if out_dir is None else str(out_dir), on_event=on_event)
    own = not isinstance(executor, Executor)
    ex = make_executor(executor, workers, gpus_per_run=gpus_per_run, cpus_per_run=cpus_per_run,
                       ray_address=ray_address, threads=threads) if own else executor
    driver.summary.executor = ex.name
    driver._emit(SweepEvent("started", driver.progress))
    try:
        driver.loop(ex, poll_s)
    except BaseException as exc:
        if own:
            ex.close(cancel=True)
        if isinstance(exc, KeyboardInterrupt):
            driver.summary.interrupted = True
            raise SweepInterrupted(driver.summary) from None
        raise
    if own:
        ex.close()
    return driver.summary


class _Driver:
    def __init__(self, exp: Experiment, store: ResultsStore, plan: Plan, fresh: Freshness, *,
                 retry_failed: bool, rerun_stale: bool, device: str | None,
                 out_dir: str | None, on_event: Callable[[SweepEvent], None] | None) -> None:
        self.exp, self.store, self.fresh = exp, store, fresh
        self.opts = dict(retry_failed=retry_failed, rerun_stale=rerun_stale)
        self.device, self.out_dir, self.on_event = device, out_dir, on_event
        self.progress = SweepProgress()
        self.summary = SweepSummary(exp.name, str(store.path), "", self.progress,
                                    selections=dict(plan.selections),
                                    warnings=list(plan.warnings))
        self.queue: deque[PlannedRun] = deque()
        self.queued: set[str] = set()
        self.rerun: set[str] = set()  # keys whose stored record is deliberately replaced
        self.running: dict[str, PlannedRun] = {}
        self.grid = _by_group(s.run for s in plan.grid)
        self.grid_keys = {s.run.key for s in plan.grid}
        self.records = {s.run.key: s.record for s in plan.grid if s.record is not None}
        self.waiting: dict[Group, set[str]] = {g: set() for g in self.grid}
        for status in plan.grid:
            if self._enqueue(status):
                self.waiting[status.run.group].add(status.run.key)
        decided = [s for s in plan.selections.values() if s.decided]
        write_selections(store, exp, decided)
        for status in plan.seeds:
            if not status.reused:
                self._enqueue(status)

    def _enqueue(self, status: RunStatus) -> bool:
        """Queue a run that must execute; count the others. True if queued."""
        key = status.run.key
        if status.stale is not None:
            (self.summary.stale_rerun if status.will_run else self.summary.stale_kept).append(
                status.stale)
        if not status.will_run:
            if status.state == "failed":
                self.summary.skipped_failed += 1
            else:
                self.progress.skipped += 1
            return False
        if key in self.queued:
            return False
        self.queue.append(status.run)
        self.queued.add(key)
        if status.record is not None:
            self.rerun.add(key)
        self.progress.to_run += 1
        return True

    def loop(self, ex: Executor, poll_s: float) -> None:
        while self.queue or ex.in_flight:
            while self.queue and ex.in_flight < ex.capacity:
                run = self.queue.popleft()
                ex.submit(RunTask(run.spec, run.weights_path, self.device, self.out_dir,
                                  self.exp.subset_seed))
                self.running[run.key] = run
                self.progress.running = len(self.running)
                self._emit(SweepEvent("submitted", self.progress, run=run))
            for task, record in ex.wait(timeout=poll_s):
                self._finished(self.running.pop(task.spec.key), record)

    def _finished(self, run: PlannedRun, record: RunRecord) -> None:
        policy = "replace" if run.key in self.rerun else "replace_failed"
        self.store.put(record, on_duplicate=policy)
        p = self.progress
        p.finished += 1
        p.running = len(self.running)
        if record.ok:
            p.ok += 1
        else:
            p.failed += 1
            self.summary.failures.append(record)
        self._emit(SweepEvent("finished", p, run=run, record=record))
        if run.stage == "grid":
            # read back: a concurrent sweep's ok record wins over this one's failure
            self.records[run.key] = self.store.get(run.key) or record
            waiting = self.waiting[run.group]
            waiting.discard(run.key)
            if not waiting:
                self._decide(run.group)

    def _decide(self, group: Group) -> None:
        runs = self.grid[group]
        sel = select_group(self.exp, group, runs, self.records)
        self.summary.selections[group] = sel
        write_selections(self.store, self.exp, [sel])
        self._emit(SweepEvent("selected", self.progress, selection=sel))
        if sel.winner is None:
            return
        for run in seed_runs(self.exp, sel.winner.spec, runs[0].weights_path):
            if run.key in self.grid_keys:
                continue  # the winning grid run itself: reused
            self._enqueue(run_status(run, self.store.get(run.key), self.fresh, **self.opts))

    def _emit(self, event: SweepEvent) -> None:
        if self.on_event is not None:
            self.on_event(event)
