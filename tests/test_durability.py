"""Durable under faults: atomic writes with unique temporary names, a full disk on --out that
keeps the run's record, run claims shared by concurrent sweeps (and taken over from dead ones),
pool workers that die with their sweep."""

from __future__ import annotations

import errno
import json
import os
import re
import signal
import sqlite3
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import pytest

from marsbench.io import atomic_path, atomic_write_bytes, atomic_write_text
from marsbench.protocol import Executor, grid_keys, parse_experiment, run_sweep
from marsbench.runs import ResultsStore, RunRecord
from marsbench.runs.store import ClaimOwner, process_alive

PYTHON = sys.executable
SRC = Path(__file__).resolve().parents[1] / "src"


# -- atomic writes --------------------------------------------------------------------------------

def test_atomic_write_gives_the_whole_file_with_the_usual_mode(tmp_path):
    target = tmp_path / "sub" / "a.json"
    old = os.umask(0o022)
    try:
        atomic_write_text(target, "first")
        atomic_write_text(target, "second")
    finally:
        os.umask(old)
    assert target.read_text() == "second"
    assert target.stat().st_mode & 0o777 == 0o644  # not mkstemp's private 0600
    assert [p.name for p in target.parent.iterdir()] == ["a.json"]  # no temporary left


def test_a_failed_write_keeps_the_old_file_and_removes_its_temporary(tmp_path):
    target = tmp_path / "p.csv"
    target.write_text("old, complete\n")
    with pytest.raises(OSError, match="No space left"):
        with atomic_path(target) as tmp:
            tmp.write_text("half of the new")
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
    assert target.read_text() == "old, complete\n"
    assert [p.name for p in tmp_path.iterdir()] == ["p.csv"]


def test_concurrent_writers_of_one_file_never_share_a_temporary(tmp_path):
    """Predictions and subset files used ``path.with_suffix('.tmp')``: two writers of the same
    file renamed each other's half-written temporary (or found it gone)."""
    target = tmp_path / "shared.bin"
    payloads = [bytes([i]) * 200_000 for i in range(8)]
    errors = []

    def write(i):
        try:
            for _ in range(15):
                atomic_write_bytes(target, payloads[i])
        except Exception as exc:  # noqa: BLE001
            errors.append(exc)

    threads = [threading.Thread(target=write, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert target.read_bytes() in payloads  # one writer's whole file, never a mix
    assert [p.name for p in tmp_path.iterdir()] == ["shared.bin"]


def test_write_predictions_from_two_threads_at_once(tmp_path):
    import numpy as np

    from marsbench.training.classification import write_predictions

    preds = {"test": {"ids": [f"s{i}" for i in range(2000)], "true": np.zeros(2000, int),
                      "pred": np.ones(2000, int), "probs": np.full((2000, 2), 0.5)}}
    path = tmp_path / "predictions" / "k.csv"
    errors = []

    def write():
        try:
            for _ in range(5):
                write_predictions(path, preds, ["a", "b"])
        except Exception as exc:  # noqa: BLE001
            errors.append(exc)

    threads = [threading.Thread(target=write) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert len(path.read_text().splitlines()) == 2001
    assert [p.name for p in path.parent.iterdir()] == ["k.csv"]


def test_no_fixed_temporary_names_left_in_the_package():
    """Every atomic write goes through marsbench.io (a fixed ``.tmp`` name collides)."""
    offenders = []
    for path in SRC.rglob("*.py"):
        if path.name == "io.py":
            continue
        for n, line in enumerate(path.read_text().splitlines(), 1):
            if re.search(r"with_suffix\(\s*[\"']\.tmp|[\"']\.tmp[\"']", line):
                offenders.append(f"{path.relative_to(SRC)}:{n}: {line.strip()}")
    assert offenders == []


# -- a full disk on --out -------------------------------------------------------------------------

@pytest.fixture(scope="module")
def frost_root(tmp_path_factory) -> Path:
    from marsbench.sources.synth import generate_suite

    root = tmp_path_factory.mktemp("durability_data")
    generate_suite(root, "folder", names=["mb-frost_cls"])
    return root


def test_full_disk_on_out_keeps_the_record_and_says_so(tmp_path, frost_root, monkeypatch):
    from marsbench import io as mbio
    from marsbench.runs.spec import RunSpec
    from marsbench.training.run import run_experiment

    monkeypatch.setenv("MARSBENCH_CACHE", str(tmp_path / "cache"))

    def disk_full(path):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(path))

    monkeypatch.setattr(mbio, "_fsync_file", disk_full)  # every atomic write now fails
    spec = RunSpec(dataset="mb-frost_cls", model="efficientnet_lite0", regime="scratch",
                   data_root=str(frost_root), max_epochs=1, patience=0, batch_size=8,
                   options={"input_size": 32})
    store = ResultsStore(tmp_path / "r.sqlite")
    out = tmp_path / "out"
    with pytest.warns(RuntimeWarning, match="predictions could not be written"):
        record = run_experiment(spec, out_dir=out, store=store)
    stored = store.get(spec.key)
    assert stored is not None and stored.ok and stored.metrics == record.metrics
    assert stored.predictions_path is None
    problem = stored.extra["predictions_error"]
    assert "No space left" in problem and f"{spec.short_key}.csv" in problem
    assert "\n" not in problem and "; " in problem  # one line, with its fix
    assert list((out / "predictions").iterdir()) == []  # no temporary left behind


class Scripted(Executor):
    """Records made up at once (val loss from a table), optionally with a predictions error;
    ``log`` (a file) gets one line per run executed, for runs counted across processes."""

    name, capacity = "scripted", 1

    def __init__(self, losses, *, log=None, delay=0.0, note=None):
        self.losses, self.log, self.delay, self.note = losses, log, delay, note
        self.pending, self.submitted = [], []

    def submit(self, task):
        self.pending.append(task)
        self.submitted.append(task.spec)

    def wait(self, timeout=None):
        task = self.pending.pop(0)
        s = task.spec
        time.sleep(self.delay)
        if self.log:
            with open(self.log, "a") as fh:
                fh.write(f"{s.key} {os.getpid()}\n")
        loss = self.losses[(s.dataset, s.lr)] + 0.001 * s.seed
        record = RunRecord.success(s, val_loss=loss, metrics={"val": {"loss": loss},
                                                              "test": {"f1": 1 - loss}})
        if self.note:
            record.extra["predictions_error"] = self.note
        return [(task, record)]

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
PLANNED = 6 + 2 * 3  # grid, then 3 new seeds per group


def test_sweep_reports_runs_whose_predictions_were_not_written(tmp_path):
    summary = run_sweep(parse_experiment(FAKE), tmp_path / "s.sqlite",
                        executor=Scripted(LOSSES, note="predictions could not be written (x)"),
                        check_data=False)
    assert summary.progress.ok == PLANNED
    assert sum("predictions could not be written" in w for w in summary.warnings) == PLANNED


# -- claims ---------------------------------------------------------------------------------------

def test_a_claim_is_exclusive_until_released(tmp_path):
    store = ResultsStore(tmp_path / "s.sqlite")
    a, b = ClaimOwner.current(), ClaimOwner.current()  # two sweeps of one process
    assert store.claim("k1", a) and store.claim("k1", a)  # renewing one's own claim
    assert not store.claim("k1", b)
    assert not store.release("k1", b) and [c.owner for c in store.claims()] == [a.id]
    assert store.release("k1", a) and store.claim("k1", b)
    assert store.claim("k2", b) and store.release_all(b) == 2 and store.claims() == []


def test_stale_claims_are_taken_over(tmp_path):
    store = ResultsStore(tmp_path / "s.sqlite")
    me = ClaimOwner.current()
    # a sweep that claimed and then died (a real process, reaped: its pid is free)
    code = ("import sys; from marsbench.runs.store import ResultsStore, ClaimOwner; "
            "ResultsStore(sys.argv[1]).claim('dead', ClaimOwner.current())")
    subprocess.run([PYTHON, "-c", code, str(store.path)], check=True)
    (dead,) = store.claims()
    assert process_alive(dead.pid, dead.pid_started) is False
    assert store.claims(live_only=True) == []
    assert store.claim("dead", me)
    # a reused pid: this very process, but the claim says it started at another time
    reused = ClaimOwner(me.host, os.getpid(), "1", "other")
    assert store.claim("reused", reused) and store.claim("reused", me)
    # another host: alive while its heartbeat is fresh, taken over once it stops
    remote = ClaimOwner("another-host", 4242, None, "remote")
    assert store.claim("remote", remote) and not store.claim("remote", me)
    with sqlite3.connect(store.path) as con:
        con.execute("UPDATE claims SET heartbeat = heartbeat - 3600 WHERE owner = ?",
                    (remote.id,))
    assert store.heartbeat(me) == 2  # refreshing mine leaves the remote one stale
    assert store.claim("remote", me)
    assert sorted(c.spec_key for c in store.claims(live_only=True)) == ["dead", "remote",
                                                                         "reused"]


def test_claims_add_a_table_to_old_stores_without_touching_their_records(tmp_path):
    store = ResultsStore(tmp_path / "s.sqlite")
    run_sweep(parse_experiment(FAKE), store, executor=Scripted(LOSSES), check_data=False)
    with sqlite3.connect(store.path) as con:  # make it a store from before claims existed
        con.execute("DROP TABLE claims")
        version = con.execute("SELECT value FROM meta WHERE key='schema_version'").fetchone()
    keys = store.keys()
    assert store.claims() == [] and len(keys) == PLANNED
    assert store.claim("new", ClaimOwner.current())
    with sqlite3.connect(store.path) as con:
        assert con.execute("SELECT value FROM meta WHERE key='schema_version'").fetchone() \
            == version
    assert store.keys() == keys and all(r.ok for r in store.records())


def test_sweep_takes_over_claims_of_a_killed_sweep(tmp_path):
    exp = parse_experiment(FAKE)
    store = ResultsStore(tmp_path / "s.sqlite")
    code = ("import sys; from marsbench.runs.store import ResultsStore, ClaimOwner; "
            "s = ResultsStore(sys.argv[1]); o = ClaimOwner.current(); "
            "[s.claim(k, o) for k in sys.argv[2:]]")
    subprocess.run([PYTHON, "-c", code, str(store.path), *grid_keys(exp)], check=True)
    ex = Scripted(LOSSES)
    summary = run_sweep(exp, store, executor=ex, check_data=False, poll_s=0.01)
    assert len(ex.submitted) == PLANNED and summary.progress.elsewhere == 0
    assert len(store) == PLANNED and store.claims() == []


def test_sweep_waits_for_a_live_holder_then_takes_its_record_or_its_run(tmp_path):
    exp = parse_experiment(FAKE)
    store = ResultsStore(tmp_path / "s.sqlite")
    other = ClaimOwner.current()  # another live sweep (same process, other token)
    finished, given_up = grid_keys(exp)[0], grid_keys(exp)[1]
    assert store.claim(finished, other) and store.claim(given_up, other)
    seen = []

    def on_event(event):
        if event.kind != "waiting":
            return
        seen.append(event.run.key)
        if event.run.key == finished:  # the other sweep stores its record, then releases
            loss = LOSSES[(event.run.spec.dataset, event.run.spec.lr)]
            store.put(RunRecord.success(event.run.spec, val_loss=loss,
                                        metrics={"val": {"loss": loss}}))
        store.release(event.run.key, other)

    ex = Scripted(LOSSES)
    summary = run_sweep(exp, store, executor=ex, check_data=False, on_event=on_event,
                        poll_s=0.01)
    submitted = [s.key for s in ex.submitted]
    assert sorted(seen) == sorted([finished, given_up])
    assert finished not in submitted and submitted.count(given_up) == 1
    assert summary.progress.elsewhere == 1 and summary.progress.finished == PLANNED - 1
    assert [r.spec_key for r in summary.elsewhere] == [finished]
    assert len(store) == PLANNED and store.claims() == []


SWEEP_SCRIPT = textwrap.dedent('''
    import json, os, sys, time
    sys.path.insert(0, {tests!r})
    from test_durability import FAKE, LOSSES, Scripted
    from marsbench.protocol import parse_experiment, run_sweep

    from marsbench.protocol import make_plan
    from marsbench.runs import ResultsStore

    store, log, ready, go = sys.argv[1:5]
    make_plan(parse_experiment(FAKE), ResultsStore(store), check_data=False)  # warm: imports
    open(ready, "w").close()
    while not os.path.exists(go):  # start both sweeps at the same moment
        time.sleep(0.01)
    summary = run_sweep(parse_experiment(FAKE), store, executor=Scripted(LOSSES, log=log,
                        delay=0.3), check_data=False, poll_s=0.05)
    p = summary.progress
    print(json.dumps({"finished": p.finished, "elsewhere": p.elsewhere, "skipped": p.skipped,
                      "failed": p.failed}))
    sys.exit(1 if p.failed else 0)
''').replace("{tests!r}", repr(str(Path(__file__).resolve().parent)))


def test_two_sweeps_on_one_store_share_the_work(tmp_path):
    """Two sweep processes started together: each run executes once, both end with all done."""
    (tmp_path / "sweep.py").write_text(SWEEP_SCRIPT)
    store, log, go = tmp_path / "s.sqlite", tmp_path / "runs.log", tmp_path / "go"
    ready = [tmp_path / f"ready{i}" for i in range(2)]
    procs = [subprocess.Popen([PYTHON, str(tmp_path / "sweep.py"), str(store), str(log),
                               str(ready[i]), str(go)], stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True) for i in range(2)]
    deadline = time.monotonic() + 120
    while not all(r.exists() for r in ready) and time.monotonic() < deadline:
        time.sleep(0.05)
    go.touch()
    outs = [p.communicate(timeout=120) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], outs
    summaries = [json.loads(out.strip().splitlines()[-1]) for out, _ in outs]
    executed = [line.split() for line in log.read_text().splitlines()]
    keys = [k for k, _ in executed]
    assert len(keys) == len(set(keys)) == PLANNED, executed  # every run exactly once
    assert len({pid for _, pid in executed}) == 2  # and the work was shared
    assert sum(s["finished"] for s in summaries) == PLANNED
    for s in summaries:  # each sweep accounts for every run: its own, the other's, done before
        assert s["finished"] + s["elsewhere"] + s["skipped"] == PLANNED, summaries
    results = ResultsStore(store)
    assert sorted(keys) == results.keys() and all(r.ok for r in results.records())
    assert all(results.history(k) == [] for k in keys)  # nothing written twice
    assert results.claims() == []


# -- pool workers die with their sweep ------------------------------------------------------------

POOL_SCRIPT = textwrap.dedent('''
    import os, sys, time
    from pathlib import Path

    from marsbench.protocol import ProcessExecutor, parse_experiment, run_sweep, SweepInterrupted

    FAKE = {fake!r}

    def sleepy(task):
        Path(sys.argv[2], f"{{os.getpid()}}.pid").touch()
        time.sleep(300)

    if __name__ == "__main__":
        try:
            with ProcessExecutor(2, function=sleepy) as ex:  # closed (workers killed) on error
                run_sweep(parse_experiment(FAKE), sys.argv[1], check_data=False, poll_s=0.05,
                          executor=ex)
        except SweepInterrupted:
            sys.exit(130)
''').format(fake=FAKE)


def _start_pool_sweep(tmp_path):
    pids = tmp_path / "pids"
    pids.mkdir()
    script = tmp_path / "pool_sweep.py"
    script.write_text(POOL_SCRIPT)
    proc = subprocess.Popen([PYTHON, str(script), str(tmp_path / "s.sqlite"), str(pids)],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    deadline = time.monotonic() + 120
    while len(list(pids.iterdir())) < 2:
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            pytest.fail(f"workers never started:\n{proc.communicate()[0]}")
        time.sleep(0.1)
    return proc, [int(p.stem) for p in pids.iterdir()]


def _gone_within(pids, seconds):
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if not any(process_alive(pid) for pid in pids):
            return True
        time.sleep(0.1)
    return False


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="kernel guarantee (Linux)")
def test_pool_workers_die_when_their_sweep_is_killed(tmp_path):
    proc, workers = _start_pool_sweep(tmp_path)
    try:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
        assert _gone_within(workers, 10), f"orphaned workers {workers} still run"
    finally:
        for pid in workers:
            if process_alive(pid):
                os.kill(pid, signal.SIGKILL)


def test_sigterm_stops_the_sweep_its_workers_and_releases_its_claims(tmp_path):
    proc, workers = _start_pool_sweep(tmp_path)
    try:
        store = ResultsStore(tmp_path / "s.sqlite")
        assert len(store.claims()) == 2  # the two runs in flight
        proc.terminate()
        assert proc.wait(timeout=30) == 130, proc.communicate()[0]
        assert _gone_within(workers, 10), f"workers {workers} outlived their sweep"
        assert store.claims() == [] and len(store) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
        for pid in workers:
            if process_alive(pid):
                os.kill(pid, signal.SIGKILL)
