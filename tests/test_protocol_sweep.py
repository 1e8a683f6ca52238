"""Sweeps: the driver's logic (fast, with a scripted executor) and real runs on the process pool
and a real local Ray runtime, kill -9 and resume, concurrent sweeps on one store."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from marsbench.protocol import (
    Executor,
    SweepInterrupted,
    final_keys,
    grid_keys,
    grid_runs,
    load_experiment,
    parse_experiment,
    read_selections,
    run_sweep,
)
from marsbench.protocol.plan import data_fingerprint
from marsbench.runs import ResultsStore, RunRecord

PYTHON = sys.executable


# -- the driver, with a scripted executor ---------------------------------------------------------

class Scripted(Executor):
    """Returns made-up records at once: val loss from a table keyed by (dataset, lr, seed)."""

    name, capacity = "scripted", 3

    def __init__(self, losses, fail=(), interrupt_after: int | None = None):
        self.losses, self.fail, self.interrupt_after = losses, set(fail), interrupt_after
        self.pending, self.submitted = [], []

    def submit(self, task):
        self.pending.append(task)
        self.submitted.append(task.spec)

    def wait(self, timeout=None):
        if self.interrupt_after is not None and len(self.submitted) > self.interrupt_after:
            raise KeyboardInterrupt
        task = self.pending.pop(0)
        s = task.spec
        if (s.dataset, s.lr) in self.fail:
            return [(task, RunRecord.failure(s, RuntimeError(f"scripted failure {s.lr}")))]
        loss = self.loss_of(s)
        return [(task, RunRecord.success(s, val_loss=loss, metrics={"val": {"loss": loss},
                                                                     "test": {"f1": 1 - loss}}))]

    def loss_of(self, s) -> float:
        return self.losses[(s.dataset, s.lr)] + 0.001 * s.seed

    @property
    def in_flight(self):
        return len(self.pending)


FAKE = """
name: fake
datasets: [mb-frost_cls, mb-landmark_cls]
models: [efficientnet_lite0]
regimes: [feature_extraction]
grid_defaults: single
grid: {lr: [1.0e-3, 1.0e-2, 1.0e-1]}
seeds: [0, 1, 2, 3]
"""
LOSSES = {("mb-frost_cls", 1e-3): 0.5, ("mb-frost_cls", 1e-2): 0.3, ("mb-frost_cls", 1e-1): 0.9,
          ("mb-landmark_cls", 1e-3): 0.2, ("mb-landmark_cls", 1e-2): 0.4,
          ("mb-landmark_cls", 1e-1): 0.8}


def test_driver_selects_then_runs_seeds_reusing_the_grid_run(tmp_path):
    exp = parse_experiment(FAKE)
    store = ResultsStore(tmp_path / "s.sqlite")
    ex = Scripted(LOSSES)
    summary = run_sweep(exp, store, executor=ex, check_data=False)
    # 6 grid runs, then 3 new seeds per group (seed 0 is the winning grid run)
    assert len(ex.submitted) == 6 + 2 * 3
    assert summary.progress.ok == 12 and summary.progress.failed == 0
    winners = {s.group.dataset: s.winner.spec.lr for s in summary.selections.values()}
    assert winners == {"mb-frost_cls": 1e-2, "mb-landmark_cls": 1e-3}
    seeds_runs = ex.submitted[6:]
    assert sorted((s.dataset, s.lr, s.seed) for s in seeds_runs) == sorted(
        (d, lr, seed) for d, lr in winners.items() for seed in (1, 2, 3))
    keys = set(final_keys(exp, store))
    assert len(keys) == 8 and keys <= set(store.keys())
    assert set(store.keys()) == keys | set(grid_keys(exp))
    table = read_selections(store, "fake")
    assert dict(zip(table["dataset"], table["value"])) == {"mb-frost_cls": 0.3,
                                                           "mb-landmark_cls": 0.2}
    # a second sweep finds everything done
    again = Scripted(LOSSES)
    summary = run_sweep(exp, store, executor=again, check_data=False)
    assert again.submitted == [] and summary.progress.skipped == 14 - 2  # reused not counted


def test_failures_are_recorded_and_retried_on_request(tmp_path):
    exp = parse_experiment(FAKE)
    store = ResultsStore(tmp_path / "s.sqlite")
    # every grid point of frost fails: no winner, no seeds for that group; landmark goes on
    fail = {("mb-frost_cls", lr) for lr in (1e-3, 1e-2, 1e-1)}
    summary = run_sweep(exp, store, executor=Scripted(LOSSES, fail), check_data=False)
    assert summary.progress.failed == 3 and summary.progress.ok == 3 + 3
    assert [g.dataset for g in summary.no_winner] == ["mb-frost_cls"]
    failed = store.records(status="failed")
    assert len(failed) == 3 and all("scripted failure" in r.error for r in failed)
    # default: failed runs are kept, not rerun
    ex = Scripted(LOSSES)
    summary = run_sweep(exp, store, executor=ex, check_data=False)
    assert ex.submitted == [] and summary.skipped_failed == 3
    # --retry-failed: rerun them (now succeeding), then the group's seeds run
    ex = Scripted(LOSSES)
    summary = run_sweep(exp, store, executor=ex, retry_failed=True, check_data=False)
    assert len(ex.submitted) == 3 + 3 and summary.progress.failed == 0
    assert not store.records(status="failed")
    assert all(len(store.history(r.key)) == 1 for r in grid_runs(exp)
               if r.spec.dataset == "mb-frost_cls")  # the failure kept as superseded


def test_stale_records_are_kept_by_default_and_rerun_on_request(tmp_path):
    exp = parse_experiment(FAKE)
    store = ResultsStore(tmp_path / "s.sqlite")
    run_sweep(exp, store, executor=Scripted(LOSSES), check_data=False)
    old = store.get(grid_keys(exp)[0])
    old.code_fingerprint = "made-by-older-code"
    store.put(old, on_duplicate="replace")
    ex = Scripted(LOSSES)
    summary = run_sweep(exp, store, executor=ex, check_data=False)
    assert ex.submitted == [] and [s.record.spec_key for s in summary.stale_kept] == [old.spec_key]
    ex = Scripted(LOSSES)
    summary = run_sweep(exp, store, executor=ex, rerun_stale=True, check_data=False)
    assert [s.key for s in ex.submitted] == [old.spec_key]
    assert store.get(old.spec_key).code_fingerprint != "made-by-older-code"


def test_interrupt_keeps_what_finished(tmp_path):
    exp = parse_experiment(FAKE)
    store = ResultsStore(tmp_path / "s.sqlite")
    with pytest.raises(SweepInterrupted) as info:
        run_sweep(exp, store, executor=Scripted(LOSSES, interrupt_after=4), check_data=False)
    done = info.value.summary.progress.finished
    assert done >= 1 and len(store) == done and info.value.summary.interrupted
    summary = run_sweep(exp, store, executor=Scripted(LOSSES), check_data=False)
    assert summary.progress.finished == 12 - done and len(store) == 12


# -- real runs ------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def data_root(tmp_path_factory) -> Path:
    from marsbench.sources.synth import generate_suite

    root = tmp_path_factory.mktemp("protocol_data")
    generate_suite(root, "folder", names=["mb-frost_cls", "mb-atmospheric_dust_cls_edr"])
    return root


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory) -> Path:
    """A checkpoint of timm's tiny test_resnet (random init: nothing to download), so the
    second model can run the pretrained regime offline."""
    import torch

    from marsbench.models.classifier import build_classifier

    torch.manual_seed(0)
    model = build_classifier("timm:test_resnet", 2, "scratch")
    path = tmp_path_factory.mktemp("ckpt") / "test_resnet.pth"
    torch.save(model.state_dict(), path)
    return path


def small_experiment(tmp_path: Path, data_root: Path, checkpoint: Path) -> Path:
    """2 datasets x 2 models x 2 regimes x a 2-point grid x 3 seeds."""
    path = tmp_path / "small.yaml"
    path.write_text(f"""
name: small
datasets: [mb-frost_cls, mb-atmospheric_dust_cls_edr]
models:
  - efficientnet_lite0
  - {{name: "timm:test_resnet", weights: {checkpoint}}}
regimes: [scratch, feature_extraction]
grid_defaults: single
grid: {{lr: [1.0e-3, 1.0e-2], batch_size: [8], max_epochs: [2], patience: [2]}}
options: {{input_size: 32}}
data: {{root: {data_root}}}
seeds: [0, 1, 2]
""")
    return path


COMPARED = ("status", "metrics", "val_loss", "best_epoch", "epochs_run", "data_fingerprint",
            "task")


@pytest.mark.slow
def test_process_and_ray_give_identical_records(tmp_path, data_root, checkpoint, monkeypatch):
    ray = pytest.importorskip("ray")  # in the test extra; importorskip only for a clear message
    exp = load_experiment(small_experiment(tmp_path, data_root, checkpoint))
    stores = {}
    for kind in ("process", "ray"):
        # separate feature caches: each executor computes its own features
        monkeypatch.setenv("MARSBENCH_CACHE", str(tmp_path / f"cache_{kind}"))
        store = ResultsStore(tmp_path / f"{kind}.sqlite")
        if kind == "ray":
            ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
        try:
            summary = run_sweep(exp, store, executor=kind, workers=2, threads=1)
        finally:
            if kind == "ray":
                ray.shutdown()
        assert summary.executor == kind
        assert summary.progress.failed == 0, [r.error for r in summary.failures]
        stores[kind] = store

    planned = set(grid_keys(exp)) | set(final_keys(exp, stores["process"]))
    assert len(grid_keys(exp)) == 2 * 2 * 2 * 2
    assert len(planned) == 16 + 8 * 2  # seeds 1 and 2 are new; seed 0 is the grid winner
    for store in stores.values():
        assert set(store.keys()) == planned
        assert all(r.ok for r in store.records()), [r.error[-300:] for r in store.records() if not r.ok]
    assert final_keys(exp, stores["ray"]) == final_keys(exp, stores["process"])
    for key in sorted(planned):
        a, b = stores["process"].get(key), stores["ray"].get(key)
        assert {f: getattr(a, f) for f in COMPARED} == {f: getattr(b, f) for f in COMPARED}, key
    # the planner's data fingerprint is the one the trainer records
    for key in grid_keys(exp)[:1] + grid_keys(exp)[-1:]:
        rec = stores["ray"].get(key)
        assert rec.data_fingerprint == data_fingerprint(rec.spec)
    sel = [read_selections(s, "small").drop(columns=["decided_at"]) for s in stores.values()]
    assert len(sel[0]) == 8 and sel[0].equals(sel[1])


def _sweep_cli(exp: Path, store: Path, *extra: str, env=None) -> subprocess.Popen:
    code = "from marsbench.cli.main import app; app()"
    return subprocess.Popen(
        [PYTHON, "-c", code, "sweep", str(exp), "--store", str(store), "--quiet", *extra],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True,
        env=env)


def _tiny(tmp_path: Path, data_root: Path, name: str, *, lrs: str, seeds: str) -> Path:
    path = tmp_path / f"{name}.yaml"
    path.write_text(f"""
name: {name}
datasets: [mb-frost_cls, mb-atmospheric_dust_cls_edr]
models: [efficientnet_lite0]
regimes: [feature_extraction]
grid_defaults: single
grid: {{lr: {lrs}, batch_size: [8], max_epochs: [2], patience: [2]}}
options: {{input_size: 32}}
data: {{root: {data_root}}}
seeds: {seeds}
""")
    return path


@pytest.mark.slow
def test_sigkill_mid_sweep_then_resume_gives_one_record_per_run(tmp_path, data_root):
    exp_path = _tiny(tmp_path, data_root, "killed", lrs="[1.0e-3, 1.0e-2, 1.0e-1]",
                     seeds="[0, 1, 2]")
    store_path = tmp_path / "killed.sqlite"
    env = {**os.environ, "MARSBENCH_CACHE": str(tmp_path / "cache")}
    proc = _sweep_cli(exp_path, store_path, "--executor", "process", "--workers", "2", env=env)
    try:
        deadline = time.monotonic() + 600
        while time.monotonic() < deadline and proc.poll() is None:
            if store_path.exists() and len(ResultsStore(store_path)) >= 2:
                break
            time.sleep(0.2)
        assert proc.poll() is None, f"sweep ended before it was killed:\n{proc.stdout.read()}"
    finally:
        os.killpg(proc.pid, signal.SIGKILL)  # the driver and its workers: a lost machine
        proc.wait()
    exp = load_experiment(exp_path)
    store = ResultsStore(store_path)
    before = set(store.keys())
    assert 2 <= len(before) < 6 + 4, "killed mid-way"
    os.environ["MARSBENCH_CACHE"] = env["MARSBENCH_CACHE"]
    try:
        summary = run_sweep(exp, store, executor="local", threads=1)
    finally:
        del os.environ["MARSBENCH_CACHE"]
    planned = set(grid_keys(exp)) | set(final_keys(exp, store))
    assert len(planned) == 6 + 2 * 2
    assert store.keys() == sorted(planned)  # exactly one record per planned run
    assert all(r.ok for r in store.records()), [r.error[-300:] for r in store.records() if not r.ok]
    assert summary.progress.finished == len(planned - before)
    assert all(store.history(k) == [] for k in planned)  # nothing written twice


@pytest.mark.slow
def test_concurrent_sweeps_on_one_store_lose_nothing(tmp_path, data_root):
    exp_path = _tiny(tmp_path, data_root, "shared", lrs="[1.0e-3, 1.0e-2]", seeds="[0, 1]")
    store_path = tmp_path / "shared.sqlite"
    env = {**os.environ, "MARSBENCH_CACHE": str(tmp_path / "cache")}
    procs = [_sweep_cli(exp_path, store_path, "--executor", "local", "--threads", "1", env=env)
             for _ in range(2)]
    outputs = [p.communicate(timeout=600)[0] for p in procs]
    assert [p.returncode for p in procs] == [0, 0], outputs
    exp = load_experiment(exp_path)
    store = ResultsStore(store_path)
    planned = set(grid_keys(exp)) | set(final_keys(exp, store))
    assert len(planned) == 4 + 2
    assert store.keys() == sorted(planned)
    assert all(r.ok for r in store.records()), [r.error[-300:] for r in store.records() if not r.ok]


def die_on_high_lr(task):
    """Worker function for the broken-pool test: lr 0.1 kills its worker process."""
    if task.spec.lr == 0.1:
        os._exit(1)
    return RunRecord.success(task.spec, val_loss=task.spec.lr,
                             metrics={"val": {"loss": task.spec.lr}})


def test_process_pool_survives_a_dying_worker(tmp_path):
    from marsbench.protocol import ProcessExecutor

    exp = parse_experiment(FAKE)
    store = ResultsStore(tmp_path / "s.sqlite")
    ex = ProcessExecutor(1, function=die_on_high_lr)
    try:
        summary = run_sweep(exp, store, executor=ex, check_data=False, poll_s=0.1)
    finally:
        ex.close()
    failed = store.records(status="failed")
    assert sorted(r.spec.lr for r in failed) == [0.1, 0.1]  # the killer, in both datasets
    assert all("died twice" in r.error for r in failed)
    # every other run, including those queued in the broken pool, finished normally
    assert summary.progress.ok == 4 + 2 * 3 and len(store) == 6 + 2 * 3


def test_the_run_counter_knows_its_total_from_the_start(tmp_path):
    """The seeds runs of undecided groups are counted before selection: the total a progress
    display shows never grows, and ends equal to the runs finished."""
    exp = parse_experiment(FAKE)
    store = ResultsStore(tmp_path / "s.sqlite")
    totals = []
    summary = run_sweep(exp, store, executor=Scripted(LOSSES),
                        on_event=lambda e: totals.append((e.kind, e.progress.to_run,
                                                          e.progress.finished)))
    first = totals[0][1]
    assert first == 2 * 3 + 2 * 3  # grid 2 x 3, then 3 more seeds per group (seed 0 reused)
    assert all(b[1] <= a[1] for a, b in zip(totals, totals[1:]))  # never grows
    assert totals[-1][1] == totals[-1][2] == summary.progress.finished == 12
