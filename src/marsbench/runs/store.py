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

The ``claims`` table lets several sweeps share one store's work: a sweep claims a spec key
(`ResultsStore.claim`) before running it, and skips keys another live sweep holds. A claim
names its holder (host, pid, the pid's start time, a random token) and carries a heartbeat the
holder refreshes; a claim whose process is gone (same host) or whose heartbeat is older than
``stale_after`` is taken over. The table is created on the first claim, so stores written before
it existed read and write as before (and older marsbench versions ignore it).
"""

from __future__ import annotations

import math
import os
import socket
import sqlite3
import sys
import time
import uuid
from collections.abc import Callable, Collection, Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from ..catalog.variant import Variant
from ..errors import MarsbenchError
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


class StoreError(MarsbenchError, RuntimeError):
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


CLAIM_HEARTBEAT_S = 30.0  # how often a sweep refreshes the heartbeat of its claims
CLAIM_STALE_S = 600.0  # a claim not refreshed for this long is taken over
_CLAIMS_SCHEMA = """
CREATE TABLE IF NOT EXISTS claims (
    spec_key TEXT PRIMARY KEY, owner TEXT NOT NULL, host TEXT NOT NULL, pid INTEGER NOT NULL,
    pid_started TEXT, claimed_at REAL NOT NULL, heartbeat REAL NOT NULL
)
"""
_CLAIM_COLUMNS = ("spec_key", "owner", "host", "pid", "pid_started", "claimed_at", "heartbeat")


@dataclass(frozen=True)
class ClaimOwner:
    """Who holds claims: one sweep, as host, pid, the pid's start time and a random token
    (two sweeps in one process are two owners; a reused pid is told apart by its start time)."""

    host: str
    pid: int
    pid_started: str | None
    token: str

    @classmethod
    def current(cls) -> ClaimOwner:
        pid = os.getpid()
        return cls(socket.gethostname(), pid, process_start_time(pid), uuid.uuid4().hex[:12])

    @property
    def id(self) -> str:
        return f"{self.host}:{self.pid}:{self.token}"


@dataclass(frozen=True)
class Claim:
    """A row of the ``claims`` table: ``owner`` runs ``spec_key`` (times: seconds since epoch)."""

    spec_key: str
    owner: str
    host: str
    pid: int
    pid_started: str | None
    claimed_at: float
    heartbeat: float

    def alive(self, *, stale_after: float = CLAIM_STALE_S, now: float | None = None) -> bool:
        """False once the heartbeat is older than ``stale_after`` or, on this host, once the
        holding process is gone; True otherwise."""
        if (time.time() if now is None else now) - self.heartbeat > stale_after:
            return False
        if self.host == socket.gethostname():
            return process_alive(self.pid, self.pid_started) is not False
        return True


class ResultsStore:
    """Run records in the SQLite file ``path`` (created with its folders if missing).

    Safe to share between processes: open one `ResultsStore` per process (it is just a path and
    pickles as one); every call opens its own short-lived connection.

    Opening checks the file at once, so that a bad ``--store`` is refused before any work:
    a folder, a file that is not SQLite, an SQLite file of another program, a store of a newer
    schema, an unreadable file, or (unless ``readonly``) a store or folder that cannot be
    written each raise `StoreError` naming the path and the fix. ``readonly=True`` (for
    readers such as ``marsbench report``) also refuses a missing file instead of creating it.
    """

    def __init__(self, path: str | Path, *, timeout: float = 60.0, readonly: bool = False):
        if str(path) == ":memory:":
            raise StoreError("a ResultsStore needs a file path", value=":memory:",
                             fix="':memory:' is private to one connection; give a file path")
        self.path = Path(path)
        self.timeout = float(timeout)
        self.readonly = readonly
        _check_location(self.path, readonly=readonly)
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
            problem = _store_problem(self.path, e)
            if problem is not None:
                raise problem from e
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
                    f"the results store's schema has no migration to {SCHEMA_VERSION}",
                    where=self.path, value=version, fix="upgrade marsbench")

    # -- writing ----------------------------------------------------------------------------
    def put(self, record: RunRecord, *, on_duplicate: DuplicatePolicy = "error") -> bool:
        """Store ``record`` atomically; return True if written, False if a duplicate was kept.

        On a spec key already stored: ``"error"`` (default) raises `DuplicateRunError`;
        ``"skip"`` keeps the stored record; ``"replace"`` overwrites it; ``"replace_failed"``
        overwrites a stored failed run and keeps a stored successful one. A replaced record is
        moved to the ``superseded`` table in the same transaction. Under either replace policy a
        failed record never displaces a successful one: the failure goes to the ``superseded``
        table (`history`) and False is returned.
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
            failed = row[_RUN_COLUMNS.index("status")] != "ok"
            if on_duplicate == "skip" or (on_duplicate == "replace_failed" and existing.ok
                                          and not failed):
                return False
            if existing.ok and failed:
                # a failed re-run never displaces a good result: it goes to the history only
                self._supersede(con, key, row[_RUN_COLUMNS.index("record")], keep_live=True)
                return False
            self._supersede(con, key, old[0])
        self._insert(con, row)
        return True

    # Separate steps of one transaction (tests inject crashes between them).
    def _supersede(self, con: sqlite3.Connection, spec_key: str, record_json: str, *,
                   keep_live: bool = False) -> None:
        con.execute("INSERT INTO superseded (spec_key, superseded_at, record) VALUES (?, ?, ?)",
                    (spec_key, utc_now(), record_json))
        if not keep_live:
            con.execute("DELETE FROM runs WHERE spec_key = ?", (spec_key,))

    def _insert(self, con: sqlite3.Connection, row: tuple[Any, ...]) -> None:
        marks = ", ".join("?" * len(_RUN_COLUMNS))
        con.execute(f"INSERT INTO runs ({', '.join(_RUN_COLUMNS)}) VALUES ({marks})", row)

    # -- claims: several sweeps sharing one store's work -------------------------------------
    def claim(self, key: str | RunSpec, owner: ClaimOwner, *,
              stale_after: float = CLAIM_STALE_S) -> bool:
        """Claim ``key`` for ``owner``; False if another owner's live claim holds it.

        Atomic (one write transaction): of two sweeps claiming a key at once, one wins. A
        claim of a dead process or with a heartbeat older than ``stale_after`` is taken over;
        ``owner``'s own claim is renewed. Claiming says nothing about records: check the store
        for a record made meanwhile before running.
        """
        key = key.key if isinstance(key, RunSpec) else key
        now = time.time()
        with self._transaction() as con:
            con.execute(_CLAIMS_SCHEMA)
            row = con.execute(f"SELECT {', '.join(_CLAIM_COLUMNS)} FROM claims "
                              "WHERE spec_key = ?", (key,)).fetchone()
            if row is not None:
                held = Claim(*row)
                if held.owner != owner.id and held.alive(stale_after=stale_after, now=now):
                    return False
            con.execute(f"INSERT OR REPLACE INTO claims ({', '.join(_CLAIM_COLUMNS)}) "
                        "VALUES (?, ?, ?, ?, ?, ?, ?)",
                        (key, owner.id, owner.host, owner.pid, owner.pid_started, now, now))
        return True

    def release(self, key: str | RunSpec, owner: ClaimOwner) -> bool:
        """Drop ``owner``'s claim on ``key`` (another owner's claim is left); True if dropped."""
        key = key.key if isinstance(key, RunSpec) else key
        return self._claims_write("DELETE FROM claims WHERE spec_key = ? AND owner = ?",
                                  (key, owner.id)) > 0

    def release_all(self, owner: ClaimOwner) -> int:
        """Drop every claim of ``owner``; returns how many."""
        return self._claims_write("DELETE FROM claims WHERE owner = ?", (owner.id,))

    def heartbeat(self, owner: ClaimOwner) -> int:
        """Refresh the heartbeat of every claim of ``owner``; returns how many."""
        return self._claims_write("UPDATE claims SET heartbeat = ? WHERE owner = ?",
                                  (time.time(), owner.id))

    def claims(self, *, live_only: bool = False,
               stale_after: float = CLAIM_STALE_S) -> list[Claim]:
        """The claims, oldest first; ``live_only`` leaves out those that would be taken over."""
        try:
            with self._connect() as con:
                rows = con.execute(f"SELECT {', '.join(_CLAIM_COLUMNS)} FROM claims "
                                   "ORDER BY claimed_at, spec_key").fetchall()
        except sqlite3.OperationalError as e:
            if "no such table" in str(e):
                return []  # a store nobody has claimed in yet
            raise
        out = [Claim(*row) for row in rows]
        if live_only:
            now = time.time()
            out = [c for c in out if c.alive(stale_after=stale_after, now=now)]
        return out

    def _claims_write(self, sql: str, args: tuple[Any, ...]) -> int:
        with self._transaction() as con:
            con.execute(_CLAIMS_SCHEMA)
            return con.execute(sql, args).rowcount

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

    def distinct(self, *columns: str) -> set[tuple]:
        """The distinct value tuples of ``columns`` (of `_RUN_COLUMNS`) over the stored runs."""
        unknown = [c for c in columns if c not in _RUN_COLUMNS or c == "record"]
        if unknown or not columns:
            raise ValueError(f"distinct: not a run column: {unknown or '(none given)'}")
        with self._connect() as con:
            rows = con.execute(f"SELECT DISTINCT {', '.join(columns)} FROM runs").fetchall()
        return {tuple(r) for r in rows}

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
        order = " ORDER BY dataset, model, regime, variant, seed, created_at, spec_key"
        many = [k for k, v in filters.items() if _is_many(v) and len(v) > _SQL_CHUNK]
        if many:  # SQLite binds at most 999 values per query: ask in parts, merge in order
            name = many[0]
            values = list(dict.fromkeys(filters[name]))
            parts = [(i, values[i:i + _SQL_CHUNK]) for i in range(0, len(values), _SQL_CHUNK)]
            rows = []
            with self._connect() as con:
                for _, chunk in parts:
                    where, args = _where({**filters, name: chunk})
                    rows += con.execute("SELECT spec_key, record, dataset, model, regime, "
                                        f"variant, seed, created_at FROM runs{where}",
                                        args).fetchall()
            rows.sort(key=lambda r: (r[2], r[3], r[4], r[5], r[6], r[7], r[0]))
            return [self._decode(r[1], r[0]) for r in rows]
        where, args = _where(filters)
        with self._connect() as con:
            rows = con.execute(f"SELECT spec_key, record FROM runs{where}{order}",
                               args).fetchall()
        return [self._decode(text, key) for key, text in rows]

    def history(self, key: str | RunSpec) -> list[RunRecord]:
        """Records replaced under this key, and failed re-runs that left a successful record
        live, oldest first."""
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
        split, spec_key. ``model`` is the spec's `RunSpec.label`: the model name plus any
        weights, options or subset that set its runs apart, so they are never pooled. Nested metrics (``per_class_f1``), non-numbers and non-finite values
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
                        rows.append((s.label, s.dataset, r.task, s.regime, s.variant, s.seed,
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


SQLITE_HEADER = b"SQLite format 3\x00"
_OTHER_STORE = "choose another --store file (this one is left untouched)"


def _check_location(path: Path, *, readonly: bool) -> None:
    """Refuse, before SQLite touches it, a store path that cannot work; create its folder."""
    if path.is_dir():
        raise StoreError("the results store is a folder, not a file", where=path,
                         fix=f"give a file path, e.g. --store {path / 'results.sqlite'}")
    if path.exists():
        if not path.is_file():
            raise StoreError("the results store is not a regular file", where=path,
                             fix=_OTHER_STORE)
        try:
            with path.open("rb") as fh:
                header = fh.read(len(SQLITE_HEADER))
        except OSError as e:
            raise StoreError("the results store cannot be read", where=path,
                             value=e.strerror or str(e),
                             fix="fix its permissions, or " + _OTHER_STORE) from e
        if not header and readonly:
            raise StoreError("the results store is an empty file", where=path,
                             fix="check the path (`marsbench run` and `marsbench sweep` fill it)")
        # A prefix of the header (then zeros) is a store another process is creating right now.
        if header and not SQLITE_HEADER.startswith(header.rstrip(b"\0")):
            raise StoreError("not a marsbench results store: the file is not an SQLite database",
                             where=path, value=f"starts with {header[:8]!r}", fix=_OTHER_STORE)
        if not readonly and not (os.access(path, os.W_OK) and os.access(path.parent, os.W_OK)):
            raise StoreError("the results store cannot be written", where=path,
                             value="read-only file or folder",
                             fix="make the file and its folder writable (SQLite writes a "
                                 "journal beside it), or " + _OTHER_STORE)
        return
    if readonly:
        raise StoreError("no results store at this path", where=path,
                         fix="check the path (`marsbench run` and `marsbench sweep` create it)")
    parent = path.parent
    try:
        parent.mkdir(parents=True, exist_ok=True)
    except (FileExistsError, NotADirectoryError) as e:
        raise StoreError("the results store's folder cannot be made: a part of its path is a "
                         "file", where=parent, fix=_OTHER_STORE) from e
    except OSError as e:
        raise StoreError("the results store's folder cannot be made", where=parent,
                         value=e.strerror or str(e), fix=_OTHER_STORE) from e
    if not os.access(parent, os.W_OK | os.X_OK):
        raise StoreError("the results store's folder is not writable", where=parent,
                         fix="fix its permissions, or " + _OTHER_STORE)


def _store_problem(path: Path, e: sqlite3.DatabaseError) -> StoreError | None:
    """The `StoreError` an SQLite error means when it is about the store file itself."""
    text = str(e)
    if "not a database" in text or "malformed" in text:
        return StoreError("the results store is damaged or not an SQLite database", where=path,
                          value=text, fix="restore it from a backup, or " + _OTHER_STORE)
    if "unable to open" in text:
        return StoreError("the results store cannot be opened", where=path, value=text,
                          fix="check the path and the permissions of the file and its folder")
    if "readonly" in text or "read-only" in text:
        return StoreError("the results store cannot be written", where=path, value=text,
                          fix="make the file and its folder writable, or " + _OTHER_STORE)
    if "disk is full" in text or "disk I/O" in text:
        return StoreError("the results store cannot be written", where=path, value=text,
                          fix="free some disk space (records written before are kept)")
    return None


def _schema_version(con: sqlite3.Connection, path: Path) -> int | None:
    """The store's schema version; None for an empty file; errors for foreign or newer files."""
    tables = {r[0] for r in con.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    if "meta" not in tables:
        if tables:
            raise StoreError("an SQLite database but not a marsbench results store", where=path,
                             value=f"tables {', '.join(sorted(tables))}", fix=_OTHER_STORE)
        return None
    row = con.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()
    try:
        version = int(row[0]) if row is not None else None
    except (TypeError, ValueError):
        version = None
    if version is None:
        raise StoreError("the results store has no valid schema_version; it is damaged or "
                         "foreign", where=path, value=None if row is None else row[0],
                         fix=_OTHER_STORE)
    if version > SCHEMA_VERSION:
        raise SchemaVersionError(
            f"the results store was written with schema {version}, newer than this marsbench "
            f"reads ({SCHEMA_VERSION})", where=path, value=version,
            fix="upgrade marsbench (pip install -U marsbench)")
    return version


def process_start_time(pid: int) -> str | None:
    """When process ``pid`` started, as the kernel counts it (Linux), to tell a reused pid from
    the process that held it; None where unknown."""
    stat = _proc_stat(pid)
    return stat[19] if stat and len(stat) > 19 else None  # field 22: starttime, clock ticks


def _proc_stat(pid: int) -> list[str] | None:
    """Fields 3.. of /proc/<pid>/stat (state first), or None (no such process, not Linux)."""
    try:
        with open(f"/proc/{pid}/stat") as fh:
            text = fh.read()
        return text[text.rindex(")") + 2:].split()  # after "pid (name) "; name may hold spaces
    except (OSError, ValueError):
        return None


def process_alive(pid: int, started: str | None = None) -> bool | None:
    """Whether process ``pid`` (started at ``started``, if known) still runs on this host;
    None where this cannot be told (Windows: there signal 0 would end the process)."""
    if sys.platform == "win32":
        return None
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass  # it exists, owned by another user
    except OSError:
        return None
    stat = _proc_stat(pid)
    if stat is not None:
        if stat[0] in ("Z", "X"):
            return False  # exited, not yet reaped by its parent
        if started is not None and len(stat) > 19 and stat[19] != started:
            return False  # the pid was reused by a newer process
    return True


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


_SQL_CHUNK = 900  # values per IN (...): below SQLite's oldest limit on bound parameters (999)


def _is_many(value: Any) -> bool:
    return isinstance(value, Collection) and not isinstance(value, str)


def _expected_data(data: Any, spec: RunSpec) -> str | None:
    if data is None or isinstance(data, str):
        return data
    if isinstance(data, Mapping):
        return data.get(spec.dataset)
    return data(spec)
