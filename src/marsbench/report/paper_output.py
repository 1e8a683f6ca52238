"""Write one of the paper's tables or figures (`paper_figures.REGISTRY`): PNG and SVG where it
is a figure, the numbers as CSV, and Markdown / HTML tables where the report has them."""

from __future__ import annotations

import io
from html import escape
from pathlib import Path

import pandas as pd

from ..io import atomic_write_bytes, atomic_write_text
from . import plots
from .paper_figures import PaperItem

DIGITS = 3


def stem(item: PaperItem) -> str:
    """The file stem of an item: ``figure:few_shot`` -> ``figure_few_shot``."""
    return item.name.replace(":", "_")


def write_item(item: PaperItem, numbers: pd.DataFrame, out: Path, *, source: str,
               confidence: float = 0.95) -> dict[str, Path]:
    """Write ``numbers`` (from `paper_figures.compute`) and their rendering under ``out``."""
    out.mkdir(parents=True, exist_ok=True)
    base = stem(item)
    written = {"csv": out / f"{base}.csv"}
    atomic_write_text(written["csv"], numbers.to_csv(index=False, float_format="%.6f"))
    if item.kind == "table":
        wide = _wide(numbers)
        written["markdown"] = _write_markdown(out / f"{base}.md", item, wide, source)
        written["html"] = out / f"{base}.html"
        atomic_write_text(written["html"], _html(item, wide, source))
        return written
    colours = plots.model_colours(numbers["model"].unique(), ())
    for task in sorted(numbers["task"].unique()):
        part = numbers[numbers["task"] == task]
        if item.kind == "aggregate":
            fig, _ = plots.interval_plot(part.assign(regime="feature_extraction"), task, colours,
                                         (), confidence)
        else:
            fig, _ = _curve_figure(item, part, task, colours, confidence)
        name = base if numbers["task"].nunique() == 1 else f"{base}_{task}"
        written |= _save_figure(fig, out / name, task)
    if item.kind == "aggregate":
        rows = numbers.loc[:, ["task", "model", "iqm", "ci_low", "ci_high", "datasets_covered",
                               "seeds_per_dataset"]].sort_values(["task", "iqm"],
                                                                 ascending=[True, False])
        written["markdown"] = _write_markdown(out / f"{base}.md", item, rows, source)
    return written


def paper_style_curves(table: pd.DataFrame, task: str, kind: str, colours, *, rounds: int,
                       seed: int, confidence: float):
    """(figure, colours used) of ``task``'s ``kind`` curves (``partition`` / ``few_shot``)
    drawn as the paper draws them (`curve_numbers`: feature extraction, min-max normalised over
    the curve's runs per dataset, an aggregate IQM panel); None where the paper has no such
    figure (detection) or the table no feature-extraction runs for it."""
    from ..errors import OptionError
    from .paper_figures import REGISTRY, curve_numbers, figure_rows

    item = next((i for i in REGISTRY if i.kind == "curves" and i.tasks == (task,)
                 and i.variants == kind and i.published), None)
    if item is None:
        return None
    try:
        rows = figure_rows(item, table)
    except OptionError:  # no feature-extraction runs of this kind
        return None
    if not rows["variant"].ne("full").any():
        return None
    numbers = curve_numbers(rows, rounds=rounds, seed=seed, confidence=confidence)
    return _curve_figure(item, numbers[numbers["task"] == task], task, colours, confidence)


def _curve_figure(item: PaperItem, part: pd.DataFrame, task: str, colours, confidence: float):
    curves = part.rename(columns={"panel": "dataset"}).assign(
        regime="feature_extraction", metric="min-max normalised score")
    kind = "few_shot" if item.variants == "few_shot" else "partition"
    fig, used = plots.curve_plot(curves, task, kind, colours, (), confidence)
    fig.suptitle(plots.fit(f"{item.name}: {item.caption} Panels: mean ± std over seeds; "
                           f"aggregate: IQM over datasets × seeds, {100 * confidence:g} % "
                           "bootstrap interval.", fig.get_figwidth() - 0.3, 11))
    return fig, used


def _save_figure(fig, path: Path, task: str) -> dict[str, Path]:
    buf = io.BytesIO()
    fig.savefig(buf, format="svg")
    svg = path.with_suffix(".svg")
    atomic_write_bytes(svg, buf.getvalue())
    png = path.with_suffix(".png")
    atomic_write_bytes(png, plots.png_bytes(fig))  # closes the figure
    return {f"png:{task}": png, f"svg:{task}": svg}


def _wide(numbers: pd.DataFrame) -> pd.DataFrame:
    """Rows dataset (and metric), columns model, cells 'mean ± std'."""
    cells = numbers.assign(cell=[f"{m:.{DIGITS}f}" + ("" if pd.isna(s) else f" ± {s:.{DIGITS}f}")
                                 for m, s in zip(numbers["mean"], numbers["std"])])
    wide = cells.pivot_table(index=["dataset", "metric"], columns="model", values="cell",
                             aggfunc="first").fillna("–")
    wide = wide[sorted(wide.columns, key=str.lower)]  # the paper's column order
    return wide.reset_index()


def _markdown_rows(frame: pd.DataFrame) -> list[str]:
    def text(v) -> str:
        return f"{v:.{DIGITS}f}" if isinstance(v, float) else str(v)

    lines = ["| " + " | ".join(map(str, frame.columns)) + " |",
             "|" + "---|" * len(frame.columns)]
    lines += ["| " + " | ".join(text(v) for v in row) + " |"
              for row in frame.itertuples(index=False)]
    return lines


def _write_markdown(path: Path, item: PaperItem, frame: pd.DataFrame, source: str) -> Path:
    text = "\n".join([f"# {item.name}", "", item.caption, "", f"Source: {source}", "",
                      *_markdown_rows(frame), ""])
    atomic_write_text(path, text)
    return path


def _html(item: PaperItem, wide: pd.DataFrame, source: str) -> str:
    head = "".join(f"<th>{escape(str(c))}</th>" for c in wide.columns)
    body = "".join("<tr>" + "".join(f"<td>{escape(str(v))}</td>" for v in row) + "</tr>"
                   for row in wide.itertuples(index=False))
    return (f"<!doctype html><meta charset='utf-8'><title>{escape(item.name)}</title>"
            f"<h1>{escape(item.name)}</h1><p>{escape(item.caption)}</p>"
            f"<p>Source: {escape(source)}</p><table border='1'><thead><tr>{head}</tr></thead>"
            f"<tbody>{body}</tbody></table>\n")
