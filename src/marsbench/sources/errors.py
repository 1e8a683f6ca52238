"""Errors raised while reading data: each names the dataset, split, file and value at fault."""

from __future__ import annotations

from pathlib import Path


class DataError(ValueError):
    """Bad or missing input data. The message says what is wrong, where, and how to fix it."""

    def __init__(self, message: str, *, dataset: str | None = None, split: str | None = None,
                 path: str | Path | None = None, fix: str | None = None) -> None:
        where = ": ".join(str(p) for p in (dataset, split, path) if p)
        text = f"{where}: {message}" if where else message
        if fix:
            text += f" ({fix})"
        super().__init__(text)
        self.dataset, self.split, self.path, self.fix = dataset, split, path, fix


class VariantUnavailableError(DataError):
    """The dataset does not publish the requested few-shot or partition variant."""
