"""`ResultsStore`: every run record in one SQLite database file, keyed by the spec hash.

Why SQLite (stdlib ``sqlite3``): a single file, real transactions and file locking, so that
several processes can write one store at once and a crash (Ctrl-C, kill -9, power loss) between
or during writes leaves either the whole record or nothing. The database runs in WAL mode
(readers never block the writer) with a busy timeout (writers queue instead of failing) and
``synchronous=FULL`` (a committed record survives power loss). Keep the file on a local disk:
SQLite's locking is unreliable on network filesystems, which is why a cluster sweep returns its
records to the driver and only the driver writes.

Each row keeps the full record as JSON (the source of truth) plus copies of the fields queries
filter on. A record replaced by ``put(..., on_duplicate="replace")`` is moved to the
``superseded`` table in the same transaction, so a replace never loses a finished result.
The ``meta`` table holds ``schema_version``; a store written by a newer schema is refused.
"""

from __future__ import annotations

import math
import sqlite3
import time
from collections.abc import Callable, Collection, Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from ..catalog.variant import Variant
from .fingerprint import code_fingerprint as current_code_fingerprint
from .record import RunRecord, utc_now
from .spec import RunSpec

if TYPE_CHECKING:
    import pandas as pd

SCHEMA_VERSION = 1
# The tidy results table, the contract with marsbench.aggregate: one row per numeric metric.
TABLE_COLUMNS = ("model", "dataset", "task", "regime", "variant", "seed", "metric", "value",
                 "split", "spec_key")
DuplicatePolicy = Literal["error", "skip", "replace", "replace_failed"]
DUPLICATE_POLICIES = ("error", "skip", "replace", "replace_failed")
FILTER_COLUMNS = ("spec_key", "dataset", "model", "regime", "variant", "seed", "task", "status")

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS runs (
    spec_key TEXT PRIMARY KEY,
    dataset TEXT NOT NULL, variant TEXT NOT NULL, model TEXT NOT NULL, regime TEXT NOT NULL,
    seed INTEGER NOT NULL, task TEXT NOT NULL, status TEXT NOT NULL, val_loss REAL,
    code_fingerprint TEXT, data_fingerprint TEXT, created_at TEXT NOT NULL,
    record TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS runs_by_experiment ON runs (dataset, model, regime, variant);
CREATE INDEX IF NOT EXISTS runs_by_status ON runs (status);
CREATE TABLE IF NOT EXISTS superseded (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    spec_key TEXT NOT NULL, superseded_at TEXT NOT NULL, record TEXT NOT NULL
);
"""
_RUN_COLUMNS = ("spec_key", "dataset", "variant", "model", "regime", "seed", "task", "status",
                "val_loss", "code_fingerprint", "data_fingerprint", "created_at", "record")


class StoreError(RuntimeError):
    """A results store cannot be opened or written as asked."""


class SchemaVersionError(StoreError):
    """The store was written by a newer (or unknown) marsbench schema."""


class DuplicateRunError(StoreError):
    """`ResultsStore.put` met a spec key that is already stored (policy ``"error"``)."""

    def __init__(self, store: ResultsStore, existing: RunRecord):
        self.spec_key = existing.spec_key
        self.existing = existing
        super().__init__(
            f"{store.path}: run {existing.spec_key[:12]} is already stored "
            f"(status {existing.status}, made {existing.created_at}): {existing.spec.describe()}. "
            "Pass on_duplicate='skip' to keep it, 'replace' to overwrite it (the old record is "
            "kept in the superseded table), or 'replace_failed' to overwrite only failed runs."
        )


@dataclass(frozen=True)
class StaleRun:
    """A stored record made by other code or from other data than the caller's."""

    record: RunRecord
    code_changed: bool
    data_changed: bool

    @property
    def reasons(self) -> list[str]:
        r = self.record
        out = []
        if self.code_changed:
            out.append(f"code fingerprint {str(r.code_fingerprint)[:12]} differs")
        if self.data_changed:
            out.append(f"data fingerprint {str(r.data_fingerprint)[:20]} differs")
        return out


class ResultsStore:
    """Run records in the SQLite file ``path`` (created with its folders if missing).

    Safe to share between processes: open one `ResultsStore` per process (it is just a path and
    pickles as one); every call opens its own short-lived connection.
    """

    def __init__(self, path: str | Path, *, timeout: float = 60.0):
        if str(path) == ":memory:":
            raise StoreError("a ResultsStore needs a file path (':memory:' is private to one call)")
        self.path = Path(path)
        self.timeout = float(timeout)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._open_schema()

    def __repr__(self) -> str:
        return f"ResultsStore({str(self.path)!r})"

    # -- connections ------------------------------------------------------------------------
    @contextmanager
    def _connect(self) -> Iterator[sqlite3.Connection]:
        # isolation_level=None: no implicit transactions; writes use explicit BEGIN IMMEDIATE.
        con = sqlite3.connect(self.path, timeout=self.timeout, isolation_level=None)
        try:
            con.execute(f"PRAGMA busy_timeout = {int(self.timeout * 1000)}")
            con.execute("PRAGMA synchronous = FULL")
            yield con
        except sqlite3.DatabaseError as e:
            if "not a database" in str(e) or "malformed" in str(e):
                raise StoreError(f"{self.path} is not a readable marsbench results store: {e}. "
                                 "Point --store at another file or restore this one.") from e
            raise
        finally:
            con.close()

    @contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        """One write transaction: all of it commits, or (on any exception) none of it."""
        with self._connect() as con:
            # IMMEDIATE takes the write lock now, so check-then-write cannot race another writer.
            con.execute("BEGIN IMMEDIATE")
            try:
                yield con
            except BaseException:
                if con.in_transaction:  # SQLite may already have rolled back (disk full, ...)
                    con.execute("ROLLBACK")
                raise
            con.execute("COMMIT")

    def _open_schema(self) -> None:
        with self._connect() as con:
            version = _schema_version(con, self.path)
            if version == SCHEMA_VERSION:
                return
            _retry_locked(lambda: con.execute("PRAGMA journal_mode = WAL"), self.timeout)
        with self._transaction() as con:
            version = _schema_version(con, self.path)  # another process may have just made it
            if version is None:
                for statement in filter(str.strip, _SCHEMA.split(";")):
                    con.execute(statement)  # not executescript: that would COMMIT mid-transaction
                con.executemany("INSERT INTO meta VALUES (?, ?)", [
                    ("schema_version", str(SCHEMA_VERSION)), ("created_at", utc_now())])
            elif version != SCHEMA_VERSION:
                # No older schema exists yet; a future version adds its migration here.
                raise SchemaVersionError(
                    f"{self.path}: schema {version} has no migration to {SCHEMA_VERSION}")

    # -- writing ----------------------------------------------------------------------------
    def put(self, record: RunRecord, *, on_duplicate: DuplicatePolicy = "error") -> bool:
        """Store ``record`` atomically; return True if written, False if a duplicate was kept.

        On a spec key already stored: ``"error"`` (default) raises `DuplicateRunError`;
        ``"skip"`` keeps the stored record; ``"replace"`` overwrites it; ``"replace_failed"``
        overwrites a stored failed run and keeps a stored successful one. A replaced record is
        moved to the ``superseded`` table in the same transaction.
        """
        return self.put_many([record], on_duplicate=on_duplicate) == 1

    def put_many(
        self, records: Iterable[RunRecord], *, on_duplicate: DuplicatePolicy = "error"
    ) -> int:
        """Store several records in one transaction (all or none); return how many were written.

        Duplicates, in the store or within ``records``, follow ``on_duplicate`` as in `put`.
        Much faster than one `put` each for bulk imports (one commit, one sync).
        """
        if on_duplicate not in DUPLICATE_POLICIES:
            raise ValueError(f"on_duplicate={on_duplicate!r}; use one of {DUPLICATE_POLICIES}")
        rows = []
        for record in records:
            if record.spec_key != record.spec.key:
                raise StoreError(
                    f"record key {record.spec_key[:12]} does not match its spec's key "
                    f"{record.spec.key[:12]} ({record.spec.describe()}): rebuild the record from "
                    "its spec"
                )
            rows.append(_row(record))  # serialise first: bad values fail before any write
        written = 0
        with self._transaction() as con:
            for row in rows:
                written += self._put_row(con, row, on_duplicate)
        return written

    def _put_row(self, con: sqlite3.Connection, row: tuple[Any, ...], on_duplicate: str) -> bool:
        key = row[0]
        old = con.execute("SELECT record FROM runs WHERE spec_key = ?", (key,)).fetchone()
        if old is not None:
            existing = self._decode(old[0], key)
            if on_duplicate == "error":
                raise DuplicateRunError(self, existing)
            if on_duplicate == "skip" or (on_duplicate == "replace_failed" and existing.ok):
                return False
            self._supersede(con, key, old[0])
        self._insert(con, row)
        return True

    # Separate steps of one transaction (tests inject crashes between them).
    def _supersede(self, con: sqlite3.Connection, spec_key: str, record_json: str) -> None:
        con.execute("INSERT INTO superseded (spec_key, superseded_at, record) VALUES (?, ?, ?)",
                    (spec_key, utc_now(), record_json))
        con.execute("DELETE FROM runs WHERE spec_key = ?", (spec_key,))

    def _insert(self, con: sqlite3.Connection, row: tuple[Any, ...]) -> None:
        marks = ", ".join("?" * len(_RUN_COLUMNS))
        con.execute(f"INSERT INTO runs ({', '.join(_RUN_COLUMNS)}) VALUES ({marks})", row)

    # -- reading ----------------------------------------------------------------------------
    def get(self, key: str | RunSpec) -> RunRecord | None:
        """The record of a spec (or spec key), or None."""
        key = key.key if isinstance(key, RunSpec) else key
        with self._connect() as con:
            row = con.execute("SELECT record FROM runs WHERE spec_key = ?", (key,)).fetchone()
        return None if row is None else self._decode(row[0], key)

    def __getitem__(self, key: str | RunSpec) -> RunRecord:
        record = self.get(key)
        if record is None:
            k = key.key if isinstance(key, RunSpec) else key
            raise KeyError(f"no run {k[:12]} in {self.path}")
        return record

    def has(self, key: str | RunSpec) -> bool:
        key = key.key if isinstance(key, RunSpec) else key
        with self._connect() as con:
            row = con.execute("SELECT 1 FROM runs WHERE spec_key = ?", (key,)).fetchone()
        return row is not None

    __contains__ = has

    def __len__(self) -> int:
        with self._connect() as con:
            return con.execute("SELECT COUNT(*) FROM runs").fetchone()[0]

    def keys(self, **filters: Any) -> list[str]:
        """Spec keys, sorted; filters as in `records`."""
        where, args = _where(filters)
        with self._connect() as con:
            rows = con.execute(f"SELECT spec_key FROM runs{where} ORDER BY spec_key",
                               args).fetchall()
        return [r[0] for r in rows]

    def records(self, **filters: Any) -> list[RunRecord]:
        """Stored records, optionally filtered by ``spec_key``, ``dataset``, ``model``, ``regime``,
        ``variant``, ``seed``, ``task``, ``status``; each takes one value or a collection of values
        (e.g. ``spec_key=final_keys`` to keep only the runs a sweep selected)."""
        where, args = _where(filters)
        sql = (f"SELECT spec_key, record FROM runs{where} "
               "ORDER BY dataset, model, regime, variant, seed, created_at, spec_key")
        with self._connect() as con:
            rows = con.execute(sql, args).fetchall()
        return [self._decode(text, key) for key, text in rows]

    def history(self, key: str | RunSpec) -> list[RunRecord]:
        """Records replaced under this key, oldest first."""
        key = key.key if isinstance(key, RunSpec) else key
        with self._connect() as con:
            rows = con.execute("SELECT record FROM superseded WHERE spec_key = ? ORDER BY id",
                               (key,)).fetchall()
        return [self._decode(r[0], key) for r in rows]

    def stale(
        self,
        code_fingerprint: str | None = None,
        data_fingerprint: str | Mapping[str, str] | Callable[[RunSpec], str | None] | None = None,
        **filters: Any,
    ) -> list[StaleRun]:
        """Records made by other code or from other data.

        ``code_fingerprint`` defaults to this process's code. ``data_fingerprint`` is what the
        data reads as now: one string (compared with every record), a mapping dataset name ->
        fingerprint, or a function spec -> fingerprint (None: not compared). A record with no
        fingerprint counts as changed: nothing vouches for it.
        """
        code = code_fingerprint or current_code_fingerprint()
        out = []
        for record in self.records(**filters):
            expected = _expected_data(data_fingerprint, record.spec)
            code_changed = record.code_fingerprint != code
            data_changed = expected is not None and record.data_fingerprint != expected
            if code_changed or data_changed:
                out.append(StaleRun(record, code_changed, data_changed))
        return out

    def to_table(self, split: str | Collection[str] = "test", **filters: Any) -> pd.DataFrame:
        """Tidy table of successful runs: one row per numeric metric of ``split`` (or splits).

        Columns `TABLE_COLUMNS`: model, dataset, task, regime, variant, seed, metric, value,
        split, spec_key. Nested metrics (``per_class_f1``), non-numbers and non-finite values
        (a NaN loss is not a score) are left out; the records keep them.
        """
        import pandas as pd

        splits = [split] if isinstance(split, str) else list(split)
        rows = []
        for r in self.records(**{**filters, "status": "ok"}):
            s = r.spec
            for sp in splits:
                for name, value in (r.metrics.get(sp) or {}).items():
                    if (isinstance(value, (int, float)) and not isinstance(value, bool)
                            and math.isfinite(value)):
                        rows.append((s.model, s.dataset, r.task, s.regime, s.variant, s.seed,
                                     name, float(value), sp, r.spec_key))
        table = pd.DataFrame(rows, columns=list(TABLE_COLUMNS))
        table = table.astype({"seed": "int64", "value": "float64"})
        order = ["model", "dataset", "regime", "variant", "seed", "split", "metric"]
        return table.sort_values(order, kind="stable").reset_index(drop=True)

    def _decode(self, text: str, key: str) -> RunRecord:
        try:
            return RunRecord.from_json(text)
        except (ValueError, TypeError, KeyError) as e:
            raise StoreError(f"{self.path}: stored record {key[:12]} cannot be read: {e}") from e


# -- helpers ------------------------------------------------------------------------------------


def _schema_version(con: sqlite3.Connection, path: Path) -> int | None:
    """The store's schema version; None for an empty file; errors for foreign or newer files."""
    tables = {r[0] for r in con.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    if "meta" not in tables:
        if tables:
            raise StoreError(f"{path} is an SQLite database but not a marsbench results store "
                             f"(tables: {sorted(tables)}); choose another --store file")
        return None
    row = con.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()
    if row is None:
        raise StoreError(f"{path}: results store has no schema_version; it is damaged or foreign")
    version = int(row[0])
    if version > SCHEMA_VERSION:
        raise SchemaVersionError(
            f"{path} was written with results-store schema {version}, but this marsbench reads "
            f"schema {SCHEMA_VERSION} at most: upgrade marsbench (pip install -U marsbench)"
        )
    return version


def _retry_locked(fn: Callable[[], Any], timeout: float) -> Any:
    """Run ``fn``, retrying while SQLite reports a lock (journal-mode changes skip busy_timeout)."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            return fn()
        except sqlite3.OperationalError as e:
            if "locked" not in str(e) or time.monotonic() > deadline:
                raise
            time.sleep(0.05)


def _row(record: RunRecord) -> tuple[Any, ...]:
    s = record.spec
    values = {
        "spec_key": record.spec_key, "dataset": s.dataset, "variant": s.variant, "model": s.model,
        "regime": s.regime, "seed": s.seed, "task": record.task, "status": record.status,
        "val_loss": record.val_loss, "code_fingerprint": record.code_fingerprint,
        "data_fingerprint": record.data_fingerprint, "created_at": record.created_at,
        "record": record.to_json(),
    }
    return tuple(values[c] for c in _RUN_COLUMNS)


def _where(filters: Mapping[str, Any]) -> tuple[str, list[Any]]:
    unknown = sorted(set(filters) - set(FILTER_COLUMNS))
    if unknown:
        raise TypeError(f"unknown record filters {unknown}; use {', '.join(FILTER_COLUMNS)}")
    clauses, args = [], []
    for name in FILTER_COLUMNS:  # fixed order and names: never user text in the SQL
        value = filters.get(name)
        if value is None:
            continue
        if name == "variant":  # "partition:0.1" finds what is stored as "partition:0.10"
            value = ([str(Variant.parse(v)) for v in value] if _is_many(value)
                     else str(Variant.parse(value)))
        if _is_many(value):
            values = list(value)
            if not values:
                return " WHERE 0", []
            clauses.append(f"{name} IN ({', '.join('?' * len(values))})")
            args.extend(values)
        else:
            clauses.append(f"{name} = ?")
            args.append(value)
    return (" WHERE " + " AND ".join(clauses) if clauses else ""), args


def _is_many(value: Any) -> bool:
    return isinstance(value, Collection) and not isinstance(value, str)


def _expected_data(data: Any, spec: RunSpec) -> str | None:
    if data is None or isinstance(data, str):
        return data
    if isinstance(data, Mapping):
        return data.get(spec.dataset)
    return data(spec)
