"""Runs: the frozen spec of an experiment, the record it produces, and the store that keeps them."""

from __future__ import annotations

from .fingerprint import (
    canonical_json,
    code_fingerprint,
    fingerprint_files,
    git_commit,
    package_versions,
)
from .record import RunRecord
from .spec import REGIMES, RunSpec
from .store import (
    TABLE_COLUMNS,
    DuplicateRunError,
    ResultsStore,
    SchemaVersionError,
    StaleRun,
    StoreError,
)

__all__ = [
    "REGIMES", "TABLE_COLUMNS", "DuplicateRunError", "ResultsStore", "RunRecord", "RunSpec",
    "SchemaVersionError", "StaleRun", "StoreError", "canonical_json", "code_fingerprint",
    "fingerprint_files", "git_commit", "package_versions",
]
