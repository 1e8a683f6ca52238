"""Write a report folder: report.html (self-contained), report.md, figures/*.png, tables/*.csv,
tables/paper_table.tex, results.csv (the runs used), normaliser.json (the bounds used) and
leaderboard.csv (when ranked)."""

from __future__ import annotations

from pathlib import Path

from marsbench.aggregate.leaderboard import write_leaderboard_csv
from marsbench.io import atomic_path, atomic_write_bytes, atomic_write_text

from .build import ReportData
from .figures import make_figures
from .html import render_html
from .markdown import render_markdown
from .paper_table import latex


def write_report(data: ReportData, out_dir: str | Path, *, title: str = "Mars-Bench report") -> dict[str, Path]:
    """Write every report file under ``out_dir``; returns {name: path} of what was written."""
    out = Path(out_dir)
    (out / "figures").mkdir(parents=True, exist_ok=True)
    (out / "tables").mkdir(parents=True, exist_ok=True)
    figures = make_figures(data)
    written: dict[str, Path] = {}
    for f in figures:
        path = out / "figures" / f"{f.name}.png"
        atomic_write_bytes(path, f.png)
        written[f"figure:{f.name}"] = path
    tables = {
        "task_scores": data.task_scores, "dataset_summary": data.dataset_summary,
        "partition_curves": data.partition_curves, "few_shot_curves": data.few_shot_curves,
        "excluded": data.excluded, "coverage_gaps": data.gaps, "paper_table": data.matrix,
        "performance_profiles": data.profiles, "probability_of_improvement": data.improvement,
        "normaliser_provenance": data.provenance, "per_class": data.per_class,
        "training_history": data.history, "tiers": data.sections.tiers,
        "rank_intervals": data.sections.rank_intervals,
        "win_probability": data.sections.win_probability, "seed_power": data.sections.seed_power,
        "calibration": data.sections.calibration, "reliability": data.sections.reliability,
        "risk_coverage": data.sections.risk_coverage, "cost": data.sections.cost,
        "split_schemes": data.sections.splits, "imbalance": data.sections.imbalance,
        "science_metrics": data.sections.science,
    }
    for name, frame in tables.items():
        path = out / "tables" / f"{name}.csv"
        with atomic_path(path) as tmp:
            frame.to_csv(tmp, index=False)
        written[f"table:{name}"] = path
    tex = out / "tables" / "paper_table.tex"
    atomic_write_text(tex, latex(data))
    written["table:paper_table.tex"] = tex
    with atomic_path(out / "results.csv") as tmp:
        data.table.to_csv(tmp, index=False)
    written["results"] = out / "results.csv"
    written["normaliser"] = data.normaliser.save(out / "normaliser.json")
    stale = out / "leaderboard.csv"
    if data.leaderboard is not None:
        written["leaderboard"] = write_leaderboard_csv(data.leaderboard, stale)
    elif stale.exists():
        stale.unlink()  # never leave an old ranking beside a report that refused to rank
    html = out / "report.html"
    atomic_write_text(html, render_html(data, figures, title))
    written["html"] = html
    md = out / "report.md"
    atomic_write_text(md, render_markdown(data, figures, "figures", title))
    written["markdown"] = md
    return written
