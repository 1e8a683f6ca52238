"""`ResponseCache`: every model answer in one SQLite file, committed the moment it arrives.

One row per answer, keyed by the sha256 of (client identity: provider, endpoint, model,
generation settings; prompt version and the hash of its rendered text; hash of the image
pixels). A rerun asks only for what is missing, and a run killed at any point loses at most the
answers still in flight. WAL mode and a busy timeout let several threads and processes share the
file. API keys are never part of a row.
"""

from __future__ import annotations

import sqlite3
import threading
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from ..runs.fingerprint import sha256_json
from .clients import Reply

_SCHEMA = """
CREATE TABLE IF NOT EXISTS answers (
    key TEXT PRIMARY KEY,
    provider TEXT NOT NULL, endpoint TEXT, model TEXT NOT NULL,
    prompt_version TEXT NOT NULL, prompt_sha256 TEXT NOT NULL, image_hash TEXT NOT NULL,
    dataset TEXT, sample_id TEXT,
    answer TEXT NOT NULL, input_tokens INTEGER NOT NULL, output_tokens INTEGER NOT NULL,
    created_at TEXT NOT NULL
)
"""


def cache_key(identity: dict[str, Any], prompt_version: str, prompt_sha256: str,
              image_hash: str) -> str:
    return sha256_json({"schema": "marsbench.vlm.answer/1", "client": identity,
                        "prompt_version": prompt_version, "prompt_sha256": prompt_sha256,
                        "image_hash": image_hash})


class ResponseCache:
    """Answers on disk at ``path`` (created with its folders). Thread-safe."""

    def __init__(self, path: str | Path, *, timeout: float = 60.0):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self._con = sqlite3.connect(self.path, timeout=timeout, check_same_thread=False,
                                    isolation_level=None)
        try:
            self._con.execute("PRAGMA journal_mode = WAL")
            self._con.execute("PRAGMA synchronous = FULL")
            self._con.execute(_SCHEMA)
        except sqlite3.DatabaseError as e:
            self._con.close()
            raise RuntimeError(f"{self.path} is not a usable VLM response cache ({e}); "
                               "pass another --cache file") from e

    def __repr__(self) -> str:
        return f"ResponseCache({str(self.path)!r})"

    def get(self, key: str) -> Reply | None:
        with self._lock:
            row = self._con.execute(
                "SELECT answer, input_tokens, output_tokens FROM answers WHERE key = ?",
                (key,)).fetchone()
        return None if row is None else Reply(row[0], int(row[1]), int(row[2]))

    def put(self, key: str, reply: Reply, *, identity: dict[str, Any], prompt_version: str,
            prompt_sha256: str, image_hash: str, dataset: str | None = None,
            sample_id: str | None = None) -> None:
        """Store one answer and commit it now (an answer already stored is kept)."""
        row = (key, identity.get("provider"), identity.get("endpoint"), identity.get("model"),
               prompt_version, prompt_sha256, image_hash, dataset, sample_id, reply.text,
               reply.input_tokens, reply.output_tokens,
               datetime.now(timezone.utc).isoformat(timespec="seconds"))
        with self._lock:
            self._con.execute(
                "INSERT OR IGNORE INTO answers VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)", row)

    def __len__(self) -> int:
        with self._lock:
            return int(self._con.execute("SELECT COUNT(*) FROM answers").fetchone()[0])

    def rows(self) -> list[dict[str, Any]]:
        """Every stored answer as a dict (for inspection and tests)."""
        with self._lock:
            cur = self._con.execute("SELECT * FROM answers ORDER BY created_at, key")
            names = [d[0] for d in cur.description]
            return [dict(zip(names, r)) for r in cur.fetchall()]

    def close(self) -> None:
        with self._lock:
            self._con.close()

    def __enter__(self) -> ResponseCache:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
