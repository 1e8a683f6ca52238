"""The self-contained HTML report: one file, figures embedded as base64 PNG, no scripts, no
external resources, so it opens offline. Rendered with jinja2 (autoescaped)."""

from __future__ import annotations

import base64

import jinja2
import pandas as pd

from .build import ReportData
from .figures import ReportFigure

_TEMPLATE = """<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{{ title }}</title>
<link rel="icon" href="data:,">
<style>
body { font-family: system-ui, sans-serif; margin: 2rem auto; max-width: 1200px; padding: 0 1rem; color: #222; }
h1, h2, h3 { color: #7a2e12; }
table { border-collapse: collapse; margin: 0.5rem 0 1.5rem; font-size: 0.85rem; }
th, td { border-bottom: 1px solid #ddd; padding: 0.25rem 0.6rem; text-align: right; }
th { background: #f6efe9; }
td:first-child, th:first-child { text-align: left; }
.notes { background: #fff6e0; border-left: 4px solid #e0a100; padding: 0.5rem 1rem; }
.meta td { text-align: left; }
figure { margin: 1rem 0; }
figure img { max-width: 100%; height: auto; }
figcaption { font-size: 0.85rem; color: #555; }
</style>
</head>
<body>
<h1>{{ title }}</h1>
<table class="meta">
<tr><td>created</td><td>{{ data.created }} by marsbench {{ data.version }}</td></tr>
<tr><td>inputs</td><td>{{ data.inputs | join(", ") or "(table given in Python)" }}</td></tr>
<tr><td>normaliser</td><td>{{ data.normaliser.version }} — {{ data.normaliser.source }}</td></tr>
<tr><td>intervals</td><td>{{ (100 * data.confidence) | round(1) }} % percentile intervals, {{ data.rounds }} stratified bootstrap rounds, seed {{ data.seed }}</td></tr>
<tr><td>models</td><td>{{ own_models | join(", ") or "none" }}{% if data.baseline_models %}; published baselines: {{ data.baseline_models | join(", ") }}{% endif %}</td></tr>
</table>
{% if notes %}
<section class="notes" id="notes">
<h2>Notes</h2>
<ul>{% for n in notes %}<li>{{ n }}</li>{% endfor %}</ul>
</section>
{% endif %}
{% for task in data.tasks %}
<section id="{{ task }}">
<h2>{{ task | capitalize }}</h2>
<h3>Aggregate: IQM of normalised scores</h3>
<p>Per-dataset min-max normalisation with the fixed normaliser, runs pooled over datasets and seeds,
interquartile mean with its stratified-bootstrap interval (full training set).</p>
{% for f in figs[task]["tasks"] %}{{ figure(f) }}{% endfor %}
{{ tables[task]["scores"] }}
{% if figs[task]["regimes"] %}<h3>Regime comparison</h3>{% for f in figs[task]["regimes"] %}{{ figure(f) }}{% endfor %}
{% else %}<p>Regime comparison: only {{ regimes[task] | join(", ") }} runs present.</p>{% endif %}
<h3>Per dataset (raw metric)</h3>
{% for f in figs[task]["datasets"] %}{{ figure(f) }}{% endfor %}
{{ tables[task]["datasets"] }}
{% if figs[task]["partition"] %}<h3>Training-set size</h3>{% for f in figs[task]["partition"] %}{{ figure(f) }}{% endfor %}{% endif %}
{% if figs[task]["few_shot"] %}<h3>Few-shot</h3>{% for f in figs[task]["few_shot"] %}{{ figure(f) }}{% endfor %}{% endif %}
</section>
{% endfor %}
<section id="leaderboard">
<h2>Leaderboard</h2>
{% if leaderboard %}{{ leaderboard }}{% else %}<p>Not ranked: see the notes above.</p>{% endif %}
</section>
</body>
</html>
"""

_FIGURE = ('<figure><img src="data:image/png;base64,{{ b64 }}" alt="{{ f.title }}">'
           "<figcaption>{{ f.title }}</figcaption></figure>")


def _table_html(frame: pd.DataFrame) -> str:
    return frame.to_html(index=False, border=0, float_format=lambda v: f"{v:.3f}", na_rep="–",
                         escape=True)


def render_html(data: ReportData, figures: list[ReportFigure], title: str = "Mars-Bench report") -> str:
    """The report as one HTML string."""
    env = jinja2.Environment(autoescape=True, undefined=jinja2.StrictUndefined)
    figure_template = env.from_string(_FIGURE)

    def figure(f: ReportFigure) -> str:
        return jinja2.utils.markupsafe.Markup(
            figure_template.render(f=f, b64=base64.b64encode(f.png).decode("ascii")))

    sections = ("tasks", "regimes", "datasets", "partition", "few_shot")
    figs = {t: {s: [f for f in figures if f.task == t and f.section == s] for s in sections} for t in data.tasks}
    markup = jinja2.utils.markupsafe.Markup
    tables = {}
    for task in data.tasks:
        scores = data.task_scores[data.task_scores["task"] == task].sort_values(["regime", "iqm"], ascending=[True, False])
        summary = data.dataset_summary[data.dataset_summary["task"] == task]
        tables[task] = {
            "scores": markup(_table_html(scores.drop(columns=["task", "variant"]))),
            "datasets": markup(_table_html(summary.drop(columns=["task", "variant"]))),
        }
    regimes = {t: sorted(data.task_scores.loc[data.task_scores["task"] == t, "regime"].unique()) for t in data.tasks}
    board = markup(_table_html(data.leaderboard)) if data.leaderboard is not None else None
    own = sorted(set(data.table["model"]) - set(data.baseline_models))
    return env.from_string(_TEMPLATE).render(
        title=title, data=data, notes=data.notes(), figs=figs, tables=tables, regimes=regimes,
        leaderboard=board, own_models=own, figure=figure,
    )
