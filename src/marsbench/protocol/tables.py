"""The study's own tables beside the store's ``runs`` in its SQLite file (``selections``,
``search_trials``): one way to open one (created, and migrated by added columns), to replace rows
in one transaction, and to read one, a read-only store included (nothing created then)."""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ..runs.store import ResultsStore

if TYPE_CHECKING:
    import pandas as pd


@dataclass(frozen=True)
class SideTable:
    name: str
    columns: tuple[str, ...]
    schema: str  # CREATE TABLE IF NOT EXISTS ...
    order: str  # ORDER BY clause of a read
    added: tuple[tuple[str, str], ...] = ()  # (column, type) added after the table first shipped

    def connect(self, store: ResultsStore) -> sqlite3.Connection:
        con = sqlite3.connect(store.path, timeout=store.timeout, isolation_level=None)
        con.execute(f"PRAGMA busy_timeout = {int(store.timeout * 1000)}")
        con.execute(self.schema)
        present = {row[1] for row in con.execute(f"PRAGMA table_info({self.name})")}
        for column, kind in self.added:
            if column not in present:  # a store written before the column existed
                con.execute(f"ALTER TABLE {self.name} ADD COLUMN {column} {kind}")
        return con

    def replace(self, store: ResultsStore, rows: Sequence[tuple]) -> int:
        """INSERT OR REPLACE ``rows`` (in `columns` order), one transaction; their number."""
        if not rows:
            return 0
        con = self.connect(store)
        try:
            con.execute("BEGIN IMMEDIATE")
            con.executemany(f"INSERT OR REPLACE INTO {self.name} ({', '.join(self.columns)}) "
                            f"VALUES ({', '.join('?' * len(self.columns))})", rows)
            con.execute("COMMIT")
        finally:
            con.close()
        return len(rows)

    def read(self, store: ResultsStore | str, experiment: str | None = None) -> pd.DataFrame:
        """The table (columns `columns`; NULL where an older store lacks one), optionally of one
        experiment; empty where a read-only store has no such table."""
        import pandas as pd

        store = store if isinstance(store, ResultsStore) else ResultsStore(store)
        if store.readonly:  # a report: read what is there, create nothing
            con = sqlite3.connect(f"file:{store.path}?mode=ro", uri=True, timeout=store.timeout)
            present = {row[1] for row in con.execute(f"PRAGMA table_info({self.name})")}
            if not present:
                con.close()
                return pd.DataFrame(columns=list(self.columns))
            wanted = [c if c in present else f"NULL AS {c}" for c in self.columns]
        else:
            con = self.connect(store)
            wanted = list(self.columns)
        try:
            sql, args = f"SELECT {', '.join(wanted)} FROM {self.name}", ()
            if experiment is not None:
                sql, args = sql + " WHERE experiment = ?", (experiment,)
            rows: list[Any] = con.execute(f"{sql} ORDER BY {self.order}", args).fetchall()
        finally:
            con.close()
        return pd.DataFrame(rows, columns=list(self.columns))
