"""The Markdown summary: the aggregate tables and notes, with links to the figure PNGs."""

from __future__ import annotations

import math

import pandas as pd
from pandas.api.types import is_bool_dtype, is_numeric_dtype

from . import paper_table, section_tables
from .extra_sections import extra_sections
from .build import ReportData
from .figures import ReportFigure


def markdown_table(frame: pd.DataFrame, digits: int = 3) -> str:
    """A GitHub-flavoured Markdown table. Written by hand: pandas' ``to_markdown`` needs the
    optional ``tabulate`` package for a dozen lines of formatting."""
    def cell(v: object) -> str:
        if isinstance(v, float):
            return "–" if math.isnan(v) else f"{v:.{digits}f}"
        return str(v).replace("|", "\\|")

    header = "| " + " | ".join(map(str, frame.columns)) + " |"
    rule = "|" + "|".join("---:" if is_numeric_dtype(frame[c]) and not is_bool_dtype(frame[c]) else "---"
                          for c in frame.columns) + "|"
    body = ["| " + " | ".join(cell(v) for v in row) + " |" for row in frame.itertuples(index=False)]
    return "\n".join([header, rule, *body])


def synthetic_banner(data: ReportData) -> list[str]:
    """The Markdown banner lines ([] for real data)."""
    if not data.synthetic:
        return []
    return [f"> **⚠ SYNTHETIC DATA — NOT REAL MARS IMAGERY.** {data.synthetic_message()}", ""]


def render_markdown(data: ReportData, figures: list[ReportFigure], figure_dir: str = "figures",
                    title: str = "Mars-Bench report") -> str:
    """The summary as Markdown; figures are linked as ``<figure_dir>/<name>.png``."""
    from .html import needs_text

    own = sorted(set(data.table["model"]) - set(data.baseline_models))
    lines = [
        *synthetic_banner(data),
        f"# {title}", "",
        f"Created {data.created} by marsbench {data.version}. Inputs: {', '.join(data.inputs) or '(Python)'}.",
        "",
        f"Normaliser `{data.normaliser.version}` (saved as normaliser.json):",
        *[f"- {line}" for line in data.normaliser_lines()],
        "",
        f"Intervals: {100 * data.confidence:g} % percentile, {data.rounds} stratified bootstrap rounds, "
        f"seed {data.seed}.",
        f"Models: {', '.join(own) or 'none'}"
        + (f"; published baselines: {', '.join(data.baseline_models)}." if data.baseline_models else "."),
        "",
    ]
    notes = data.notes()
    if notes:
        lines += ["## Notes", "", *[f"- {n}" for n in notes], ""]
    for task in data.tasks:
        lines += [f"## {task.capitalize()}", "", "### Results per dataset and model", "",
                  "Raw test metric, mean ± std over seeds (full training set); best mean per dataset "
                  "in bold. LaTeX: `tables/paper_table.tex`; numbers: `tables/paper_table.csv`.", ""]
        blocks = paper_table.blocks(data, task)
        for _, regime, rows in blocks:
            if len(blocks) > 1:
                lines += [f"#### {regime}", ""]
            lines += [paper_table.markdown_table(rows, data), ""]
        scores = data.task_scores[data.task_scores["task"] == task].sort_values(
            ["regime", "iqm"], ascending=[True, False])
        lines += ["### IQM of normalised scores (full training set)", ""]
        if len(scores):
            lines += [f"Per-dataset min-max normalisation {data.normalisation_phrase(task)}.", "",
                      markdown_table(scores.drop(columns=["task", "variant"])), ""]
        else:
            lines += [f"No normalised aggregate: {needs_text(data, task)}", ""]
        for heading, intro, made in (
                ("Rankings that survive noise",
                 f"Paired bootstrap over datasets and seeds ({data.rounds} rounds, seed {data.seed}). "
                 f"Models share a tier when the {100 * data.confidence:g} % interval of score(tier "
                 "leader) − score(model) reaches 0 (tied); rank interval: the same range of bootstrap "
                 "ranks. `tables/tiers.csv`, `tables/rank_intervals.csv`, `tables/win_probability.csv`, "
                 "`tables/seed_power.csv`.", section_tables.ranking_blocks(data, task)),
                ("Calibration",
                 "ECE (15 bins), ECE after temperature scaling (fitted on val) and AURC of the test "
                 "split from the run records, mean over seeds; the figures pool each model's test "
                 "predictions over its seeds on one dataset. `tables/calibration.csv`.",
                 section_tables.calibration_blocks(data, task)),
                ("Cost per result",
                 "From the run records (full training set); Pareto front: no other model scores "
                 "higher at a lower cost. `tables/cost.csv`.", section_tables.cost_blocks(data, task)),
                *extra_sections(data, task)):
            if not made:
                continue
            lines += [f"### {heading}", "", intro, ""]
            for b in made:
                lines += [f"#### {b.regime}", ""]
                for caption, t in b.tables:
                    lines += [f"{caption}:", "", markdown_table(t), ""]
                lines += [*b.lines, ""] if b.lines else []
        for f in figures:
            if f.task == task:
                lines += [f"![{f.title}]({figure_dir}/{f.name}.png)", ""]
    lines += ["## Leaderboard", ""]
    lines += [markdown_table(data.leaderboard) if data.leaderboard is not None else "Not ranked: see the notes.", ""]
    return "\n".join(lines)
