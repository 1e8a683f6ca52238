"""The report's figures, drawn from `ReportData` and rendered to PNG bytes."""

from __future__ import annotations

from dataclasses import dataclass

from . import plots
from .build import ReportData


@dataclass(frozen=True)
class ReportFigure:
    """One rendered figure: ``name`` is its file stem, ``section`` where it belongs."""

    name: str
    section: str  # "tasks", "regimes", "datasets", "partition" or "few_shot"
    task: str
    title: str
    png: bytes


def make_figures(data: ReportData) -> list[ReportFigure]:
    """Every figure the data supports, in report order."""
    colours = plots.model_colours(data.table["model"].unique(), data.baseline_models)
    base, conf = data.baseline_models, data.confidence
    out: list[ReportFigure] = []
    for task in data.tasks:
        scores = data.task_scores[data.task_scores["task"] == task]
        if len(scores):
            out.append(ReportFigure(f"{task}_iqm", "tasks", task, f"{task}: IQM of normalised scores",
                                    plots.png_bytes(plots.interval_plot(scores, task, colours, base, conf))))
        if scores["regime"].nunique() > 1:
            out.append(ReportFigure(f"{task}_regimes", "regimes", task, f"{task}: training regimes",
                                    plots.png_bytes(plots.regime_plot(scores, task))))
        summary = data.dataset_summary[data.dataset_summary["task"] == task]
        if len(summary):
            out.append(ReportFigure(f"{task}_datasets", "datasets", task, f"{task}: per dataset",
                                    plots.png_bytes(plots.dataset_plot(summary, task, colours, base, conf))))
        for kind, curves in (("partition", data.partition_curves), ("few_shot", data.few_shot_curves)):
            if (curves["task"] == task).any():
                title = f"{task}: {'training-set size' if kind == 'partition' else 'few-shot'} curves"
                out.append(ReportFigure(f"{task}_{kind}", kind, task, title,
                                        plots.png_bytes(plots.curve_plot(curves, task, kind, colours, base, conf))))
    return out
