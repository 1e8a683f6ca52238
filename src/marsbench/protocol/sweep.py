"""`run_sweep`: execute an experiment's plan on an executor, resumably.

The driver plans (`make_plan`), submits every grid run that has no record, and writes each
record to the store the moment it comes back (one atomic SQLite transaction each), so a sweep
stopped at any moment — Ctrl-C, kill -9, a lost machine — loses at most the runs in flight and
is continued by running it again. As soon as all grid runs of a group have records, the group
is decided (`select_group`), the decision goes to the ``selections`` table, and its seeds runs
are submitted; other groups keep running meanwhile. Under ``search: tpe:<n>`` a group's next
trial is asked when its previous one comes back (groups still run side by side), and every
search other than ``grid`` writes its trials to the ``search_trials`` table as they finish.

A run that raises is recorded as failed (with its traceback) and the sweep goes on;
``retry_failed`` runs failed records again. Records made by other code or data are reported
(`SweepSummary.stale`) and kept unless ``rerun_stale``.

Several sweeps can share one store (two terminals, two jobs of a scheduler): before submitting
a run the driver claims its key in the store (`ResultsStore.claim`); a key another live sweep
holds is set aside and watched, and a run whose record appeared since this sweep planned it is
taken as done. When its own work is done the sweep waits for the set-aside runs (or runs them
itself if their holder died without a record), so every sweep ends with every run done, each run
executed once. A background thread refreshes the heartbeat of this sweep's claims; claims are
released when a run's record is stored and on any exit, and a claim left by a killed sweep is
taken over (its process is gone, or its heartbeat stopped).
"""

from __future__ import annotations

import signal
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import MarsbenchError
from ..runs.record import RunRecord
from ..runs.store import CLAIM_HEARTBEAT_S, ClaimOwner, ResultsStore, StaleRun
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
from .search import TpeGroup, parse_search, write_trials
from .selections import write_selections


class SweepEnvironmentError(MarsbenchError):
    """A run met bad input or a missing piece of the environment (data, weights): the sweep
    stops at once and stores nothing for it -- every other run would fail the same way."""


@dataclass
class SweepProgress:
    """Counts of this sweep so far. ``to_run`` is known from the start (the seeds runs of
    groups not decided yet are counted in advance) and only shrinks (runs found done, done by
    another sweep, or groups without a winner)."""

    to_run: int = 0
    finished: int = 0
    ok: int = 0
    failed: int = 0
    running: int = 0
    skipped: int = 0  # planned runs already done in the store
    elsewhere: int = 0  # runs a concurrent sweep on the same store did while this one ran
    waiting: int = 0  # runs another live sweep is running now (set aside, watched)

    @property
    def remaining(self) -> int:
        return self.to_run - self.finished - self.running


@dataclass
class SweepEvent:
    # "started" | "submitted" | "finished" | "selected" | "waiting" (another sweep runs it) |
    # "elsewhere" (another sweep finished it: ``record`` is its record)
    kind: str
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
    elsewhere: list[RunRecord] = field(default_factory=list)  # done by a concurrent sweep
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
    owner = ClaimOwner.current()
    fresh = Freshness(exp, check_data=check_data)
    studies: dict[Group, TpeGroup] = {}
    plan = make_plan(exp, store, retry_failed=retry_failed, rerun_stale=rerun_stale,
                     freshness=fresh, studies=studies)
    driver = _Driver(exp, store, plan, fresh, retry_failed=retry_failed,
                     rerun_stale=rerun_stale, device=device,
                     out_dir=None if out_dir is None else str(out_dir), on_event=on_event,
                     owner=owner, studies=studies)
    own = not isinstance(executor, Executor)
    ex = make_executor(executor, workers, gpus_per_run=gpus_per_run, cpus_per_run=cpus_per_run,
                       ray_address=ray_address, threads=threads) if own else executor
    driver.summary.executor = ex.name
    driver._emit(SweepEvent("started", driver.progress))
    try:
        with _heartbeat(store, owner), _sigterm_interrupts():
            driver.loop(ex, poll_s)
    except BaseException as exc:
        if own:
            ex.close(cancel=True)
        _release_claims(store, owner)
        if isinstance(exc, KeyboardInterrupt):
            driver.summary.interrupted = True
            raise SweepInterrupted(driver.summary) from None
        raise
    if own:
        ex.close()
    _release_claims(store, owner)
    return driver.summary


@contextmanager
def _heartbeat(store: ResultsStore, owner: ClaimOwner,
               every_s: float = CLAIM_HEARTBEAT_S) -> Iterator[None]:
    """Refresh ``owner``'s claims from a thread, so a long run (even one that blocks the
    driver, as the local executor does) keeps its claims alive."""
    stop = threading.Event()

    def beat() -> None:
        while not stop.wait(every_s):
            try:
                store.heartbeat(owner)
            except Exception:  # noqa: BLE001 - a busy or full disk: try again next beat
                pass

    thread = threading.Thread(target=beat, name="marsbench-sweep-heartbeat", daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join(timeout=5)


@contextmanager
def _sigterm_interrupts() -> Iterator[None]:
    """SIGTERM (``kill``, a scheduler ending the job) stops the sweep as Ctrl-C does: workers
    are stopped, claims released, what finished is in the store. Main thread only."""
    if threading.current_thread() is not threading.main_thread() or not hasattr(signal, "SIGTERM"):
        yield
        return
    previous = signal.getsignal(signal.SIGTERM)
    if previous not in (signal.SIG_DFL, None):
        yield  # the application has its own handler: leave it alone
        return

    def interrupt(signum, frame):  # noqa: ARG001
        raise KeyboardInterrupt("SIGTERM")

    signal.signal(signal.SIGTERM, interrupt)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def _release_claims(store: ResultsStore, owner: ClaimOwner) -> None:
    try:
        store.release_all(owner)
    except Exception:  # noqa: BLE001 - left claims die with this process (dead pid)
        pass


class _Driver:
    def __init__(self, exp: Experiment, store: ResultsStore, plan: Plan, fresh: Freshness, *,
                 retry_failed: bool, rerun_stale: bool, device: str | None,
                 out_dir: str | None, on_event: Callable[[SweepEvent], None] | None,
                 owner: ClaimOwner | None = None,
                 studies: dict[Group, TpeGroup] | None = None) -> None:
        self.exp, self.store, self.fresh = exp, store, fresh
        self.studies = studies or {}  # tpe: each group's study, continued as trials finish
        self.searched = parse_search(exp.search).kind != "grid"  # trials go to search_trials
        self.spaces = plan.spaces
        self.owner = owner or ClaimOwner.current()
        # the stored record (as JSON) each queued run was planned against: a different one
        # found later was written by a concurrent sweep
        self.planned: dict[str, str | None] = {}
        self.deferred: dict[str, PlannedRun] = {}  # held by another live sweep
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
        for group in self.grid if self.searched else ():
            self._write_trials(group)
        for status in plan.seeds:
            if not status.reused:
                self._enqueue(status)
        # the seeds runs of groups still to decide count from the start (the counter's total
        # never grows); reserved per group, released as the group's runs are queued or found
        # done / without a winner
        per_group = (len(exp.seeds) - (exp.grid_seed in exp.seeds)
                     if "seeds" in exp.stages else 0)
        # (and the trials of a TPE study not asked yet)
        self.reserved: dict[Group, int] = {
            g: per_group + plan.trials.get(g, 0) - len(self.grid.get(g, ()))
            for g in plan.undecided}
        self.progress.to_run += sum(self.reserved.values())

    def _enqueue(self, status: RunStatus, group: Group | None = None) -> bool:
        """Queue a run that must execute; count the others. True if queued. A run of a
        ``group`` whose seeds were reserved takes one reserved count instead of a new one."""
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
        self.planned[key] = None if status.record is None else status.record.to_json()
        if status.record is not None:
            self.rerun.add(key)
        if group is not None and self.reserved.get(group, 0) > 0:
            self.reserved[group] -= 1
        else:
            self.progress.to_run += 1
        return True

    def loop(self, ex: Executor, poll_s: float) -> None:
        while self.queue or ex.in_flight or self.deferred:
            while self.queue and ex.in_flight < ex.capacity:
                run = self.queue.popleft()
                if not self._claim(run):
                    continue
                ex.submit(RunTask(run.spec, run.weights_path, self.device, self.out_dir))
                self.running[run.key] = run
                self.progress.running = len(self.running)
                self._emit(SweepEvent("submitted", self.progress, run=run))
            if self.deferred:
                self._check_deferred()
            if ex.in_flight:
                for task, record in ex.wait(timeout=poll_s):
                    self._finished(self.running.pop(task.spec.key), record)
            elif self.deferred and not self.queue:
                time.sleep(poll_s)  # only other sweeps' runs left: wait for them

    def _claim(self, run: PlannedRun) -> bool:
        """Claim ``run`` in the store; False if it is set aside or was done meanwhile."""
        if not self.store.claim(run.key, self.owner):
            self.deferred[run.key] = run
            self.progress.waiting = len(self.deferred)
            self._emit(SweepEvent("waiting", self.progress, run=run))
            return False
        current = self.store.get(run.key)
        if current is not None and current.to_json() != self.planned.get(run.key):
            self.store.release(run.key, self.owner)  # a concurrent sweep ran it already
            self._done_elsewhere(run, current)
            return False
        return True

    def _check_deferred(self) -> None:
        """Take set-aside runs that another sweep finished; requeue those it gave up."""
        # claims first, records second: a holder stores the record, then releases the claim
        held = {c.spec_key for c in self.store.claims(live_only=True)
                if c.owner != self.owner.id}
        records = {r.spec_key: r for r in self.store.records(spec_key=list(self.deferred))}
        for key, run in list(self.deferred.items()):
            current = records.get(key)
            if current is not None and current.to_json() != self.planned.get(key):
                del self.deferred[key]
                self._done_elsewhere(run, current)
            elif key not in held:
                del self.deferred[key]  # its holder ended without a record: run it here
                self.queue.appendleft(run)
        self.progress.waiting = len(self.deferred)

    def _done_elsewhere(self, run: PlannedRun, record: RunRecord) -> None:
        p = self.progress
        p.to_run -= 1
        p.elsewhere += 1
        self.summary.elsewhere.append(record)
        self._emit(SweepEvent("elsewhere", p, run=run, record=record))
        if run.stage == "grid":
            self._grid_done(run, record)

    def _finished(self, run: PlannedRun, record: RunRecord) -> None:
        problem = record.extra.get("environment_error") if not record.ok else None
        if problem:  # the same for every run that needs it: stop, store nothing for it
            self.store.release(run.key, self.owner)
            raise SweepEnvironmentError(
                f"{run.spec.describe()} cannot run", value=problem,
                fix=f"nothing was recorded for it ({self.progress.finished} run(s) finished "
                    "before are in the store); fix it and run the same command again")
        policy = "replace" if run.key in self.rerun else "replace_failed"
        self.store.put(record, on_duplicate=policy)
        self.store.release(run.key, self.owner)
        if record.ok and record.extra.get("predictions_error"):
            self.summary.warnings.append(
                f"{record.spec.describe()}: {record.extra['predictions_error']}")
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
            self._grid_done(run, self.store.get(run.key) or record)

    def _grid_done(self, run: PlannedRun, record: RunRecord) -> None:
        self.records[run.key] = record
        waiting = self.waiting[run.group]
        waiting.discard(run.key)
        if run.group in self.studies:
            self._ask(run.group)
        if self.searched:
            self._write_trials(run.group)
        if not waiting:
            self._decide(run.group)

    def _ask(self, group: Group) -> None:
        """Tell the group's TPE study what finished and queue the trial it asks next (trials
        whose record is already in the store are told at once, not run)."""
        study, waiting = self.studies[group], self.waiting[group]
        known = _Known(self.records, self.store)
        while not waiting:
            new = [r for r in study.advance(known, waiting) if r.key not in self.grid_keys]
            if not new:
                return  # complete
            for run in new:
                self.grid[group].append(run)
                self.grid_keys.add(run.key)
                status = run_status(run, self.store.get(run.key), self.fresh, **self.opts)
                if self._enqueue(status, group):
                    waiting.add(run.key)
                else:
                    self.records[run.key] = status.record

    def _write_trials(self, group: Group) -> None:
        write_trials(self.store, self.exp, group, self.grid[group], self.records,
                     self.spaces.get(group, {}))

    def _decide(self, group: Group) -> None:
        runs = self.grid[group]
        sel = select_group(self.exp, group, runs, self.records)
        self.summary.selections[group] = sel
        write_selections(self.store, self.exp, [sel])
        if sel.winner is not None:
            for run in seed_runs(self.exp, sel.winner.spec, runs[0].weights_path):
                if run.key in self.grid_keys:
                    continue  # the winning grid run itself: reused
                self._enqueue(run_status(run, self.store.get(run.key), self.fresh,
                                         **self.opts), group)
        # reserved runs not queued: done already, reused, or no winner
        self.progress.to_run -= self.reserved.pop(group, 0)
        self._emit(SweepEvent("selected", self.progress, selection=sel))

    def _emit(self, event: SweepEvent) -> None:
        if self.on_event is not None:
            self.on_event(event)


class _Known:
    """The records a TPE study is told: this sweep's, else the store's."""

    def __init__(self, records: dict[str, RunRecord], store: ResultsStore) -> None:
        self.records, self.store = records, store

    def get(self, key: str) -> RunRecord | None:
        return self.records.get(key) or self.store.get(key)
