"""The report's figures, drawn from `ReportData` and rendered to PNG bytes."""

from __future__ import annotations

from dataclasses import dataclass, field

from . import plots
from .build import ReportData

SECTIONS = ("tasks", "profiles", "improvement", "rankings", "regimes", "datasets", "partition",
            "few_shot", "per_class", "history", "calibration", "cost")


@dataclass(frozen=True)
class ReportFigure:
    """One rendered figure: ``name`` is its file stem, ``section`` where it belongs (one of
    `SECTIONS`), ``colours`` the colour each model was drawn in."""

    name: str
    section: str
    task: str
    title: str
    png: bytes
    colours: dict = field(default_factory=dict, compare=False)


def make_figures(data: ReportData) -> list[ReportFigure]:
    """Every figure the data supports, in report order; one colour per model throughout."""
    colours = plots.model_colours(data.table["model"].unique(), data.baseline_models)
    base, conf = data.baseline_models, data.confidence
    out: list[ReportFigure] = []

    def add(name: str, section: str, task: str, title: str, drawn) -> None:
        fig, used = drawn
        if data.synthetic:
            plots.mark_synthetic(fig)
        out.append(ReportFigure(name, section, task, title, plots.png_bytes(fig), used))

    for task in data.tasks:
        scores = data.task_scores[data.task_scores["task"] == task]
        if len(scores):
            add(f"{task}_iqm", "tasks", task, f"{task}: IQM of normalised scores",
                plots.interval_plot(scores, task, colours, base, conf))
        profiles = data.profiles[data.profiles["task"] == task]
        if len(profiles):
            add(f"{task}_profiles", "profiles", task, f"{task}: performance profiles",
                plots.profile_plot(profiles, task, colours, base, conf))
        improvement = data.improvement[data.improvement["task"] == task]
        if len(improvement):
            add(f"{task}_improvement", "improvement", task, f"{task}: probability of improvement",
                plots.improvement_plot(improvement, task, colours, base))
        wins = data.sections.win_probability
        if (wins["task"] == task).any():
            add(f"{task}_win_probability", "rankings", task, f"{task}: win probability",
                plots.win_probability_plot(wins, task, colours, base))
        if scores["regime"].nunique() > 1:
            add(f"{task}_regimes", "regimes", task, f"{task}: training regimes",
                plots.regime_plot(scores, task, colours, base))
        summary = data.dataset_summary[data.dataset_summary["task"] == task]
        if len(summary):
            add(f"{task}_datasets", "datasets", task, f"{task}: per dataset",
                plots.dataset_plot(summary, task, colours, base, conf))
        for kind, curves in (("partition", data.partition_curves), ("few_shot", data.few_shot_curves)):
            if (curves["task"] == task).any():
                title = f"{task}: {'training-set size' if kind == 'partition' else 'few-shot'} curves"
                add(f"{task}_{kind}", kind, task, title,
                    plots.curve_plot(curves, task, kind, colours, base, conf))
                from .paper_output import paper_style_curves

                models = set(curves.loc[curves["task"] == task, "model"])
                drawn = paper_style_curves(data.table[data.table["model"].isin(models)], task,
                                           kind, colours, rounds=data.rounds, seed=data.seed,
                                           confidence=conf)
                if drawn is not None:
                    add(f"{task}_{kind}_paper_style", kind, task,
                        f"{title}, as the paper draws them (min-max normalised over the "
                        "curve's runs per dataset; aggregate: IQM)", drawn)
        if (data.per_class["task"] == task).any():
            add(f"{task}_per_class", "per_class", task, f"{task}: per-class scores",
                plots.per_class_plot(data.per_class, task, colours))
        if (data.history["task"] == task).any():
            add(f"{task}_training_curves", "history", task, f"{task}: training curves",
                plots.history_plot(data.history, task, colours))
        bins = data.sections.reliability
        if ((bins["task"] == task) & (bins["count"] > 0)).any():
            add(f"{task}_reliability", "calibration", task, f"{task}: reliability diagrams",
                plots.reliability_plot(bins, task, colours))
        curves = data.sections.risk_coverage
        if (curves["task"] == task).any():
            add(f"{task}_risk_coverage", "calibration", task, f"{task}: risk-coverage curves",
                plots.risk_coverage_plot(curves, task, colours))
        cost = data.sections.cost
        if ((cost["task"] == task) & cost["score"].notna()
                & (cost["flops_per_image"].notna() | cost["total_s"].notna())).any():
            add(f"{task}_cost", "cost", task, f"{task}: score against cost",
                plots.cost_plot(cost, task, colours, base))
    return out
