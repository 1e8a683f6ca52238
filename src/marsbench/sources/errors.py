"""Errors raised while reading data: each names the dataset, split, file (and row) and value."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ..errors import MarsbenchError


class DataError(MarsbenchError, ValueError):
    """Bad or missing input data: ``<what> (<dataset> <split> <file> row N): <value>; <fix>``."""

    def __init__(self, message: str, *, dataset: str | None = None, split: str | None = None,
                 path: str | Path | None = None, row: int | None = None, value: Any = None,
                 fix: str | None = None) -> None:
        self.dataset, self.split, self.path = dataset, split, path
        where = " ".join(str(p) for p in (dataset, split, path) if p) or None
        super().__init__(message, where=where, row=row, value=value, fix=fix)


class VariantUnavailableError(DataError):
    """The dataset does not publish the requested few-shot or partition variant."""
