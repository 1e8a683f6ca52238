"""ResultsStore: atomic writes, duplicates, concurrent writers, crashes, the tidy table, schema guard."""

from __future__ import annotations

import multiprocessing
import sqlite3
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from marsbench.runs import (
    TABLE_COLUMNS,
    DuplicateRunError,
    ResultsStore,
    RunRecord,
    RunSpec,
    SchemaVersionError,
    StoreError,
)


def make_spec(seed=0, **changes) -> RunSpec:
    values = dict(dataset="mb-domars16k", model="efficientnet_lite0", regime="feature_extraction",
                  seed=seed)
    return RunSpec(**{**values, **changes})


def make_record(seed=0, f1=0.5, **changes) -> RunRecord:
    spec_fields = set(RunSpec.__dataclass_fields__)  # the rest goes to the record
    spec_changes = {k: changes.pop(k) for k in list(changes) if k in spec_fields}
    values = dict(
        metrics={"val": {"f1_weighted": f1 - 0.1, "loss": 0.3},
                 "test": {"f1_weighted": f1, "f1_macro": f1 / 2, "accuracy": 0.9,
                          "per_class_f1": {"ael": 0.1}, "calibrated": True, "note": "x",
                          "loss": float("nan")}},
        val_loss=0.3, code_fingerprint="code-A", data_fingerprint="content:data-A",
    )
    return RunRecord(make_spec(seed, **spec_changes), **{**values, **changes})


@pytest.fixture
def store(tmp_path) -> ResultsStore:
    return ResultsStore(tmp_path / "results" / "store.sqlite")


def test_put_get_round_trip(store):
    r = make_record(seed=1)
    assert store.put(r) is True
    assert store.has(r.spec_key) and r.spec in store and store.has(r.spec)
    got = store.get(r.spec_key)
    assert got.to_json() == r.to_json()
    assert store[r.spec].to_json() == r.to_json()
    assert store.get("0" * 64) is None and not store.has("0" * 64)
    with pytest.raises(KeyError, match="000000000000"):
        store["0" * 64]
    assert store.keys() == [r.spec_key] and len(store) == 1


def test_distinct_values_of_run_columns(store):
    assert store.distinct("dataset", "model") == set()
    store.put_many([make_record(seed=1), make_record(seed=2),
                    make_record(seed=1, model="resnet50")])
    assert store.distinct("dataset", "model") == {("mb-domars16k", "efficientnet_lite0"),
                                                  ("mb-domars16k", "resnet50")}
    assert store.distinct("seed") == {(1,), (2,)}
    for bad in (("record",), ("model; DROP TABLE runs",), ()):
        with pytest.raises(ValueError, match="not a run column"):
            store.distinct(*bad)
    assert len(store) == 3


def test_store_file_is_sqlite_in_wal_mode(store):
    store.put(make_record())
    con = sqlite3.connect(store.path)
    assert con.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert con.execute("SELECT value FROM meta WHERE key='schema_version'").fetchone()[0] == "1"
    assert con.execute("SELECT COUNT(*) FROM runs").fetchone()[0] == 1
    con.close()
    assert len(ResultsStore(store.path)) == 1  # reopening keeps everything


def test_duplicate_is_an_error_by_default(store):
    first = make_record(f1=0.5)
    store.put(first)
    with pytest.raises(DuplicateRunError) as info:
        store.put(make_record(f1=0.9))
    message = str(info.value)
    assert first.spec_key[:12] in message and "mb-domars16k" in message and "seed=0" in message
    assert "on_duplicate='skip'" in message
    assert info.value.existing.metric("f1_weighted") == 0.5
    assert store.get(first.spec_key).metric("f1_weighted") == 0.5


def test_duplicate_policies(store):
    store.put(make_record(f1=0.5))
    assert store.put(make_record(f1=0.9), on_duplicate="skip") is False
    assert store.records()[0].metric("f1_weighted") == 0.5
    assert store.put(make_record(f1=0.9), on_duplicate="replace") is True
    key = make_spec().key
    assert store.get(key).metric("f1_weighted") == 0.9 and len(store) == 1
    assert [r.metric("f1_weighted") for r in store.history(key)] == [0.5]  # nothing lost
    # replace_failed keeps a successful run ...
    assert store.put(RunRecord.failure(make_spec(), "boom"), on_duplicate="replace_failed") is False
    assert store.get(key).ok
    # ... and overwrites a failed one
    failed = RunRecord.failure(make_spec(seed=5), "disk full")
    store.put(failed)
    assert store.put(make_record(seed=5, f1=0.7), on_duplicate="replace_failed") is True
    assert store.get(make_spec(seed=5)).ok and store.history(make_spec(seed=5))[0].error == "disk full"
    with pytest.raises(ValueError, match="on_duplicate"):
        store.put(make_record(seed=6), on_duplicate="overwrite")


def test_failed_runs_are_stored_with_their_error(store):
    try:
        raise FloatingPointError("loss is nan at epoch 2")
    except FloatingPointError as e:
        store.put(RunRecord.failure(make_spec(seed=3), e))
    store.put(make_record(seed=4))
    (failed,) = store.records(status="failed")
    assert failed.status == "failed" and "loss is nan at epoch 2" in failed.error
    assert store.keys(status="failed") == [make_spec(seed=3).key]
    assert set(store.to_table()["seed"]) == {4}  # failed runs have no rows in the table


class Boom(RuntimeError):
    pass


def test_exception_inside_put_writes_nothing(store, monkeypatch):
    store.put(make_record(seed=0, f1=0.5))

    original = ResultsStore._insert

    def insert_then_fail(self, con, row):
        original(self, con, row)               # the row is written ...
        raise Boom("crash after the insert")   # ... then the writer dies

    monkeypatch.setattr(ResultsStore, "_insert", insert_then_fail)
    with pytest.raises(Boom):
        store.put(make_record(seed=1))
    with pytest.raises(Boom):  # replace: the old record was moved aside before the failure
        store.put(make_record(seed=0, f1=0.9), on_duplicate="replace")
    monkeypatch.undo()
    assert store.keys() == [make_spec(0).key]
    assert store.get(make_spec(0)).metric("f1_weighted") == 0.5
    assert store.history(make_spec(0)) == []
    assert store.put(make_record(seed=1)) is True  # the store still works


def test_unserialisable_record_fails_before_touching_the_store(store):
    bad = make_record(seed=2, extra={"model": object()})
    with pytest.raises(TypeError):
        store.put(bad)
    assert len(store) == 0


def test_process_killed_mid_write_leaves_no_partial_record(store):
    store.put(make_record(seed=0))
    # A child process starts a put and dies (os._exit, no cleanup) after inserting the row but
    # before COMMIT: the transaction must vanish, and the store must open and work afterwards.
    child = textwrap.dedent(f"""
        import os, sys
        sys.path.insert(0, {str(Path(__file__).parent)!r})
        from marsbench.runs import ResultsStore
        from test_runs_store import make_record
        original = ResultsStore._insert
        def insert_and_die(self, con, row):
            original(self, con, row)
            assert con.in_transaction
            os._exit(17)
        ResultsStore._insert = insert_and_die
        ResultsStore({str(store.path)!r}).put(make_record(seed=1))
    """)
    proc = subprocess.run([sys.executable, "-c", child], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 17, proc.stderr
    reopened = ResultsStore(store.path)
    assert reopened.keys() == [make_spec(0).key]
    assert reopened.put(make_record(seed=1)) is True and len(reopened) == 2


def _write_many(path: str, worker: int, count: int) -> int:
    store = ResultsStore(path)
    for i in range(count):
        store.put(make_record(seed=worker * 1000 + i, f1=i / count))
    return count


def _write_same(path: str, worker: int) -> int:
    store = ResultsStore(path)
    return sum(store.put(make_record(seed=i), on_duplicate="skip") for i in range(20))


def test_concurrent_writers_lose_nothing(tmp_path):
    path = str(tmp_path / "shared.sqlite")  # not created yet: the workers race to create it
    ctx = multiprocessing.get_context("spawn")
    with ctx.Pool(4) as pool:
        counts = pool.starmap(_write_many, [(path, w, 25) for w in range(4)])
    assert counts == [25] * 4
    store = ResultsStore(path)
    expected = {make_spec(w * 1000 + i).key: i / 25 for w in range(4) for i in range(25)}
    assert len(store) == 100 and set(store.keys()) == set(expected)
    for record in store.records():
        assert record.metric("f1_weighted") == pytest.approx(expected[record.spec_key])
    assert sqlite3.connect(path).execute("PRAGMA integrity_check").fetchone()[0] == "ok"


def test_concurrent_writers_of_the_same_runs_store_each_once(tmp_path):
    path = str(tmp_path / "same.sqlite")
    ctx = multiprocessing.get_context("spawn")
    with ctx.Pool(4) as pool:
        written = pool.starmap(_write_same, [(path, w) for w in range(4)])
    assert sum(written) == 20  # each run written by exactly one worker, skipped by the others
    assert len(ResultsStore(path)) == 20


def test_to_table_schema(store):
    store.put(make_record(seed=1, f1=0.8))
    store.put(make_record(seed=2, f1=0.6, model="resnet101", regime="fine_tuning",
                          variant="partition:0.1"))
    table = store.to_table()
    assert tuple(table.columns) == TABLE_COLUMNS
    assert table["seed"].dtype == "int64" and table["value"].dtype == "float64"
    # finite numeric test metrics only: no per_class_f1 dict, no bool, no text, no NaN
    assert sorted(set(table["metric"])) == ["accuracy", "f1_macro", "f1_weighted"]
    assert len(table) == 6 and set(table["split"]) == {"test"} and set(table["task"]) == {"classification"}
    row = table[(table["model"] == "resnet101") & (table["metric"] == "f1_weighted")].iloc[0]
    assert row["value"] == pytest.approx(0.6) and row["variant"] == "partition:0.10"
    assert row["regime"] == "fine_tuning" and row["dataset"] == "mb-domars16k" and row["seed"] == 2
    assert row["spec_key"] == make_spec(2, model="resnet101", regime="fine_tuning",
                                        variant="partition:0.10").key
    both = store.to_table(split=["val", "test"])
    assert set(both["split"]) == {"val", "test"} and len(both) == 6 + 4
    assert len(store.to_table(model="resnet101")) == 3


def test_to_table_of_an_empty_store(store):
    import pandas as pd

    table = store.to_table()
    assert tuple(table.columns) == TABLE_COLUMNS and len(table) == 0
    assert isinstance(table, pd.DataFrame)


def test_record_filters(store):
    for seed in range(3):
        store.put(make_record(seed=seed))
    store.put(make_record(seed=0, variant="few_shot:5"))
    assert len(store.records(seed=[0, 2])) == 3
    assert len(store.records(variant="few-shot:5")) == 1
    assert len(store.records(variant=["full"], model="efficientnet_lite0", seed=1)) == 1
    assert store.records(seed=[]) == []
    chosen = [make_spec(1).key, make_spec(2).key]
    assert [r.spec.seed for r in store.records(spec_key=chosen)] == [1, 2]
    assert set(store.to_table(spec_key=chosen)["seed"]) == {1, 2}
    with pytest.raises(TypeError, match="lr"):
        store.records(lr=0.1)


def test_stale_lists_records_made_by_other_code_or_data(store):
    store.put(make_record(seed=0))                                      # code-A, data-A
    store.put(make_record(seed=1, code_fingerprint="code-B"))           # other code
    store.put(make_record(seed=2, data_fingerprint="content:data-B"))   # other data
    store.put(make_record(seed=3, code_fingerprint=None))               # unknown code
    stale = store.stale("code-A", "content:data-A")
    assert {s.record.spec.seed: (s.code_changed, s.data_changed) for s in stale} == {
        1: (True, False), 2: (False, True), 3: (True, False)}
    assert any("code fingerprint" in reason for reason in stale[0].reasons + stale[1].reasons)
    by_dataset = store.stale("code-A", {"mb-domars16k": "content:data-B"})
    assert {s.record.spec.seed for s in by_dataset} == {0, 1, 3}
    by_spec = store.stale("code-A", lambda spec: None)  # data not compared
    assert {s.record.spec.seed for s in by_spec} == {1, 3}
    # default: this process's code, which made none of them
    assert len(store.stale()) == 4


def test_record_whose_key_does_not_match_its_spec_is_refused(store):
    r = make_record()
    r.spec_key = "f" * 64
    with pytest.raises(StoreError, match="does not match"):
        store.put(r)


def test_newer_schema_is_refused(store):
    con = sqlite3.connect(store.path)
    con.execute("UPDATE meta SET value = '2' WHERE key = 'schema_version'")
    con.commit()
    con.close()
    with pytest.raises(SchemaVersionError, match="schema 2.*upgrade marsbench"):
        ResultsStore(store.path)


def test_foreign_files_are_refused(tmp_path):
    other = tmp_path / "other.sqlite"
    con = sqlite3.connect(other)
    con.execute("CREATE TABLE songs (title TEXT)")
    con.commit()
    con.close()
    with pytest.raises(StoreError, match="not a marsbench results store"):
        ResultsStore(other)
    text = tmp_path / "notes.txt"
    text.write_text("hello " * 1000)
    with pytest.raises(StoreError, match="notes.txt"):
        ResultsStore(text)


def test_store_pickles_as_its_path(store):
    import pickle

    store.put(make_record())
    clone = pickle.loads(pickle.dumps(store))
    assert clone.path == store.path and len(clone) == 1


def test_put_many_is_all_or_nothing(store):
    store.put(make_record(seed=7))
    batch = [make_record(seed=s) for s in range(5)] + [make_record(seed=7, f1=0.9)]
    with pytest.raises(DuplicateRunError):
        store.put_many(batch)
    assert store.keys() == [make_spec(7).key]  # none of the five new ones went in
    assert store.put_many(batch, on_duplicate="skip") == 5 and len(store) == 6
    assert store.get(make_spec(7)).metric("f1_weighted") == 0.5
    # a duplicate inside the batch itself follows the policy too
    assert store.put_many([make_record(seed=8), make_record(seed=8, f1=0.1)], on_duplicate="replace") == 2
    assert store.get(make_spec(8)).metric("f1_weighted") == 0.1 and len(store.history(make_spec(8))) == 1


@pytest.mark.parametrize("policy", ["replace", "replace_failed"])
def test_a_failed_rerun_never_displaces_a_successful_record(store, policy):
    """`run --force` and a sweep's rerun write with a replace policy: a failure goes to the
    history, the good result stays live (in put and put_many alike)."""
    store.put(make_record(f1=0.8))
    key = make_spec().key
    assert store.put(RunRecord.failure(make_spec(), "out of memory"), on_duplicate=policy) is False
    assert store.get(key).ok and store.get(key).metric("f1_weighted") == 0.8
    assert [r.error for r in store.history(key)] == ["out of memory"]
    assert store.put_many([RunRecord.failure(make_spec(), "again")], on_duplicate=policy) == 0
    assert store.get(key).ok and len(store.history(key)) == 2 and len(store) == 1
    assert store.put(make_record(f1=0.9), on_duplicate="replace") is True  # a success still does
    assert store.get(key).metric("f1_weighted") == 0.9
