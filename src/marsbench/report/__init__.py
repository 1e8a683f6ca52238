"""Benchmark reports: a self-contained HTML page, a Markdown summary and CSV tables built from a
results table. `build_report_data` computes, `write_report` writes; `make_report` does both."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path

import pandas as pd

from marsbench.aggregate.normalise import Normaliser, default_normaliser
from marsbench.aggregate.published import paper_baselines

from .build import ReportData, build_report_data
from .figures import ReportFigure, make_figures
from .html import render_html
from .markdown import render_markdown
from .write import write_report


def make_report(table: pd.DataFrame, out_dir: str | Path, *, baselines: bool = True,
                normaliser: Normaliser | None = None, metrics: Mapping[str, str] | None = None,
                rounds: int = 1000, seed: int = 0, confidence: float = 0.95,
                resample_datasets: bool = False, partial: bool = False,
                inputs: Sequence[str] = (), records: Iterable | None = None,
                title: str = "Mars-Bench report") -> dict[str, Path]:
    """Aggregate ``table`` (with the published baselines unless ``baselines=False``) and write
    the report folder. The default normaliser is the shipped ``paper_v1``. ``records``: the
    `RunRecord` s behind the table (or a `ResultsStore`), for the synthetic-data banner,
    per-class scores and training curves."""
    data = build_report_data(
        table, normaliser=normaliser or default_normaliser(),
        baselines=paper_baselines() if baselines else None, metrics=metrics, rounds=rounds,
        seed=seed, confidence=confidence, resample_datasets=resample_datasets, partial=partial,
        inputs=inputs, records=records,
    )
    return write_report(data, out_dir, title=title)


__all__ = [
    "ReportData", "ReportFigure", "build_report_data", "make_figures", "make_report", "render_html",
    "render_markdown", "write_report",
]
