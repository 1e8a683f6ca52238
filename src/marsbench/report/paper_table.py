"""The paper-style dataset x model table: rows datasets, columns models, cells mean ± std of the
raw headline metric over seeds (full training set), the best mean of each row in bold; one table
per task and regime. Rendered as HTML, Markdown and LaTeX (booktabs) from `ReportData.matrix`;
`tables/paper_table.csv` holds the numbers in long form."""

from __future__ import annotations

import math
import re
from html import escape

import pandas as pd

from .build import ReportData

DIGITS = 3


def blocks(data: ReportData, task: str | None = None) -> list[tuple[str, str, pd.DataFrame]]:
    """(task, regime, long rows) per table, in report order; models in `ReportData.models` order."""
    order = {m: i for i, m in enumerate(data.models)}
    out = []
    for t in data.tasks if task is None else [task]:
        part = data.matrix[data.matrix["task"] == t]
        for regime, rows in part.groupby("regime", sort=True):
            rows = rows.assign(_m=rows["model"].map(order)).sort_values(["dataset", "_m"])
            out.append((t, regime, rows.drop(columns="_m")))
    return out


def columns(rows: pd.DataFrame, data: ReportData) -> list[str]:
    present = set(rows["model"])
    return [m for m in data.models if m in present]


def _cell_numbers(r) -> tuple[str, str | None]:
    mean = f"{r.mean:.{DIGITS}f}"
    std = None if r.runs < 2 or not math.isfinite(r.std) else f"{r.std:.{DIGITS}f}"
    return mean, std


def cell_text(r) -> str:
    """'0.853 ± 0.012', or '0.853 (n=1)' for a single run."""
    mean, std = _cell_numbers(r)
    return f"{mean} ± {std}" if std is not None else f"{mean} (n=1)"


def _rows(rows: pd.DataFrame):
    for (dataset, metric), line in rows.groupby(["dataset", "metric"], sort=True):
        yield dataset, metric, {r.model: r for r in line.itertuples(index=False)}


def html_table(rows: pd.DataFrame, data: ReportData) -> str:
    models = columns(rows, data)
    head = "".join(f"<th>{escape(m)}</th>" for m in models)
    body = []
    for dataset, metric, cells in _rows(rows):
        tds = []
        for m in models:
            r = cells.get(m)
            if r is None:
                tds.append('<td class="missing">–</td>')
                continue
            mean, std = _cell_numbers(r)
            inner = f"{mean}<br><small>± {std}</small>" if std is not None else f"{mean}<br><small>n=1</small>"
            tds.append(f'<td class="best"><strong>{inner}</strong></td>' if r.best else f"<td>{inner}</td>")
        body.append(f"<tr><th scope=\"row\">{escape(dataset)}<br><small>{escape(metric)}</small></th>"
                    + "".join(tds) + "</tr>")
    return ('<table class="matrix"><thead><tr><th>dataset</th>' + head + "</tr></thead><tbody>"
            + "".join(body) + "</tbody></table>")


def markdown_table(rows: pd.DataFrame, data: ReportData) -> str:
    models = columns(rows, data)
    esc = lambda s: str(s).replace("|", "\\|")  # noqa: E731
    lines = ["| dataset | metric | " + " | ".join(esc(m) for m in models) + " |",
             "|---|---|" + "---:|" * len(models)]
    for dataset, metric, cells in _rows(rows):
        out = []
        for m in models:
            r = cells.get(m)
            out.append("–" if r is None else (f"**{cell_text(r)}**" if r.best else cell_text(r)))
        lines.append(f"| {esc(dataset)} | {esc(metric)} | " + " | ".join(out) + " |")
    return "\n".join(lines)


_LATEX_SPECIAL = {"\\": r"\textbackslash{}", "&": r"\&", "%": r"\%", "$": r"\$", "#": r"\#",
                  "_": r"\_", "{": r"\{", "}": r"\}", "~": r"\textasciitilde{}",
                  "^": r"\textasciicircum{}"}


def latex_escape(text: str) -> str:
    return "".join(_LATEX_SPECIAL.get(ch, ch) for ch in str(text))


def latex(data: ReportData) -> str:
    """Every dataset x model table as a LaTeX ``table`` float (needs ``\\usepackage{booktabs}``)."""
    out = [f"% Mars-Bench dataset x model tables, written by marsbench {data.version} on "
           f"{data.created}.", "% Needs \\usepackage{booktabs}. Best mean per dataset in bold.",
           "% Numbers: tables/paper_table.csv."]
    if data.synthetic:
        out.append("% " + data.synthetic_message())
    for task, regime, rows in blocks(data):
        models = columns(rows, data)
        metrics = ", ".join(sorted(set(rows["metric"])))
        caption = (latex_escape(f"{task}, {regime}: test {metrics}, mean ") + r"$\pm$"
                   + latex_escape(" std over seeds, full training set; best per dataset in bold."))
        if data.synthetic:
            caption = r"\textbf{SYNTHETIC DATA} (not real Mars imagery). " + caption
        label = re.sub(r"[^a-z0-9]+", "-", f"marsbench {task} {regime}".lower())
        out += ["", r"\begin{table}[t]", r"\centering",
                f"\\caption{{{caption}}}",
                f"\\label{{tab:{label}}}", f"\\begin{{tabular}}{{l{'c' * len(models)}}}",
                r"\toprule",
                "Dataset & " + " & ".join(latex_escape(m) for m in models) + r" \\", r"\midrule"]
        for dataset, metric, cells in _rows(rows):
            parts = []
            for m in models:
                r = cells.get(m)
                if r is None:
                    parts.append("--")
                    continue
                mean, std = _cell_numbers(r)
                text = f"{mean} $\\pm$ {std}" if std is not None else mean
                parts.append(f"\\textbf{{{text}}}" if r.best else text)
            out.append(f"{latex_escape(dataset)} & " + " & ".join(parts) + r" \\")
        out += [r"\bottomrule", r"\end{tabular}", r"\end{table}"]
    return "\n".join(out) + "\n"
